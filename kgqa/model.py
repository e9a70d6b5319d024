"""The question-answering model (ReifKB / Rigel family) over kgqa_kernels' public ops.

Per hop t a distribution over relations (inverses included) from the question vector; the
entity weights follow it: x_t = follow(x_{t-1}, r_t), rescaled so the largest weight of an
example is at most 1; attention over hops decides how many hops the question takes. Questions
with several topic entities run one branch per entity (each with its own relation heads) and
join them with intersect / follow_intersect (Rigel-Intersect); ``intersection=False`` seeds one
branch with all topic entities instead, for comparison. With ``entities="learned"`` the topic
entities come from the entity resolver (``kgqa.resolver``) instead of the [brackets].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

import kgqa_kernels as kk

from .metrics import indicator, set_f1
from .resolver import EntityFacts, EntityResolver, LinkBatch, predicted_topics, seed


@dataclass
class Output:
    scores: torch.Tensor  # [B, E] in [0, 1]
    relations: torch.Tensor  # [B, hops, branches, R] relation distributions
    hop_attention: torch.Tensor  # [B, hops]
    # Learned entity resolution only: what the model linked, and the entities it never answers.
    exclude: Optional[torch.Tensor] = None  # [B, E] bool
    linked: Optional[torch.Tensor] = None  # [B, 2] the entity of each branch, -1 where none; see ``topics``
    resolution: Optional[object] = None  # resolver.Resolution
    links: Optional[list] = None  # the resolver's inputs: resolver.LinkInput per question
    # Learned entities with intersection: the scores of the first branch alone and of the pair,
    # which training_loss scores separately; ``scores`` mixes them by P(two entities).
    parts: Optional[tuple] = None

    @property
    def topics(self) -> Optional[List[List[int]]]:
        """The linked entities per question, in branch order (learned entities only). A copy from
        the device, so only what reads the links (evaluation, ``kgqa ask``) pays for it, not a
        training step."""
        if self.linked is None:
            return None
        return [[e for e in row if e >= 0] for row in self.linked.tolist()]


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Entity weights kept in [0, 1]: an example whose largest weight exceeds 1 is scaled down."""
    return x / x.amax(dim=1, keepdim=True).clamp(min=1.0)


