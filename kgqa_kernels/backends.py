"""Which implementation runs an op: the ``backend=`` keyword of every op."""
from __future__ import annotations

import torch

# "cuda" and "triton" join when their kernels exist (csrc/cuda, kgqa_kernels/triton).
KNOWN = ("auto", "cpu", "reference")


def available_backends(device="cpu") -> list:
    """The backends that can run ops on tensors of ``device``, best first."""
    device = torch.device(device)
    return ["cpu", "reference"] if device.type == "cpu" else ["reference"]


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
