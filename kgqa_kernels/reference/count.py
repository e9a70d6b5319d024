"""The pure-torch definition of count."""
from __future__ import annotations

import torch

from ..numerics import acc_dtype


def count(x: torch.Tensor) -> torch.Tensor:
    """The soft size of each example's entity set: ``y[b] = sum over e of x[b, e]`` (16-bit inputs
    summed in float32, the result in x's dtype)."""
    return x.to(acc_dtype(x.dtype)).sum(-1).to(x.dtype)
