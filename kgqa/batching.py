"""Question lists cut for training: the train/validation split and the batches."""
from __future__ import annotations

import random
from typing import Dict, List

from .questions import Question


def batches(questions: List[Question], size: int, group_by_topics: bool, shuffle: bool, rng=None):
    """Batches of questions with the same number of topic entities when intersecting (one branch each)."""
    groups: Dict[int, List[Question]] = {}
    for q in questions:
        groups.setdefault(len(q.topics) if group_by_topics else 0, []).append(q)
    out = []
    for key in sorted(groups):
        qs = list(groups[key])
        if shuffle:
            rng.shuffle(qs)
        out += [qs[i : i + size] for i in range(0, len(qs), size)]
    if shuffle:
        rng.shuffle(out)
    return out


def split(questions: List[Question], valid_fraction: float, seed: int):
    """(train, valid): ``valid_fraction`` of the questions held out, drawn with ``seed``."""
    rng = random.Random(seed)
    qs = list(questions)
    rng.shuffle(qs)
    n = max(1, int(round(valid_fraction * len(qs))))
    return qs[n:], qs[:n]
