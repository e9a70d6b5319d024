"""The backends every op test runs on: one ``backend`` fixture (the name the public ops take), with
``device`` (where that backend's tensors live) and ``backend_cases`` (cases.cases_for).

tests/conftest.py, loaded before this file, sets TRITON_INTERPRET=1 where there is no CUDA GPU,
before anything imports triton: there the Triton backend runs on the CPU under the interpreter.

A test that takes ``backend`` runs once per backend. ``@matrix("kb_name", "B", ...)`` (cases.py)
also makes it range over those fields of cases_for(backend): the cases each backend runs are
chosen there, not in the tests. A backend that cannot run here is skipped with the reason, once
per test and parameter outside the matrix (not once per matrix case).
"""
import importlib.util
import itertools
import os

import pytest
import torch

import cases
from kgqa_kernels import backends

HAS_GPU = torch.cuda.is_available()
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
NO_GPU = "no CUDA GPU on this machine"


def _why_not(backend: str, device: str):
    """Why ``backend`` cannot run on ``device`` here, or None."""
    if device == "cuda" and not HAS_GPU:
        return NO_GPU
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    if backend == "triton" and device == "cpu" and not INTERPRETED:
        return "Triton runs on the CPU only under TRITON_INTERPRET=1 (tests/conftest.py sets it where there is no GPU)"
    if backend == "cuda" and not backends.cuda_kernels_built():
        return "this build of kgqa_kernels has no CUDA kernels"
    return None


# (id, backend, device): every backend of the public ops but the reference, which is the truth.
BACKENDS = [
    ("cpu", "cpu", "cpu"),
    ("emulated", "emulated", "cpu"),  # the CUDA kernels and their host code, run on the CPU
    ("triton", "triton", "cpu"),  # interpreted
    ("cuda", "cuda", "cuda"),
    ("triton-cuda", "triton", "cuda"),
]


def _round_bfloat16_like_compiled_triton() -> bool:
    """Triton's interpreter (3.8) casts float32 to bfloat16 by dropping the low 16 bits (rounding
    toward zero); compiled Triton rounds to nearest even, as torch does. Interpreted, the kernels'
    bfloat16 results then sit up to an ulp low, always the same way (gradients that chain several
    casts end up 1-2% low), and follow_intersect's min decides near-ties between branches otherwise
    than the rounded reference. The op tests check the kernels, not the interpreter: here the
    interpreter's float32 -> bfloat16 casts round as compiled ones do (test_backends.py checks that
    this holds). Returns whether the cast was replaced."""
    if not INTERPRETED or importlib.util.find_spec("triton") is None:
        return False
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    builder = getattr(interpreter, "InterpreterBuilder", None)
    if builder is None or not hasattr(builder, "cast_impl") or not hasattr(interpreter, "TensorHandle"):
        return False
    truncating = builder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            rounded = torch.from_numpy(np.array(src.data, dtype=np.float32)).to(torch.bfloat16)
            return interpreter.TensorHandle(rounded.view(torch.int16).numpy().view(np.uint16), tl.bfloat16)
        return truncating(self, src, dst_type)

    builder.cast_impl = cast_impl
    return True


BFLOAT16_CAST_REPLACED = _round_bfloat16_like_compiled_triton()


def _id(value) -> str:
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return str(value)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "matrix(*fields, **param_fields): range a backend test over fields of cases.cases_for(backend)")


def pytest_generate_tests(metafunc):
    if "_backend_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("matrix")
    fields = {}
    if marker is not None:
        fields = {name: name for name in marker.args}
        fields.update(marker.kwargs)
    names = list(fields)
    rows = []
    for ident, backend, device in BACKENDS:
        backend_cases = cases.cases_for(backend, device)
        combos = list(itertools.product(*(getattr(backend_cases, fields[n]) for n in names)))
        why = _why_not(backend, device)
        marks = [pytest.mark.skip(reason=why)] if why else []
        for combo in combos[:1] if why else combos:
            rows.append(pytest.param((backend, device), *combo, marks=marks, id="-".join([ident, *map(_id, combo)])))
    metafunc.parametrize(["_backend_case", *names], rows, indirect=["_backend_case"])


@pytest.fixture
def _backend_case(request):
    return request.param


@pytest.fixture
def backend(_backend_case) -> str:
    """The ``backend=`` of the public ops."""
    return _backend_case[0]


@pytest.fixture
def device(_backend_case) -> torch.device:
    """Where the backend's tensors live (and its KBs: cases.kb(name, device))."""
    return torch.device(_backend_case[1])


@pytest.fixture
def backend_cases(_backend_case) -> cases.Cases:
    """cases.cases_for(backend, device)."""
    return cases.cases_for(*_backend_case)
