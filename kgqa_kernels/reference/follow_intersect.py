"""The pure-torch definition of follow_intersect: the unfused composition."""
from __future__ import annotations

from ..kb import SparseKB
from .follow import follow_sparse
from .intersect import intersect


def follow_intersect(xs, rs, kb: SparseKB, *, inverse: bool = False, tnorm: str = "min", form=follow_sparse):
    return intersect(*[form(x, r, kb, inverse=inverse) for x, r in zip(xs, rs)], tnorm=tnorm)
