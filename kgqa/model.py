"""The question-answering model (ReifKB / Rigel family) over kgqa_kernels' public ops.

Per hop t a distribution over relations (inverses included) from the question vector; the
entity weights follow it: x_t = follow(x_{t-1}, r_t), rescaled so the largest weight of an
example is at most 1; attention over hops decides how many hops the question takes. Questions
with several topic entities run one branch per entity (each with its own relation heads) and
join them with intersect / follow_intersect (Rigel-Intersect); ``intersection=False`` seeds one
branch with all topic entities instead, for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

import kgqa_kernels as kk


@dataclass
class Output:
    scores: torch.Tensor  # [B, E] in [0, 1]
    relations: torch.Tensor  # [B, hops, branches, R] relation distributions
    hop_attention: torch.Tensor  # [B, hops]


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Entity weights kept in [0, 1]: an example whose largest weight exceeds 1 is scaled down."""
    return x / x.amax(dim=1, keepdim=True).clamp(min=1.0)


class RigelModel(nn.Module):
    def __init__(self, enc_dim: int, num_relations: int, hops: int, branches: int = 2, hidden: int = 256):
        super().__init__()
        self.hops, self.branches, self.num_relations = hops, branches, num_relations
        self.hidden = nn.Sequential(nn.Linear(enc_dim, hidden), nn.Tanh())
        self.relation_head = nn.Linear(hidden, hops * branches * num_relations)
        self.hop_head = nn.Linear(hidden, hops)
        self.dims = dict(enc_dim=enc_dim, num_relations=num_relations, hops=hops, branches=branches, hidden=hidden)

    def forward(self, q: torch.Tensor, topics: List[List[int]], kb: kk.SparseKB, intersection: bool = True,
                exclude_topics: bool = True) -> Output:
        """q: [B, enc_dim] question vectors; topics: per question its topic entity ids (every
        question of a batch with the same count when ``intersection``). ``exclude_topics``: a path
        never comes back to a topic entity (MetaQA's "the films that share actors with [X]" means
        films other than X, at every hop)."""
        B = q.shape[0]
        h = self.hidden(q)
        rel = self.relation_head(h).view(B, self.hops, self.branches, self.num_relations).softmax(-1)
        att = self.hop_head(h).softmax(-1)
        E = kb.num_entities
        k = len(topics[0]) if intersection else 1
        if intersection and any(len(t) != k for t in topics):
            raise ValueError("RigelModel: with intersection, a batch's questions need the same number of topic entities")
        if k > self.branches:
            raise ValueError(f"RigelModel: {k} topic entities, but the model has {self.branches} branches")
        seeds = []
        for j in range(k):
            x0 = torch.zeros(B, E, dtype=q.dtype, device=q.device)
            for b, ts in enumerate(topics):
                if intersection:
                    x0[b, ts[j]] = 1.0
                else:
                    x0[b, ts] = 1.0
            seeds.append(x0)
        keep = None
        if exclude_topics:
            keep = torch.ones(B, E, dtype=q.dtype, device=q.device)
            for b, ts in enumerate(topics):
                keep[b, ts] = 0.0

        def step(y):  # masked first, so a topic entity's weight never sets the scale
            return normalise(y if keep is None else y * keep)

        xs, scores = seeds, torch.zeros(B, E, dtype=q.dtype, device=q.device)
        for t in range(self.hops):
            rs = [rel[:, t, j] for j in range(k)]
            last = t == self.hops - 1
            if k > 1 and last:
                joined = step(kk.follow_intersect(xs, rs, kb))  # fused: the branch outputs are never stored
            else:
                xs = [step(kk.follow(x, r, kb)) for x, r in zip(xs, rs)]
                joined = xs[0] if k == 1 else kk.intersect(*xs)
            scores = scores + att[:, t : t + 1] * joined
        return Output(scores, rel, att)


def answer_loss(scores: torch.Tensor, answers: torch.Tensor, exclude: Optional[torch.Tensor] = None, eps: float = 1e-6):
    """-log of the share of the score mass on the answer set, plus -log of the answers' mean score:
    the first ranks answers first, the second asks for scores near 1 on them, which makes the
    relation choices and the hop attention crisp enough to read as an explanation. ``answers`` and
    ``exclude`` are [B, E] masks (exclude: the topic entities, never answers)."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    on_answers = (scores * answers).sum(1)
    share = -torch.log((on_answers + eps) / (scores.sum(1) + eps))
    level = -torch.log(on_answers / answers.sum(1).clamp(min=1) + eps)
    return (share + level).mean()
