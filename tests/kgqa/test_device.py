"""The model layer on a chosen device (``--device``, ``QA(..., device)``, ``train(..., device=)``).

This machine has no GPU, so two CPU checks stand in for the GPU run:

- Inside ``with torch.device("meta")`` every tensor factory called without ``device=`` makes a
  meta tensor, and mixing it with the real (CPU) tensors raises. The model layer's forward, loss,
  backward, prediction and metrics run inside it for gold and learned entities, with and without
  intersection: a tensor that would stay on the CPU next to a model on a GPU fails here.
- ``ImplicitDevices`` records every factory call made from a file of kgqa/ without ``device=``,
  through ``kgqa train/eval/ask --device cpu`` and a learned-entity ``train()``: the training loop,
  the CLI and the checkpoint code too, which the first check cannot wrap (torch's optimisers and
  module constructors create tensors without a device themselves).

The tests marked for a GPU (the same training on cuda and on the CPU; checkpoints across devices;
2 processes on nccl) skip here; they have never run.

``ranks`` is tests/ranks.py (tests/kgqa/conftest.py puts tests/ on sys.path); ``test_parallel``
is tests/kgqa/test_parallel.py, whose scenarios and helpers the GPU tests reuse.
"""
import datetime
import functools
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

import kgqa
from kgqa import RigelModel, TrainConfig, cli, parallel, train
from kgqa.encoder import ScratchEncoder
from kgqa.metrics import question_metrics
from kgqa.qa import QA
from kgqa.trainer import batch_loss
from ranks import record_scenarios, spawn_ranks
from test_parallel import SCENARIOS, TRAIN_TOL, HashEncoder, demo_data, hash_encoder, run_case

NO_GPU = "no CUDA GPU on this machine"
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
DEMO = Path(cli.DEMO_DIR)
KGQA_DIR = str(Path(kgqa.__file__).resolve().parent) + os.sep
MODES = [("gold", True), ("gold", False), ("learned", True), ("learned", False)]


def _qa(entities, intersection=True, device="cpu"):
    """An untrained QA; the same weights for a given mode whatever the device."""
    kb, qs, _ = demo_data()
    torch.manual_seed(0)
    encoder = ScratchEncoder.build([q.masked for q in qs]) if entities == "gold" else HashEncoder()
    model = RigelModel(encoder.out_dim, kb.num_relations, 2, 2, 32, entities)
    cfg = TrainConfig(hops=2, encoder="x", entities=entities, intersection=intersection, relation_head="ids")
    return QA(kb, encoder, model, cfg, device)


def _batch(entities, intersection):
    """Gold batches with intersection hold one topic count (as the trainer's); the others mix them."""
    _, qs, _ = demo_data()
    if entities == "gold" and intersection:
        return [q for q in qs if len(q.topics) == 2][:6]
    return qs[:4] + [q for q in qs if len(q.topics) == 2][:3]


# ---- on the CPU: no tensor outside the given device -------------------------------------------

@pytest.mark.parametrize("entities,intersection", MODES)
def test_forward_loss_and_metrics_stay_on_the_device(entities, intersection):
    qa = _qa(entities, intersection)
    batch = _batch(entities, intersection)
    if qa.learned:
        qa.link_inputs(batch)  # the encoder's inputs come from the tokenizer; encoded once, outside
    with torch.device("meta"):  # any tensor made without device= is now a meta tensor
        loss, out, answers, exclude = batch_loss(qa, batch)
        loss.backward()
        scores, _ = qa.predict(batch)
        _, traced = qa.predict(batch, trace=True)  # what an answer's evidence is computed from
        rows = question_metrics(scores, [q.answers for q in batch])
        result = qa.evaluate(batch)
    for t in (loss, out.scores, answers, exclude, scores, *traced.trace[0].inputs[-1],
              *traced.trace[-1].outputs[-1]):
        assert t.device.type == "cpu"
    assert len(rows) == len(batch) and result["n"] == len(batch)
    assert all(p.grad is not None for p in qa.model.hidden.parameters())
    if qa.learned:
        assert len(out.topics) == len(batch) and "linking_accuracy" in result


@pytest.mark.parametrize("module", ["model", "trainer", "qa"])
def test_the_meta_check_sees_a_tensor_made_without_its_device(monkeypatch, module):
    """The check above has teeth: the model's seeds and masks, the trainer's answer targets, or
    the QA's topic masks, built without their device fail in it (and pass without the meta
    context, as on a CPU)."""
    import importlib

    from kgqa.metrics import indicator

    qa = _qa("gold", False)
    batch = _batch("gold", False)
    monkeypatch.setattr(importlib.import_module(f"kgqa.{module}"), "indicator",
                        lambda ids, n, device, dtype=torch.bool: indicator(ids, n, None, dtype))
    batch_loss(qa, batch)
    with torch.device("meta"), pytest.raises((RuntimeError, ValueError), match="meta"):
        batch_loss(qa, batch)


