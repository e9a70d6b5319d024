"""Hits@1, Hits@k and answer-set F1, overall and per question type; precision against coverage."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Dict, List, Optional

import torch

F1_THRESHOLD = 0.5  # the predicted answer set: entities scoring at least this (scores are in [0, 1])


def indicator(ids: List[List[int]], n: int, device, dtype=torch.bool) -> torch.Tensor:
    """[len(ids), n] with row b one at ids[b] and zero elsewhere, built on ``device``. The ids go
    there in one copy, not one write per id (on a GPU, a kernel launch each), and without waiting
    for the GPU: a blocking copy would wait for all the work queued before it."""
    at = torch.tensor([(b, i) for b, row in enumerate(ids) for i in row], dtype=torch.long, device="cpu").view(-1, 2)
    at = at.to(device, non_blocking=True)  # from pageable memory: staged at once, safe to free
    out = torch.zeros(len(ids), n, dtype=dtype, device=device)
    out[at[:, 0], at[:, 1]] = 1
    return out


def set_f1(scores: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """[B] answer-set F1: the predicted set is the entities scoring at least F1_THRESHOLD, or the
    top one when none does. ``scores`` [B, E] with excluded entities at -inf; ``answers`` [B, E] mask."""
    predicted = scores >= F1_THRESHOLD
    # The top entity joins an empty prediction: masks, not an index of the empty rows, whose size
    # would have to come back from the GPU (set_f1 runs in the training loss).
    top = torch.zeros_like(predicted).scatter_(1, scores.argmax(1, keepdim=True), True)
    predicted |= top & ~predicted.any(1, keepdim=True)
    gold = answers > 0
    tp = (predicted & gold).sum(1)
    return 2 * tp / (predicted.sum(1) + gold.sum(1)).clamp(min=1)


def answer_set_f1(predicted: List[int], answers: List[int]) -> float:
    """F1 of a predicted answer set against the gold one (0 for an empty prediction: no answer)."""
    p, g = set(predicted), set(answers)
    return 2 * len(p & g) / (len(p) + len(g)) if p or g else 0.0


def question_metrics(scores: torch.Tensor, answers: List[List[int]], k: int = 5,
                     chosen: Optional[List[List[int]]] = None) -> List[Dict[str, float]]:
    """Per question: hits@1, hits@k (the ranking of ``scores``, [B, E] with excluded entities
    already at -inf), f1 and, given the answer sets ``chosen`` (``kgqa.calibration``'s, empty for
    an abstention: F1 0), answered; without them the F1_THRESHOLD rule of ``set_f1``."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
    if chosen is None:
        f1 = set_f1(scores, indicator(answers, scores.shape[1], scores.device)).tolist()
        extra = [{} for _ in answers]
    else:
        f1 = [answer_set_f1(ids, ans) for ids, ans in zip(chosen, answers)]
        extra = [{"answered": float(bool(ids))} for ids in chosen]
    return [{"hits@1": float(top[b][0] in ans), f"hits@{k}": float(any(e in ans for e in top[b])), "f1": f1[b],
             **extra[b]} for b, ans in enumerate(answers)]


COVERAGE_POINTS = (0.5, 0.8, 0.9, 1.0)  # the shares of questions precision_at_coverage reports


def precision_at_coverage(confidence: List[float], correct: List[float],
                          points=COVERAGE_POINTS) -> Dict[str, float]:
    """{"0.5": Hits@1 of the half of the questions the model is most confident about, ...}: the
    accuracy a model reaches if it answers only that share of the questions (ties kept in order)."""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    out = {}
    for c in points:
        n = max(1, math.ceil(c * len(order)))
        out[f"{c:g}"] = sum(correct[i] for i in order[:n]) / n
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
