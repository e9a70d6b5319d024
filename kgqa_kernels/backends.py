"""Which implementation runs an op: the ``backend=`` keyword of every op, and the process-wide
default (``set_backend``, or the environment variable ``KGQA_BACKEND``) used where it is None."""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Optional

import torch

KNOWN = ("auto", "cpu", "cuda", "triton", "emulated", "reference")
_default: Optional[str] = None  # set_backend(); None: KGQA_BACKEND, else "auto"


def cuda_kernels_built() -> bool:
    """Whether this build of kgqa_kernels._C holds the CUDA kernels (built where a CUDA toolkit was)."""
    from . import _C  # noqa: F401

    return torch._C._dispatch_has_kernel_for_dispatch_key("kgqa_kernels::follow", "CUDA")


@functools.lru_cache(maxsize=None)
def triton_installed() -> bool:
    """Asked once: find_spec scans sys.path (measured: about 0.3 ms, paid by every op call when it
    was asked per call)."""
    return importlib.util.find_spec("triton") is not None


def triton_usable(device_type: str) -> bool:
    """Triton compiles for CUDA GPUs; on the CPU it runs only through its interpreter, which reads
    TRITON_INTERPRET=1 when triton is first imported."""
    if not triton_installed():
        return False
    if device_type == "cuda":
        return torch.cuda.is_available()
    return device_type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1"


def available_backends(device="cpu") -> list:
    """The backends that can run ops on tensors of ``device``, the one "auto" picks first.

    CPU: the C++ kernels; then, for testing, "emulated" (the CUDA kernels and their host code run on
    the CPU by csrc/emulation: every build has it) and Triton under its interpreter when
    TRITON_INTERPRET=1 (both thousands of times slower). CUDA: the hand-written CUDA kernels when
    this build has them, then Triton. Nothing has measured CUDA against Triton on a GPU yet, so the
    order there is a default, not a measurement."""
    device = torch.device(device)
    found = []
    if device.type == "cpu":
        found += ["cpu", "emulated"]
    if device.type == "cuda" and cuda_kernels_built():
        found.append("cuda")
    if triton_usable(device.type):
        found.append("triton")
    return found + ["reference"]


def set_backend(backend: Optional[str]) -> None:
    """The backend every op uses when called without ``backend=`` (None: back to ``KGQA_BACKEND`` or
    "auto")."""
    if backend is not None and backend not in KNOWN:
        raise ValueError(f"set_backend(): backend must be one of {KNOWN}, got {backend!r}")
    global _default
    _default = backend


def get_backend() -> str:
    """The process-wide default backend: set_backend's, else $KGQA_BACKEND, else "auto"."""
    if _default is not None:
        return _default
    env = os.environ.get("KGQA_BACKEND", "") or "auto"
    if env not in KNOWN:
        raise ValueError(f"KGQA_BACKEND must be one of {KNOWN}, got {env!r}")
    return env


def resolve(backend: Optional[str], device: torch.device, op: str) -> str:
    if backend is None:
        backend = get_backend()
    if backend not in KNOWN:
        raise ValueError(f"{op}(): backend must be one of {KNOWN}, got {backend!r}")
    available = available_backends(device)
    if backend == "auto":
        return available[0]
    if backend not in available:
        why = ""
        if backend == "triton" and device.type == "cpu":
            why = " (Triton runs on the CPU only under TRITON_INTERPRET=1, set before triton is imported)"
        raise ValueError(f"{op}(): backend={backend!r} cannot run on {device} tensors{why}; available there: {available}")
    return backend


def op_namespace(backend: str):
    """torch.ops namespace of a resolved backend's kernels."""
    if backend == "emulated":
        from . import ops  # noqa: F401  (fakes and autograd of kgqa_kernels_emu)

        return torch.ops.kgqa_kernels_emu
    if backend == "triton":
        from . import triton as _triton  # noqa: F401  (imports triton, registers kgqa_triton)

        return torch.ops.kgqa_triton
    return torch.ops.kgqa_kernels