class ImplicitDevices(TorchFunctionMode):
    """Records the tensor factory calls (torch.zeros, torch.tensor, torch.arange, ...) made by
    code in kgqa/ without ``device=``: on a GPU those tensors would be made on the CPU. Calls from
    torch, transformers or kgqa_kernels are not looked at."""

    def __init__(self):
        super().__init__()
        self.found = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _device_constructors() and kwargs.get("device") is None:
            caller = sys._getframe(1)  # the factories are builtins: the next frame is their caller
            if caller.f_code.co_filename.startswith(KGQA_DIR):
                self.found.append(f"kgqa/{caller.f_code.co_filename[len(KGQA_DIR):]}:{caller.f_lineno} "
                                  f"{getattr(func, '__name__', func)}")
        return func(*args, **kwargs)


def test_implicit_devices_sees_a_factory_without_device():
    from kgqa import metrics

    with ImplicitDevices() as found:
        metrics.indicator([[1]], 3, "cpu")
        torch.zeros(2)  # not kgqa's
    assert found.found == []
    with ImplicitDevices() as found:
        metrics.set_f1(torch.rand(2, 3), torch.ones(2, 3))
        exec(compile("torch.ones(2)", KGQA_DIR + "fake.py", "exec"), {"torch": torch})
    assert found.found == ["kgqa/fake.py:1 ones"], found.found


@pytest.fixture
def small_train(tmp_path, monkeypatch):
    monkeypatch.setenv("KGQA_CACHE", str(tmp_path / "cache"))
    lines = (DEMO / "qa_train.txt").read_text(encoding="utf-8").splitlines()[:120]
    (tmp_path / "qa.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "qa.txt"


def test_cli_device_cpu_names_every_device(small_train, tmp_path, capsys):
    """kgqa train / eval / ask --device cpu, with every tensor kgqa creates on the way checked."""
    out = tmp_path / "model"
    with ImplicitDevices() as mode:
        assert cli.main(["train", "--kb", str(DEMO / "kb.txt"), "--train", str(small_train), "--hops", "2", "--out",
                         str(out), "--encoder", "scratch", "--epochs", "2", "--batch-size", "16", "--no-progress",
                         "--device", "cpu"]) == 0
        assert "device: cpu" in capsys.readouterr().out
        assert cli.main(["eval", "--model", str(out), "--questions", str(DEMO / "qa_test.txt"), "--json",
                         "--device", "cpu"]) == 0
        last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert cli.main(["ask", "--model", str(out), "--device", "cpu", "who directed [The Golden Storm]"]) == 0
        assert "hop attention: 1 hop" in capsys.readouterr().out
    assert mode.found == [], mode.found
    assert last["n"] == 808 and json.loads((out / "config.json").read_text())["device"] == "cpu"


def test_learned_training_names_every_device():
    kb, qs, valid = demo_data()
    with ImplicitDevices() as mode, hash_encoder():
        qa = train(kb, qs[:30] + [q for q in qs if len(q.topics) == 2][:10], valid[:10],
                   TrainConfig(hops=2, encoder="hash", entities="learned", epochs=1, batch_size=16),
                   progress=False, log=lambda s: None, device="cpu")
        result = qa.evaluate(valid[:10])
    assert mode.found == [], mode.found
    assert "linking_accuracy" in result


# ---- --device ---------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is here")
@pytest.mark.parametrize("command", ["train", "eval", "ask", "demo"])
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys, command):
    args = {"train": ["--kb", str(DEMO / "kb.txt"), "--train", str(DEMO / "qa_train.txt"), "--hops", "1",
                      "--out", str(tmp_path / "m")],
            "eval": ["--model", str(tmp_path / "m"), "--questions", str(DEMO / "qa_test.txt")],
            "ask": ["--model", str(tmp_path / "m"), "who directed [The Golden Storm]"],
            "demo": ["--out", str(tmp_path / "m")]}[command]
    assert cli.main([command, "--device", "cuda", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kgqa {command}: --device cuda: no CUDA GPU here") and "--device cpu" in err, err
    assert not (tmp_path / "m").exists()  # it stopped before doing anything


def test_resolve_device(monkeypatch):
    for var in ("WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert parallel.resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert parallel.resolve_device("auto") == torch.device("cuda", torch.cuda.current_device())
    else:
        assert parallel.resolve_device("auto") == parallel.resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="--device gpu: not a device"):
        parallel.resolve_device("gpu")
    with pytest.raises(ValueError, match="--device mps: the model layer runs on cpu or cuda"):
        parallel.resolve_device("mps")
    # A machine with 2 GPUs, as torch would report it (nothing runs on them here).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert parallel.resolve_device("auto") == torch.device("cuda", 0)
    assert parallel.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"--device cuda:2: no GPU 2 \(torch sees 2\)"):
        parallel.resolve_device("cuda:2")
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: each rank its GPU LOCAL_RANK
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert parallel.resolve_device("cuda") == parallel.resolve_device("auto") == torch.device("cuda", 1)
    assert parallel.backend_for(parallel.resolve_device("cuda")) == "nccl"
    assert parallel.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="each rank uses the GPU LOCAL_RANK"):
        parallel.resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="more processes per node than GPUs"):
        parallel.resolve_device("cuda")


