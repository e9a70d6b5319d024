"""entity_values: the numeric value of each entity through relations (a film's release year), as
two follows over the KB. A composite of the public ``follow``, so it runs on every backend with
follow's kernels and autograd, and never builds a dense [E, E] matrix."""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends, checks, reference
from ..kb import SparseKB
from ..numerics import acc_dtype
from .follow import follow


def entity_values(values: torch.Tensor, r: torch.Tensor, kb: SparseKB, *, inverse: bool = False,
                  backend: Optional[str] = None) -> torch.Tensor:
    """The value of each entity through relations r: the mean value of what its facts reach,

        v[b, s] = sum over facts (s, p, o) with values[o] finite of r[b, p] * w * values[o]
                  / sum over the same facts of r[b, p] * w

    (w: the fact's weight, 1 in an unweighted KB), NaN where the denominator is 0 (no fact through
    r reaches an entity with a value). ``inverse=True`` reads the facts from object to subject, as
    follow's ``inverse``. values: [E] (NaN: no value), r: [B, R] relation weights >= 0, one dtype
    (16-bit: the two follows accumulate in float32 and the division runs in float32).

    E.g. a film's release year: values = each year entity's number, r = one-hot on the relation
    that leads from films to years. Returns [B, E], a transposed view of a batch-innermost buffer
    as follow's output (``.contiguous()`` for row-major). Gradients to r (through follow) and to the
    finite entries of values.

    Cost: two follows (the numerator and the denominator) of a dense [B, E] x, so time and memory
    grow with the facts and with B * E (docs/results.md measures 1M and 10M facts)."""
    who = "entity_values()"
    checks.check_kb(who, kb)
    checks.check_float(who, "r", r)
    checks.check_dense(who, "r", r)
    checks.check_weights(who, "r", r, kb.num_relations, "num_relations", kb.device)
    checks.check_values(who, values, r, "r", batched=False, num_entities=kb.num_entities)
    inverse = checks.check_inverse(who, inverse)
    chosen = backends.resolve(backend, r.device, "entity_values")
    if chosen == "reference":
        return reference.entity_values(values, r, kb, inverse=inverse)
    acc = acc_dtype(r.dtype)
    finite = torch.isfinite(values)
    # The follows sum values relative to their mean c (out = c + sum r w (v - c) / sum r w, the same
    # function): values such as years (~2000) summed as they are lose the digits that a difference
    # from the mean keeps, and r's gradient, sum r w (v - out) / den, is such a difference.
    # Scalars in where, not zeros_like / full_like: each of those is a pass over E or B x E
    # (measured: fills were a tenth of a call's time on a KB of 1M entities).
    known = torch.where(finite, values, 0.0).to(acc)  # no NaN in any graph
    c = (known.sum() / finite.sum().clamp_min(1)).detach()
    centred = torch.where(finite, known - c, 0.0).to(r.dtype)
    B, E = r.shape[0], kb.num_entities
    # follow maps subject -> object; an entity's value is read from the far end of its facts.
    num = follow(centred.expand(B, E), r, kb, inverse=not inverse, backend=chosen)
    den = follow(finite.to(r.dtype).expand(B, E), r, kb, inverse=not inverse, backend=chosen)
    num, den = num.to(acc), den.to(acc)
    reached = den > 0
    return torch.where(reached, c + num / torch.where(reached, den, 1.0), float("nan")).to(r.dtype)
