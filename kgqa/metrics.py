"""Hits@1, Hits@k and answer-set F1, overall and per question type."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Optional

import torch

F1_THRESHOLD = 0.5  # the predicted answer set: entities scoring at least this (scores are in [0, 1])


def question_metrics(scores: torch.Tensor, answers: List[List[int]], k: int = 5) -> List[Dict[str, float]]:
    """Per question: hits@1, hits@k, f1. ``scores`` [B, E] with excluded entities already at -inf."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    out = []
    for b, ans in enumerate(answers):
        gold = set(ans)
        predicted = set((scores[b] >= F1_THRESHOLD).nonzero().flatten().tolist())
        if not predicted:
            predicted = {top[b][0]}
        tp = len(predicted & gold)
        f1 = 0.0 if tp == 0 else 2 * tp / (len(predicted) + len(gold))
        out.append({"hits@1": float(top[b][0] in gold), f"hits@{k}": float(any(e in gold for e in top[b])), "f1": f1})
    return out


def aggregate(per_question: List[Dict[str, float]], qtypes: Optional[List[Optional[str]]] = None) -> dict:
    def mean(rows):
        keys = rows[0].keys() if rows else []
        return {key: sum(r[key] for r in rows) / len(rows) for key in keys}

    result = {"n": len(per_question), **mean(per_question)}
    if qtypes and any(t is not None for t in qtypes):
        groups = defaultdict(list)
        for row, t in zip(per_question, qtypes):
            groups[t].append(row)
        result["per_qtype"] = {t: {"n": len(rows), **mean(rows)} for t, rows in sorted(groups.items(), key=lambda kv: str(kv[0]))}
    return result
