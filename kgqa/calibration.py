"""Calibration: which entities a model stands behind as answers, and when it says "no answer".

A model's scores are in [0, 1] (``kgqa.model.normalise``), but a score is not a probability, and
one threshold for every model answers badly (issue 19: MetaQA 3-hop answer-set F1 0.64 at 0.5
while Hits@1 was 100). A ``Calibration`` holds the thresholds a model answers with; a checkpoint
stores its own, chosen on validation data. ``Calibration()`` is the rule used before there was
any: the entities scoring at least ``metrics.F1_THRESHOLD``, else the top one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List

import torch

from .metrics import F1_THRESHOLD


@dataclass(frozen=True)
class Calibration:
    answer_threshold: float = F1_THRESHOLD  # an entity scoring at least this is an answer
    abstain_below: float = 0.0  # a question whose top score is under this gets no answer

    def select(self, scores: torch.Tensor) -> List[List[int]]:
        """Per row of ``scores`` ([B, E], excluded entities at -inf) the answer ids, best first:
        those scoring at least ``answer_threshold``, else the top one alone; none (abstention)
        when the top score is under ``abstain_below`` or not above 0 (no path reaches it)."""
        out = []
        for row in scores.detach().float().cpu():
            top = float(row.max()) if row.numel() else float("-inf")
            if not top > 0 or top < self.abstain_below:
                out.append([])
                continue
            ids = (row >= self.answer_threshold).nonzero().flatten()
            if ids.numel() == 0:
                out.append([int(row.argmax())])
                continue
            out.append(ids[row[ids].argsort(descending=True, stable=True)].tolist())
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(**d)
