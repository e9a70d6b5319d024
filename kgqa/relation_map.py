"""A trained model over a KB whose relations are not the ones it was trained on, in the same order.

A model's per-relation parameters (the relation heads' rows, the entity resolver's) are indexed by
the relation ids of the KB it was trained on. A KB that gained relations, or lists them in another
order, still serves the model: ``relation_map`` matches the relations by name, and ``take_rows``
re-indexes a parameter by that map, so that row j of the result belongs to the KB's relation j.
A relation the model never saw gets the ``fill`` row (the relation heads: a logit so low that the
softmax gives it exactly zero, so it is never chosen; the resolver: no weight). A trained relation
the KB lacks is the one thing the model cannot use: ``relation_map`` refuses it, naming it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from .kb import INVERSE_SUFFIX

NEW = -1  # relation_map's entry for a relation the model was not trained on


def first_repeat(names: Sequence[str]) -> Optional[str]:
    """The first name of ``names`` that an earlier one equals, or None: names matched by name must
    be unique."""
    seen = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def relation_map(trained: Sequence[str], kb: Sequence[str]) -> Optional[torch.Tensor]:
    """None when ``kb`` lists exactly the ``trained`` relation names in the same order (nothing to
    map); else a long tensor [len(kb)]: for each of the KB's relations, the index of the trained
    relation of that name, or ``NEW``. A ValueError naming the trained relations missing from ``kb``
    (without their inverses where the relation itself is named)."""
    trained, kb = list(trained), list(kb)
    if trained == kb:
        return None
    for what, names in (("trained", trained), ("KB's", kb)):
        twice = first_repeat(names)
        if twice is not None:
            raise ValueError(f"the {what} relations name {twice!r} twice; relations are matched by name")
    index = {name: i for i, name in enumerate(trained)}
    missing = sorted(set(trained) - set(kb))
    if missing:
        gone = set(missing)
        shown = [n for n in missing if not (n.endswith(INVERSE_SUFFIX) and n[: -len(INVERSE_SUFFIX)] in gone)]
        raise ValueError(f"the KB lacks {len(shown)} relation{'s' if len(shown) != 1 else ''} the model was trained "
                         f"on: {', '.join(map(repr, shown[:10]))}{' ...' if len(shown) > 10 else ''}")
    return torch.tensor([index.get(name, NEW) for name in kb], dtype=torch.long)


def new_relations(mapping: Optional[torch.Tensor], kb: Sequence[str]) -> List[str]:
    """The names in ``kb`` that ``mapping`` (``relation_map``'s) marks as not trained on."""
    if mapping is None:
        return []
    return [name for name, i in zip(kb, mapping.tolist()) if i == NEW]


def take_rows(t: torch.Tensor, mapping: torch.Tensor, dim: int, fill: float) -> torch.Tensor:
    """``t`` re-indexed along ``dim`` (its relations) by ``mapping``: index j of the result is
    ``t``'s index mapping[j], or ``fill`` where mapping[j] is ``NEW``. Same dtype and device."""
    mapping = mapping.to(t.device)
    out = t.index_select(dim, mapping.clamp(min=0))
    shape = [1] * t.dim()
    shape[dim] = len(mapping)
    return out.masked_fill((mapping == NEW).view(shape), fill)
