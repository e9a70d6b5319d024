"""kgqa.checkpoint: a trained model saved (safetensors and JSON, no pickle) and loaded answers the
same."""
from pathlib import Path

import torch

from kgqa import checkpoint, cli
from kgqa.qa import QA

DEMO = Path(cli.DEMO_DIR)


def test_checkpoints_round_trip(demo, trained_demo, tmp_path):
    kb, _, test_qs = demo
    qa = trained_demo
    qa.save(tmp_path / "model", str(DEMO / "kb.txt"))
    again = QA.load(tmp_path / "model", kb)
    batch = test_qs[:16]
    torch.testing.assert_close(again.predict(batch)[0], qa.predict(batch)[0])
    assert not list((tmp_path / "model").glob("*.pt")) and not list((tmp_path / "model").glob("*.pkl"))
    # QA.save and QA.load are checkpoint.save and checkpoint.load.
    checkpoint.save(qa, tmp_path / "direct", str(DEMO / "kb.txt"))
    assert (tmp_path / "direct" / "config.json").read_text() == (tmp_path / "model" / "config.json").read_text()
    torch.testing.assert_close(checkpoint.load(tmp_path / "direct", kb).predict(batch)[0], qa.predict(batch)[0])
