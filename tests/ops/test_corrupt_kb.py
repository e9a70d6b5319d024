"""KB tensor lists that lie: every raw op of every backend, on lists whose row pointers, ids or
chunk table were corrupted (tests/ops/corrupt_kb_probe.py, a fixed matrix and a hypothesis fuzz),
raises an error naming the tensor or gives the intact KB's answer, and never crashes: each backend
runs in its own process, so a segfault fails the test instead of the session. Then the public
API's guard: a SparseKB whose tensors were written in place is refused."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cases
import kgqa_kernels as kk
from kgqa_kernels import layout

PROBE = Path(__file__).with_name("corrupt_kb_probe.py")
# Examples of the fuzz per weighting: the interpreted Triton kernels cost milliseconds per program.
FUZZ_EXAMPLES = {"cpu": 300, "emulated": 300, "triton": 6}


@pytest.mark.parametrize("backend", ["cpu", "emulated", "triton"])
def test_corrupted_kb_lists_raise_or_answer_never_crash(backend):
    if backend == "triton":
        pytest.importorskip("triton", reason="triton is not installed")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(PROBE.parents[2]), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(PROBE), backend, str(FUZZ_EXAMPLES[backend])],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode >= 0, f"the probe died of signal {-proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and not summary["wrong"], summary["wrong"]
    # Some corruptions were read and reported; the ops that never read them answered as before.
    assert summary["outcomes"].get("error", 0) > 0 and summary["outcomes"].get("same", 0) > 0, summary


@pytest.mark.parametrize("slot", ["OBJ_SUBJ", "SUBJ_PTR", "REL_CHUNK_REL"])
def test_a_kb_written_in_place_is_refused(backend, device, slot):
    kb = cases.edge_case_kb().to(device)  # a KB of its own: the registry's are shared
    x, r = cases.inputs(kb, 2)
    kk.follow(x, r, kb, backend=backend)
    kb.tensors()[getattr(layout, slot)][0] = 0  # even a value in range: the KB was validated without it
    with pytest.raises(RuntimeError, match=f"{slot} was modified in place"):
        kk.follow(x, r, kb, backend=backend)
    with pytest.raises(RuntimeError, match="modified in place"):
        kb.tensors()


def test_the_facts_of_a_kb_are_guarded_too():
    kb = kk.SparseKB([0, 1], [0, 0], [1, 2], 3, 1, weight=[0.5, 2.0])
    kb.weight.mul_(2)  # the canonical weight, which is also the subject order's (SUBJ_WEIGHT)
    with pytest.raises(RuntimeError, match="SUBJ_WEIGHT was modified in place"):
        kk.follow(torch.ones(1, 3), torch.ones(1, 1), kb, backend="reference")


def test_kb_copies_to_another_device_stay_usable():
    kb = kk.SparseKB([0, 1], [0, 0], [1, 2], 3, 1)
    moved = kb.to("meta")
    moved.check_unmodified()


# ---- op arguments: a Python exception or the reference's answer -----------------------------------

_BAD_OR_GOOD = st.fixed_dictionaries({
    "B": st.integers(0, 3),
    "x_cols": st.sampled_from(["E", "E+1", "E-1"]),
    "r_cols": st.sampled_from(["R", "R+1"]),
    "r_batch": st.sampled_from(["B", "B+1"]),
    "dtype": st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
    "r_dtype": st.sampled_from(["same", torch.float16]),
    "x_layout": st.sampled_from(["dense", "coo", "csr", "csc", "coo-bad-index", "transposed"]),
    "inverse": st.sampled_from([False, True, 0, 1, "no", None]),
    "direction": st.sampled_from(["auto", "pull", "push", "sideways", 3]),
    "values": st.sampled_from(["uniform", "nan", "inf", "huge", "zero"]),
})


@pytest.mark.filterwarnings("ignore:Sparse CSC tensor support is in beta")
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(_BAD_OR_GOOD)
def test_follow_arguments_raise_or_match_the_reference(args):
    """Any mix of shapes, dtypes, layouts, flags and values through the public follow (cpu
    backend): a TypeError, ValueError or RuntimeError, or the reference backend's answer."""
    kb = cases.kb("edge")
    E, R, B = kb.num_entities, kb.num_relations, args["B"]
    cols = {"E": E, "E+1": E + 1, "E-1": E - 1, "R": R, "R+1": R + 1}
    g = torch.Generator().manual_seed(0)
    fill = {"uniform": None, "nan": float("nan"), "inf": float("inf"), "huge": 3e38, "zero": 0.0}[args["values"]]
    x = torch.rand(B, cols[args["x_cols"]], generator=g, dtype=torch.float64)
    if fill is not None and x.numel():
        x[0, 0] = fill
    x = x.to(args["dtype"])
    r_batch = B if args["r_batch"] == "B" else B + 1
    r = torch.rand(r_batch, cols[args["r_cols"]], generator=g, dtype=torch.float64)
    r = r.to(args["dtype"] if args["r_dtype"] == "same" else args["r_dtype"])
    layout_ = args["x_layout"]
    if layout_ == "coo":
        x = x.to_sparse_coo()
    elif layout_ == "csr" and x.dim() == 2:
        x = x.to_sparse_csr()
    elif layout_ == "csc":
        x = x.to_sparse_csc()
    elif layout_ == "coo-bad-index":
        x = torch.sparse_coo_tensor(torch.tensor([[0], [E + 5]]), torch.ones(1, dtype=x.dtype), (max(B, 1), E),
                                    check_invariants=False)
    elif layout_ == "transposed":
        x = x.t().contiguous().t()
    kwargs = dict(inverse=args["inverse"], direction=args["direction"])
    try:
        y = kk.follow(x, r, kb, backend="cpu", **kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        assert str(e), "an error must say what was wrong"
        return
    expected = kk.follow(x, r, kb, backend="reference", **kwargs)
    torch.testing.assert_close(y, expected, equal_nan=True, **dict(zip(("atol", "rtol"), cases.tol(y.dtype))))
