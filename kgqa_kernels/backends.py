"""Which implementation runs an op: the ``backend=`` keyword of every op."""
from __future__ import annotations

import torch

# "triton" joins when its kernels exist (kgqa_kernels/triton).
KNOWN = ("auto", "cpu", "cuda", "reference")


def cuda_kernels_built() -> bool:
    """Whether this build of kgqa_kernels._C holds the CUDA kernels (built where a CUDA toolkit was)."""
    from . import _C  # noqa: F401

    return torch._C._dispatch_has_kernel_for_dispatch_key("kgqa_kernels::follow", "CUDA")


def available_backends(device="cpu") -> list:
    """The backends that can run ops on tensors of ``device``, best first."""
    device = torch.device(device)
    if device.type == "cpu":
        return ["cpu", "reference"]
    if device.type == "cuda" and cuda_kernels_built():
        return ["cuda", "reference"]
    return ["reference"]


def resolve(backend: str, device: torch.device, op: str) -> str:
    if backend not in KNOWN:
        raise ValueError(f"{op}(): backend must be one of {KNOWN}, got {backend!r}")
    if backend == "auto":
        return available_backends(device)[0]
    if backend not in available_backends(device):
        raise ValueError(
            f"{op}(): backend={backend!r} cannot run on {device} tensors; available there: "
            f"{available_backends(device)}"
        )
    return backend
