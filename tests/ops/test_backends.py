"""Which backend runs an op: available_backends, the backend= keyword, set_backend and
$KGQA_BACKEND, the errors for a backend that cannot run where the tensors are; that each backend's
ops run in its own library; and that the Triton kernels compile for GPUs."""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import cases
import kgqa_kernels as kk
from kgqa_kernels import backends, reference

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
NAMESPACES = {"cpu": "kgqa_kernels", "cuda": "kgqa_kernels", "emulated": "kgqa_kernels_emu", "triton": "kgqa_triton"}


def test_available_backends_on_the_cpu():
    found = kk.available_backends("cpu")
    assert found[0] == "cpu"  # what "auto" picks
    assert found == ["cpu", "emulated", *(["triton"] if INTERPRETED else []), "reference"]
    assert ("triton" in found) == INTERPRETED


def test_available_backends_elsewhere():
    assert kk.available_backends("meta") == ["reference"]
    on_cuda = kk.available_backends("cuda")
    assert on_cuda[-1] == "reference" and "cpu" not in on_cuda and "emulated" not in on_cuda
    assert ("cuda" in on_cuda) == backends.cuda_kernels_built()  # listed by the build, GPU or not


def test_every_op_runs_in_the_backends_own_library(backend, device):
    """The public ops reach the backend's ops (and their autograd) and agree with the reference."""
    kb = cases.kb("edge-weighted", device)
    x, r = cases.inputs(kb, 3, requires_grad=True)
    xs, rs = cases.inputs(kb, 3, k=2, requires_grad=True, seed=1)
    seeds, _ = cases.frontier_inputs(kb, 3)
    values = torch.linspace(1, 0, kb.num_entities, dtype=x.dtype, device=device).requires_grad_()
    calls = {
        "follow": lambda b: kk.follow(x, r, kb, backend=b),
        "follow_push": lambda b: kk.follow(seeds.to_sparse(), r, kb, backend=b),
        "intersect": lambda b: kk.intersect(*xs, backend=b),
        "union": lambda b: kk.union(*xs, tnorm="product", backend=b),
        "follow_intersect": lambda b: kk.follow_intersect(xs, rs, kb, backend=b),
        "count": lambda b: kk.count(x, backend=b),
        "select_extreme": lambda b: kk.select_extreme(x, values, temperature=0.5, backend=b),
    }
    for op, call in calls.items():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = call(backend)
            out.sum().backward()
        ran = {e.name for e in prof.events()}
        assert f"{NAMESPACES[backend]}::{op}" in ran, (op, sorted(n for n in ran if "kgqa" in n))
        torch.testing.assert_close(out, call("reference"))


def test_16_bit_results_round_once_to_nearest_like_torch(backend, device):
    """16-bit inputs are combined in float32 and rounded once, to nearest (as torch rounds)."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        a, b = (torch.rand(1000, generator=g).to(dtype).to(device) for _ in range(2))
        product = kk.intersect(a, b, tnorm="product", backend=backend)
        assert torch.equal(product, (a.float() * b.float()).to(dtype)), dtype


def test_backend_choice(monkeypatch):
    kb = cases.kb("edge")
    x, r = torch.rand(2, 20, dtype=torch.float64), torch.rand(2, 5, dtype=torch.float64)
    expected = reference.follow_dense(x, r, kb)
    for backend in ("auto", "cpu", "emulated", "reference"):
        torch.testing.assert_close(kk.follow(x, r, kb, backend=backend), expected)
    with pytest.raises(ValueError, match="backend must be one of"):
        kk.follow(x, r, kb, backend="fast")
    with pytest.raises(ValueError, match="backend must be one of"):
        kk.follow(x, r, kb, backend="tpu")
    with pytest.raises(ValueError, match="set_backend\\(\\): backend must be one of"):
        kk.set_backend("tpu")
    monkeypatch.setenv("KGQA_BACKEND", "reference")
    assert kk.get_backend() == "reference"
    calls = []
    monkeypatch.setattr(reference, "follow", lambda *a, **k: calls.append(1) or reference.follow_dense(*a, **k))
    torch.testing.assert_close(kk.follow(x, r, kb), expected)
    assert calls, "KGQA_BACKEND=reference did not reach the reference"
    try:
        kk.set_backend("cpu")  # set_backend wins over the environment
        assert kk.get_backend() == "cpu"
        calls.clear()
        torch.testing.assert_close(kk.follow(x, r, kb), expected)
        assert not calls
        kk.set_backend("emulated")
        torch.testing.assert_close(kk.follow(x, r, kb), expected)
        if INTERPRETED:
            kk.set_backend("triton")
            torch.testing.assert_close(kk.follow(x, r, kb), expected)
    finally:
        kk.set_backend(None)
    monkeypatch.setenv("KGQA_BACKEND", "nope")
    with pytest.raises(ValueError, match="KGQA_BACKEND must be one of"):
        kk.follow(x, r, kb)


@pytest.mark.parametrize("backend", ["cpu", "emulated"])
def test_cpu_backends_refuse_other_devices(backend):
    with pytest.raises(ValueError, match=f"backend='{backend}' cannot run on meta"):
        kk.intersect(torch.rand(3, device="meta"), torch.rand(3, device="meta"), backend=backend)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_backend_refuses_cpu_tensors():
    with pytest.raises(ValueError, match="backend='cuda' cannot run on cpu"):
        kk.intersect(torch.rand(3), torch.rand(3), backend="cuda")


def test_triton_on_the_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")  # read when each op picks its backend
    assert "triton" not in kk.available_backends("cpu")
    with pytest.raises(ValueError, match="backend='triton' cannot run on cpu.*TRITON_INTERPRET=1"):
        kk.intersect(torch.rand(3), torch.rand(3), backend="triton")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_compile_for_gpus():
    """Every Triton kernel compiled for sm_80 and sm_90 without a GPU (compiling, not running: the
    GPU half of the op tests runs them)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    # The two archs at once: each is about 45 s of one core with a cold Triton cache (measured on the
    # 2-core development machine), and the rest of the suite runs on one.
    runs = {arch: subprocess.Popen([sys.executable, "-m", "kgqa_kernels.triton.aot_check", "--arch", arch], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for arch in ("80", "90")}
    for arch, run in runs.items():
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, out + err
        assert out.count("ok   sm_" + arch) == 102, out
