"""The pure-torch definition of entity_values: a gather and a scatter over the KB's facts."""
from __future__ import annotations

import torch

from ..kb import SparseKB
from ..numerics import acc_dtype
from .follow import fact_weights


def entity_values(values: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False) -> torch.Tensor:
    """``v[b, s] = sum over facts (s, p, o) with values[o] finite of r[b, p] * w * values[o]``
    divided by the same sum of ``r[b, p] * w`` (w: the fact's weight, 1 in an unweighted KB), NaN
    where that is 0; ``inverse``: facts read from object to subject. values [E], r [B, R]."""
    dt = acc_dtype(r.dtype)
    src, dst = (kb.subj, kb.obj) if inverse else (kb.obj, kb.subj)
    v = values.to(dt)[src]
    has = torch.isfinite(v)
    weight = r.to(dt)[:, kb.rel] * fact_weights(kb, dt)  # [B, facts]
    weight = torch.where(has, weight, torch.zeros_like(weight))
    num = torch.zeros(r.shape[0], kb.num_entities, dtype=dt, device=r.device)
    den = torch.zeros_like(num)
    num.index_add_(1, dst, weight * torch.where(has, v, torch.zeros_like(v)))
    den.index_add_(1, dst, weight)
    reached = den > 0
    out = torch.where(reached, num / torch.where(reached, den, torch.ones_like(den)), torch.full_like(num, float("nan")))
    return out.to(r.dtype)
