"""The pure-torch definitions of intersect and union."""
from __future__ import annotations

import torch

from ..numerics import acc_dtype


def intersect(*xs: torch.Tensor, tnorm: str = "min") -> torch.Tensor:
    """Elementwise minimum (Rigel-Intersect) or product of k tensors."""
    stacked = torch.stack(xs)
    if tnorm == "min":
        return stacked.amin(0)
    if tnorm == "product":
        return stacked.to(acc_dtype(stacked.dtype)).prod(0).to(stacked.dtype)
    raise ValueError(f"intersect: tnorm must be 'min' or 'product', got {tnorm!r}")


def union(*xs: torch.Tensor, tnorm: str = "max") -> torch.Tensor:
    """Elementwise maximum, or the probabilistic sum 1 - prod(1 - x)."""
    stacked = torch.stack(xs)
    if tnorm == "max":
        return stacked.amax(0)
    if tnorm == "product":
        s = stacked.to(acc_dtype(stacked.dtype))
        return (1 - (1 - s).prod(0)).to(stacked.dtype)
    raise ValueError(f"union: tnorm must be 'max' or 'product', got {tnorm!r}")
