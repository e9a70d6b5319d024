"""Generated KBs with the degree skew of real ones, for demos, benchmarks and tests."""
from __future__ import annotations

from typing import Optional

import torch

from .kb import SparseKB


def power_law_kb(
    num_entities: int,
    num_relations: int,
    num_facts: int,
    *,
    exponent: float = 1.1,
    subject_exponent: Optional[float] = None,
    object_exponent: Optional[float] = None,
    seed: int = 0,
) -> SparseKB:
    """Subjects, relations and objects each drawn from a Zipf-like law (P(rank k) ~ k^-a) over
    shuffled ids, so a few hub entities hold most facts, as in Freebase-like KBs, and the hubs sit
    at random ids. ``exponent`` is the relations' a, and the subjects' and objects' unless
    ``subject_exponent`` / ``object_exponent`` give their own (None: ``exponent``; leaving both
    None gives the same KB, bit for bit, as before they existed). An exponent of 0 draws uniformly
    (k^0 = 1). Subjects and objects rank the same shuffled ids, so the k-th most frequent subject
    and the k-th most frequent object are the same entity.
    Duplicate draws are replaced by fresh ones, so the KB holds exactly num_facts distinct facts
    (num_facts must not exceed what the id spaces can hold)."""
    if num_facts > num_entities * num_entities * num_relations:
        raise ValueError("power_law_kb: more facts requested than distinct (s, p, o) triples exist")
    g = torch.Generator().manual_seed(seed)

    s_exp = exponent if subject_exponent is None else subject_exponent
    o_exp = exponent if object_exponent is None else object_exponent
    for name, a in (("exponent", exponent), ("subject_exponent", s_exp), ("object_exponent", o_exp)):
        if not a >= 0:
            raise ValueError(f"power_law_kb: {name} must be >= 0 (0 is uniform), got {a}")

    def draw(n: int, count: int, a: float) -> torch.Tensor:
        weights = torch.arange(1, n + 1, dtype=torch.float64).pow_(-a)
        cdf = torch.cumsum(weights, 0)
        cdf /= cdf[-1].clone()
        ranks = torch.searchsorted(cdf, torch.rand(count, generator=g, dtype=torch.float64))
        return ranks.clamp_(max=n - 1)

    ent_ids = torch.randperm(num_entities, generator=g)
    rel_ids = torch.randperm(num_relations, generator=g)
    keys = torch.empty(0, dtype=torch.int64)
    while keys.numel() < num_facts:
        # Skewed draws repeat popular triples; draw more than missing, keep first occurrences.
        n = 2 * (num_facts - keys.numel()) + 1024
        # Draw order s, p, o is what keeps the default KBs unchanged.
        s = ent_ids[draw(num_entities, n, s_exp)]
        p = rel_ids[draw(num_relations, n, exponent)]
        o = ent_ids[draw(num_entities, n, o_exp)]
        new = (s * num_relations + p) * num_entities + o
        keys = _first_occurrences(torch.cat([keys, new]))[:num_facts]
    s, rest = keys // (num_relations * num_entities), keys % (num_relations * num_entities)
    return SparseKB(s, rest // num_entities, rest % num_entities, num_entities, num_relations)


def _first_occurrences(keys: torch.Tensor) -> torch.Tensor:
    """The distinct values of keys in the order they first appear."""
    uniq, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((uniq.numel(),), keys.numel(), dtype=torch.int64)
    first.scatter_reduce_(0, inverse, torch.arange(keys.numel()), reduce="amin")
    return keys[first.sort().values]