# ---- on a GPU (skipped without one; never run so far) --------------------------------------------

@needs_gpu
@pytest.mark.parametrize("entities,intersection", MODES)
def test_cuda_step_equals_cpu_step(entities, intersection):
    batch = _batch(entities, intersection)
    grads, losses = [], []
    for device in ("cpu", "cuda"):
        qa = _qa(entities, intersection, device)
        loss = batch_loss(qa, batch)[0]
        loss.backward()
        losses.append(float(loss))
        grads.append({k: p.grad.cpu() for k, p in qa.model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], atol=1e-5, rtol=1e-3, msg=lambda m: f"{k}: {m}")


@needs_gpu
@pytest.mark.parametrize("name", ["gold_uneven", "learned_uneven"])
def test_cuda_trains_like_cpu(name):
    (cpu_state, cpu_history), (gpu_state, gpu_history) = (run_case(name, d) for d in ("cpu", "cuda"))
    assert len(cpu_history) == len(gpu_history)
    # float32 rounding differs (cuDNN's GRU, sums in another order), and Adam amplifies it where a
    # gradient is near zero: compared loosely. Tolerances set without a GPU to measure them.
    for one, two in zip(cpu_history, gpu_history):
        assert one["loss"] == pytest.approx(two["loss"], rel=1e-3)
        assert one["valid_hits@1"] == pytest.approx(two["valid_hits@1"], abs=0.05)
    torch.testing.assert_close(gpu_state["valid_scores"], cpu_state["valid_scores"], atol=1e-2, rtol=0)


@needs_gpu
def test_checkpoints_load_on_either_device(tmp_path):
    """Written from a GPU, loaded on the CPU, and the other way round (the scratch encoder's weights
    travel in the checkpoint too)."""
    kb, qs, valid = demo_data()
    for trained_on, loaded_on in (("cuda", "cpu"), ("cpu", "cuda")):
        cfg = TrainConfig(hops=2, encoder="scratch", epochs=1, batch_size=16)
        qa = train(kb, qs[:64], valid, cfg, progress=False, log=lambda s: None, device=trained_on)
        qa.save(tmp_path / trained_on, str(DEMO / "kb.txt"))
        again = QA.load(tmp_path / trained_on, kb, device=loaded_on)
        assert {p.device.type for p in [*again.model.parameters(), *again.encoder.parameters()]} == {loaded_on}
        torch.testing.assert_close(again.predict(valid)[0].cpu(), qa.predict(valid)[0].cpu(), atol=1e-4, rtol=1e-4)


NCCL_SCENARIOS = {name: SCENARIOS[name] for name in ("gradients_gold", "gradients_learned", "gold_uneven")}


def _nccl_worker(rank, world, port, out_dir):
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        record_scenarios(rank, out_dir,
                         [(name, functools.partial(fn, rank, out_dir)) for name, fn in NCCL_SCENARIOS.items()])
    finally:
        dist.destroy_process_group()


@needs_gpu
def test_two_gpus_on_nccl():
    """tests/kgqa/test_parallel.py's one-step gradient scenarios and a training case, on 2 GPUs with
    nccl: the same checks as with gloo, every rank on its own GPU (``world.device``)."""
    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 CUDA GPUs, this machine has {torch.cuda.device_count()}")
    from safetensors.torch import load_file

    with spawn_ranks(_nccl_worker, 2, list(NCCL_SCENARIOS), 300) as (results, out_dir):
        failed = {(n, r): s for n, ranks in results.items() for r, s in ranks.items() if s != "ok"}
        assert not failed, "\n".join(f"--- {n}, rank {r}:\n{s}" for (n, r), s in failed.items())
        ranks = [load_file(os.path.join(out_dir, f"gold_uneven.rank{r}.safetensors")) for r in range(2)]
        histories = [json.loads(Path(out_dir, f"gold_uneven.rank{r}.json").read_text()) for r in range(2)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k
    assert histories[0] == histories[1]
    single, history = run_case("gold_uneven", "cuda:0")
    assert [h["valid_hits@1"] for h in history] == [h["valid_hits@1"] for h in histories[0]]
    for k in single:
        torch.testing.assert_close(ranks[0][k], single[k], atol=10 * TRAIN_TOL["atol"], rtol=10 * TRAIN_TOL["rtol"],
                                   msg=lambda m: f"{k}: {m}")
