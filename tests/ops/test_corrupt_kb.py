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

import cases
import kgqa_kernels as kk
from kgqa_kernels import layout

PROBE = Path(__file__).with_name("corrupt_kb_probe.py")
# Examples of the fuzz per weighting: the interpreted Triton kernels cost milliseconds per program.
FUZZ_EXAMPLES = {"cpu": 300, "emulated": 300, "triton": 10}


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
    kb.weight.mul_(2)
    with pytest.raises(RuntimeError, match="weight was modified in place"):
        kk.follow(torch.ones(1, 3), torch.ones(1, 1), kb, backend="reference")


def test_kb_copies_to_another_device_stay_usable():
    kb = kk.SparseKB([0, 1], [0, 0], [1, 2], 3, 1)
    moved = kb.to("meta")
    moved.check_unmodified()
