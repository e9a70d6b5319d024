"""The training objective of the model's Output: the answer loss, and for learned entities with
intersection the loss of each path and of the gate P(two entities)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .metrics import set_f1
from .model import Output

# P(two entities) is kept this far from 0 and 1 in its binary cross entropy, whose log is infinite
# there.
GATE_EPS = 1e-6


def answer_loss(scores: torch.Tensor, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None, eps: float = 1e-6,
                per_question: bool = False):
    """-log of the share of the score mass on the answer set, plus -log of the answers' mean score:
    the first ranks answers first, the second asks for scores near 1 on them, which makes the
    relation choices and the hop attention crisp enough to read as an explanation. ``answers`` and
    ``exclude`` are [B, E] masks (exclude: the topic entities, never answers). The mean over the
    batch, or [B] with ``per_question``."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    on_answers = (scores * answers).sum(1)
    share = -torch.log((on_answers + eps) / (scores.sum(1) + eps))
    level = -torch.log(on_answers / answers.sum(1).clamp(min=1) + eps)
    loss = share + level
    return loss if per_question else loss.mean()


def training_loss(out: Output, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """answer_loss, except for learned entities with intersection: each path (the first branch
    alone, and the pair) gets its own answer loss, and P(two entities) learns, by binary cross
    entropy, which path's answer set is better (F1; 0.5 on a tie). Through the mixed scores
    instead, the gate is pushed to 0 before the second branch has learned anything (an untrained
    branch only lowers the answers' scores under min()), and then the second branch stops learning
    too. Comparing the two losses instead of F1 labels too many two-entity questions "alone":
    the loss also asks for scores near 1, which a still-unsure second branch lowers."""
    if out.parts is None:
        return answer_loss(out.scores, answers, exclude)
    alone, pair = (answer_loss(p, answers, exclude, per_question=True) for p in out.parts)
    with torch.no_grad():
        f1 = [set_f1(p if exclude is None else p.masked_fill(exclude, float("-inf")), answers) for p in out.parts]
        better = 0.5 + 0.5 * torch.sign(f1[1] - f1[0]).to(alone.dtype)
    two = out.resolution.two.view(-1).clamp(GATE_EPS, 1 - GATE_EPS)
    gate = nn.functional.binary_cross_entropy(two, better)
    return alone.mean() + pair.mean() + gate