def step(y: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """One hop's output masked (``keep``: zero on topic entities), then normalised: masked first,
    so a topic entity's weight never sets the scale."""
    return normalise(y if keep is None else y * keep)


class RigelModel(nn.Module):
    def __init__(self, enc_dim: int, num_relations: int, hops: int, branches: int = 2, hidden: int = 256,
                 entities: str = "gold"):
        super().__init__()
        if entities not in ("gold", "learned"):
            raise ValueError(f"RigelModel: entities must be 'gold' or 'learned', got {entities!r}")
        self.hops, self.branches, self.num_relations = hops, branches, num_relations
        self.hidden = nn.Sequential(nn.Linear(enc_dim, hidden), nn.Tanh())
        self.relation_head = nn.Linear(hidden, hops * branches * num_relations)
        self.hop_head = nn.Linear(hidden, hops)
        self.resolver = EntityResolver(enc_dim, num_relations) if entities == "learned" else None
        self.dims = dict(enc_dim=enc_dim, num_relations=num_relations, hops=hops, branches=branches, hidden=hidden,
                         entities=entities)

    def heads(self, q: torch.Tensor):
        """(relation distributions [B, hops, branches, R], hop attention [B, hops])."""
        h = self.hidden(q)
        rel = self.relation_head(h).view(q.shape[0], self.hops, self.branches, self.num_relations).softmax(-1)
        return rel, self.hop_head(h).softmax(-1)

    def hops_from(self, seeds: List[torch.Tensor], rel: torch.Tensor, att: torch.Tensor, kb: kk.SparseKB,
                  keep: Optional[torch.Tensor]) -> torch.Tensor:
        """Scores [B, E] from one seed per branch; branches meet by intersection at every hop.
        ``keep`` [B, E] multiplies every hop's output (zero on topic entities)."""
        k = len(seeds)
        xs, scores = seeds, torch.zeros_like(seeds[0])
        for t in range(self.hops):
            rs = [rel[:, t, j] for j in range(k)]
            if k > 1 and t == self.hops - 1:
                joined = step(kk.follow_intersect(xs, rs, kb), keep)  # fused: the branch outputs are never stored
            else:
                xs = [step(kk.follow(x, r, kb), keep) for x, r in zip(xs, rs)]
                joined = xs[0] if k == 1 else kk.intersect(*xs)
            scores = scores + att[:, t : t + 1] * joined
        return scores

    def forward(self, q: torch.Tensor, topics: List[List[int]], kb: kk.SparseKB, intersection: bool = True,
                exclude_topics: bool = True) -> Output:
        """Gold entities. q: [B, enc_dim] question vectors; topics: per question its topic entity
        ids (every question of a batch with the same count when ``intersection``).
        ``exclude_topics``: a path never comes back to a topic entity (MetaQA's "the films that
        share actors with [X]" means films other than X, at every hop)."""
        B = q.shape[0]
        rel, att = self.heads(q)
        E = kb.num_entities
        k = len(topics[0]) if intersection else 1
        if intersection and any(len(t) != k for t in topics):
            raise ValueError("RigelModel: with intersection, a batch's questions need the same number of topic entities")
        if k > self.branches:
            raise ValueError(f"RigelModel: {k} topic entities, but the model has {self.branches} branches")
        if intersection:
            seeds = [indicator([[ts[j]] for ts in topics], E, q.device, q.dtype) for j in range(k)]
        else:
            seeds = [indicator(topics, E, q.device, q.dtype)]
        keep = 1 - indicator(topics, E, q.device, q.dtype) if exclude_topics else None
        return Output(self.hops_from(seeds, rel, att, kb, keep), rel, att)

    def forward_learned(self, lb: LinkBatch, facts: EntityFacts, kb: kk.SparseKB, intersection: bool = True,
                        exclude_topics: bool = True) -> Output:
        """Entities found by the resolver. The first branch starts from the mixture over spans and
        their entities, P(span) * P(entity | span); its question vector is the same mixture of the
        span-masked encodings, which is the gold-mode vector once the resolver is sure. With
        ``intersection``, a pair of branches (the first, and the second from P2) meets by
        intersection, and every hop scores (1 - g) * first alone + g * pair, g = P(two entities).
        ``Output.parts`` holds the two paths for ``training_loss``."""
        if self.resolver is None:
            raise ValueError("RigelModel: this model was trained with gold entities; it has no entity resolver")
        E = kb.num_entities
        res = self.resolver(lb, facts)
        first = seed(lb, res.span.unsqueeze(-1) * res.entity, E)
        q_first = (res.span.unsqueeze(-1) * lb.masked).sum(1)
        rel, att = self.heads(q_first)
        keep = (1 - first.detach()).clamp(0, 1) if exclude_topics else None
        if not intersection:
            scores = self.hops_from([first], rel, att, kb, keep)
            return self._learned_output(lb, res, scores, rel[:, :, :1], att, None, False, exclude_topics)
        # The pair's relations: gold mode's branch heads are positional (branch 0 takes the first
        # mention), so the pair reads them in the order its spans are written, softly:
        # w = P(the first branch's span comes before the second's).
        second = seed(lb, res.second.unsqueeze(-1) * res.entity, E)
        rel2, att2 = self.heads((q_first + (res.second.unsqueeze(-1) * lb.masked).sum(1)) / 2)
        starts = lb.span_start
        before = (starts.unsqueeze(2) < starts.unsqueeze(1)).to(res.span.dtype)  # [B, i, j]: span i before span j
        w = torch.einsum("bi,bij,bj->b", res.span, before, res.second).view(-1, 1, 1)
        pair_rel = torch.stack([w * rel2[:, :, 0] + (1 - w) * rel2[:, :, 1], w * rel2[:, :, 1] + (1 - w) * rel2[:, :, 0]], 2)
        keep2 = (1 - second.detach()).clamp(0, 1) if exclude_topics else None
        two = res.two.to(first.dtype)
        has_second = (res.second.sum(1, keepdim=True) > 0).to(first.dtype)  # else the pair is the first alone
        x, xa, xb, alone, pair = first, first, second, torch.zeros_like(first), torch.zeros_like(first)
        for t in range(self.hops):
            x = step(kk.follow(x, rel[:, t, 0], kb), keep)
            xa = step(kk.follow(xa, pair_rel[:, t, 0], kb), keep)
            xb = step(kk.follow(xb, pair_rel[:, t, 1], kb), keep2)
            joined = has_second * kk.intersect(xa, xb) + (1 - has_second) * x
            alone = alone + att[:, t : t + 1] * x
            pair = pair + att2[:, t : t + 1] * joined
        scores = (1 - two) * alone + two * pair
        pick = (two > 0.5) & (has_second > 0)
        rel = torch.where(pick.view(-1, 1, 1, 1), pair_rel, rel[:, :, :1].expand_as(pair_rel))
        att = torch.where(pick, att2, att)
        return self._learned_output(lb, res, scores, rel, att, (alone, pair), True, exclude_topics)

    @staticmethod
    def _learned_output(lb, res, scores, rel, att, parts, intersection, exclude_topics) -> Output:
        linked = predicted_topics(lb, res, intersection)
        B, E = scores.shape
        # One column past the entities takes the -1s (no entity), which the slice drops: a mask
        # built on the device, with no copy of the links to the host.
        exclude = torch.zeros(B, E + 1, dtype=torch.bool, device=scores.device)
        if exclude_topics:
            exclude.scatter_(1, torch.where(linked >= 0, linked, E), True)
        return Output(scores, rel, att, exclude[:, :E], linked, res, lb.inputs, parts)


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
    two = out.resolution.two.view(-1).clamp(1e-6, 1 - 1e-6)
    gate = nn.functional.binary_cross_entropy(two, better)
    return alone.mean() + pair.mean() + gate
