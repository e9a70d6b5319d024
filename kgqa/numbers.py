"""Numbers in a KB: entities whose names are numbers (years, counts, ages) and the relations that
lead to them (numeric attributes, such as a film's release year), for counting and superlative
questions (``kgqa.generate``) and the model's value of an entity (``kgqa_kernels.entity_values``).

A name is a number only when all of it is one: "1999", "7.5", "-2", "1,234" (thousands grouped by
commas) are; "1999s", "Catch-22", "2001: A Space Odyssey", "nan", "inf" are not (a title that
starts with a number must not take part in a superlative over years)."""
from __future__ import annotations

import math
import re
from typing import List, Optional

import numpy as np

from .config import NUMERIC_MIN_SHARE

__all__ = ["parse_number", "numeric_values", "numeric_relations", "NUMERIC_MIN_SHARE"]

# an optional minus, digits (plain, or grouped in threes by commas), an optional fraction
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def parse_number(name: str) -> Optional[float]:
    """The number a whole name is, or None: "1999" -> 1999.0, "1,234" -> 1234.0, "-2" -> -2.0,
    "7.5" -> 7.5; None for "1999s", "Catch-22", "", "nan", "inf" and anything else."""
    if not isinstance(name, str) or not _NUMBER.fullmatch(name):
        return None
    value = float(name.replace(",", ""))
    return value if math.isfinite(value) else None  # a name of 400 digits overflows to inf


def numeric_values(kb) -> np.ndarray:
    """float64 [E]: parse_number of each entity's name of ``kb`` (a kgqa.kb.KnowledgeBase), NaN
    where the name is not a number."""
    out = np.full(len(kb.entities), np.nan, dtype=np.float64)
    for i, name in enumerate(kb.entities):
        v = parse_number(name)
        if v is not None:
            out[i] = v
    return out


def numeric_shares(kb, values: Optional[np.ndarray] = None) -> np.ndarray:
    """float64 [2R]: for each relation id (forward [0, R), inverse [R, 2R), as kgqa.kb numbers
    them) the share of its facts that lead to an entity with a number (a forward relation reads
    subject -> object, its inverse object -> subject); 0 for a relation without facts."""
    values = numeric_values(kb) if values is None else values
    nrel = len(kb.base_relations)
    triples = kb.triples.cpu().numpy()
    s, p, o = triples[:, 0], triples[:, 1], triples[:, 2]
    has = ~np.isnan(values)
    facts = np.bincount(p, minlength=nrel).astype(np.float64)
    to_object = np.bincount(p, weights=has[o], minlength=nrel)
    to_subject = np.bincount(p, weights=has[s], minlength=nrel)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.concatenate([to_object, to_subject]) / np.concatenate([facts, facts])
    return np.nan_to_num(shares, nan=0.0)


def numeric_relations(kb, min_share: float = NUMERIC_MIN_SHARE) -> List[int]:
    """The relation ids (forward [0, R) and inverse [R, 2R), as kgqa.kb numbers them) at least
    ``min_share`` of whose facts lead to an entity with a number: the numeric attributes. MetaQA:
    ``release_year`` (film -> year), and nothing else (docs/model-layer.md)."""
    if isinstance(min_share, bool) or not isinstance(min_share, (int, float)) or not 0 < min_share <= 1:
        raise ValueError(f"numeric_relations(): min_share must be a number in (0, 1], got {min_share!r}")
    shares = numeric_shares(kb)
    return [int(r) for r in np.flatnonzero(shares >= min_share)]
