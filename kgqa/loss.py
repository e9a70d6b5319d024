"""The training objective of the model's Output: the answer loss, and for learned entities with
intersection the loss of each path and of the gate P(two entities); with operations (issue 20,
``kgqa.operations``) the likelihood of the answer under each operation (``operations_loss``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .model import Output
from .operations import EPS, answer_probabilities

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
    share, level = answer_terms(scores, answers, exclude, eps)
    loss = share + level
    return loss if per_question else loss.mean()


def answer_terms(scores: torch.Tensor, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None,
                 eps: float = 1e-6):
    """``answer_loss``'s two terms per question, [B] each: (share, level)."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    on_answers = (scores * answers).sum(1)
    share = -torch.log((on_answers + eps) / (scores.sum(1) + eps))
    level = -torch.log(on_answers / answers.sum(1).clamp(min=1) + eps)
    return share, level


def operations_loss(out: Output, answers: torch.Tensor, counts: torch.Tensor,
                    exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A model with operations, from answers alone (no operation labels). With P(answer | op) of
    each operation (``kgqa.operations.answer_probabilities``) and t(op) = P(answer | op) / sum over
    operations (which operation explains the answer, no gradient through it):

    - the operations' outputs (and the path under them) by -log mean over operations of
      P(answer | op), the marginal likelihood under a uniform prior;
    - P(op | question) by cross entropy against t;
    - the path's own terms (``answer_terms``) weighted by t: the share of the path's mass on the
      answers by t(path), since a superlative's answers are only part of the path's set; the
      level of the answers' scores by 1 - t(count), since a superlative's answers are members of
      the path's set too (which teaches a superlative question its path). A question whose
      answer is a numeral no entity is named has no entity answer: no path term.

    The marginal under the model's own P(op) instead, -log sum P(op) P(answer | op), collapsed:
    an operation given no weight early (before the path it reads was learned) never recovered
    (its gradient is proportional to its weight); on the toy KB of tests/kgqa/test_operations.py
    two of four seeds answered every argmin question by the path (Hits@1 0 on argmin), as the
    gate of ``training_loss`` did before it learned from labels. The mean over the batch."""
    ops = out.ops
    p_answer = answer_probabilities(ops, out.scores, answers, counts, exclude)
    nll = -torch.log(p_answer.mean(1) + EPS)
    with torch.no_grad():
        total = p_answer.sum(1, keepdim=True)
        t = p_answer / total.clamp(min=EPS)
        known = (total[:, 0] > 0).to(t.dtype)  # no operation explains it yet: no target
        has = (answers.sum(1) > 0).to(t.dtype)
        w_share, w_level = t[:, 0] * has, (1 - t[:, 1]) * has
    op_loss = -(t * torch.log(ops.p + EPS)).sum(1) * known
    if out.parts is None:
        share, level = answer_terms(out.scores, answers, exclude)
        path = w_share * share + w_level * level
    else:  # learned entities with intersection: each path as training_loss scores them
        path = sum(w_level * answer_loss(p, answers, exclude, per_question=True) for p in out.parts)
    return (nll + op_loss + path).mean()


def training_loss(out: Output, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None,
                  counts: Optional[torch.Tensor] = None) -> torch.Tensor:
    """answer_loss, except for learned entities with intersection: each path (the first branch
    alone, and the pair) gets its own answer loss, and P(two entities) learns, by binary cross
    entropy, which path puts more of its score mass on the answers (``_gate_loss``). Through the
    mixed scores instead, the gate is pushed to 0 before the second branch has learned anything (an
    untrained branch only lowers the answers' scores under min()), and then the second branch stops
    learning too. Comparing the two paths' whole losses labels too many two-entity questions
    "alone": the loss also asks for scores near 1, which a still-unsure second branch lowers.

    A model with operations (``out.ops``): ``operations_loss`` in place of the answer loss (the
    gate's term stays); ``counts`` [B]: each question's count answer, -1 where none."""
    if out.ops is not None:
        if counts is None:
            counts = torch.full((answers.shape[0],), -1, dtype=torch.long, device=answers.device)
        loss = operations_loss(out, answers, counts, exclude)
        if out.parts is None:
            return loss
        return loss + _gate_loss(out, answers, exclude)
    if out.parts is None:
        return answer_loss(out.scores, answers, exclude)
    alone, pair = (answer_loss(p, answers, exclude, per_question=True) for p in out.parts)
    return alone.mean() + pair.mean() + _gate_loss(out, answers, exclude)


def answer_share(scores: torch.Tensor, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B] the share of a path's score mass on the answers; 0 for a path that reaches nothing
    (``answer_terms``' share, unsmoothed: its eps makes an empty path look perfect)."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    return (scores * answers).sum(1) / scores.sum(1).clamp(min=torch.finfo(scores.dtype).tiny)


def _gate_loss(out: Output, answers: torch.Tensor, exclude: Optional[torch.Tensor]) -> torch.Tensor:
    """P(two entities)'s binary cross entropy against the better path's label (``training_loss``):
    1 where the pair puts more of its score mass on the answers (``answer_share``) than the first
    branch alone, 0 where less, and nothing on a tie; the mean over the batch.

    The label was the answer sets' F1 (entities scoring at least F1_THRESHOLD), with 0.5 on a tie.
    A learned pair meets by the min of two soft seeds' paths, so its scores sit under the threshold
    and its set was the top entity alone: on the 2-hop 2-entity family, every question of two
    entities, F1 called the first branch better on 166 of 800 held-out questions, the share on 60
    (on 1,000 MetaQA 1-hop questions, one entity each: the first branch on 867 and 980, the pair on
    none). The gate learns one P per way of asking, so it learned the rate of those labels: P(two
    entities) spread over 0.5-0.86 (10% to 90%), and the first branch alone, mixed in by 1 - P,
    outranked the pair's answers: Hits@1 92.50, the pair alone 98.38 (``experiments/
    learned_link_diag.py``; docs/results.md "The gate, and the two paths' scales"). On the
    share: 97.12, and with the paths scaled (``RigelModel.forward_learned``) 98.38."""
    with torch.no_grad():
        share = [answer_share(p, answers, exclude) for p in out.parts]
    two = out.resolution.two.view(-1).clamp(GATE_EPS, 1 - GATE_EPS)
    better = (share[1] > share[0]).to(two.dtype)
    decided = (share[1] != share[0]).to(two.dtype)
    return (nn.functional.binary_cross_entropy(two, better, reduction="none") * decided).mean()
