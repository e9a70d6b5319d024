"""The dtypes the ops take and the one accumulation rule every backend follows: 16-bit inputs are
summed in float32 and rounded once at the end; float32 and float64 sum in their own dtype."""
from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
SIXTEEN_BIT = (torch.float16, torch.bfloat16)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype sums over ``dtype`` values run in."""
    return torch.float32 if dtype in SIXTEEN_BIT else dtype
