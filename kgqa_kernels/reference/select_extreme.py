"""The pure-torch definition of select_extreme."""
from __future__ import annotations

import torch

from ..checks import EXTREME_MODES
from ..numerics import acc_dtype


def select_extreme(x: torch.Tensor, values: torch.Tensor, *, mode: str = "max",
                   temperature: float = 0.0) -> torch.Tensor:
    """The members of each example's set whose value is the largest (``mode="max"``) or smallest.

    x [B, E] >= 0, values [E] or [B, E] (NaN: no value). With s = +1 for max, -1 for min, e is a
    valid member of b where x[b, e] > 0 and values[b, e] is finite; m[b] = max over valid e of
    s * v[b, e]; y = x * [s * v == m] (temperature 0: tied members all keep their x) or
    x * exp((s * v - m) / temperature), 0 where not valid (and where b has no valid member).
    Gradients: to x, and at temperature > 0 to values (also through m, which follows the value of
    the first best entity in index order: torch's ``max`` along a dimension picks that one)."""
    if mode not in EXTREME_MODES:
        raise ValueError(f"select_extreme: mode must be 'max' or 'min', got {mode!r}")
    dt = acc_dtype(x.dtype)
    xa, va = x.to(dt), values.to(dt).expand(x.shape)
    sv = va if mode == "max" else -va
    valid = (xa > 0) & torch.isfinite(sv)
    # Invalid entries get -inf so they never set the best; the safe copy keeps NaN out of every graph.
    keyed = torch.where(valid, sv, torch.full_like(sv, -float("inf")))
    m = keyed.max(-1, keepdim=True).values.detach() if temperature == 0 else keyed.max(-1, keepdim=True).values
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # rows without a valid member
    safe_sv = torch.where(valid, sv, m)
    if temperature == 0:
        factor = (safe_sv == m).to(dt)
    else:
        factor = torch.exp((safe_sv - m) / temperature)
    y = torch.where(valid, torch.where(valid, xa, torch.zeros_like(xa)) * factor, torch.zeros_like(xa))
    return y.to(x.dtype)
