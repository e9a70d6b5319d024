"""Learned entity resolution (Rigel-ER) for questions without [brackets].

Candidate spans come from the alias index (``kgqa.linking``); each gets a probability from the
encoder's token states over the span and the encoding of the question with the span replaced by
NE (how much the rest reads like a question about an entity there). Each span's candidate entities
get a probability from how they matched and from their KB neighbourhood: which relations their
facts use, scored against what the rest of the question asks. The seed of the hops is

    x0 = sum over spans P(span) * sum over entities P(entity | span) * onehot(entity),

differentiable in both scorers, so answers alone train them: no entity labels are used.

Questions with two topic entities (Rigel-Intersect): a second span distribution, P2, scores the
spans again but only those that do not overlap the first distribution's best span, and seeds a
second branch; the two branches meet by intersection. A learned gate
P(two entities) mixes the intersection with the first branch alone, so the model decides per
question whether to intersect. Both distributions stay soft, so the answers train both: a hard
"take the two best spans" gives the second branch no gradient when it picks a wrong span (min()
passes the gradient to the branch that is lowest, and a wrong span's branch is zero on the answers
whatever its weight).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import nn

from .aliases import AliasIndex
from .kb import KnowledgeBase
from .linking import candidate_spans

SPAN_FEATURES = 6
ENTITY_FEATURES = 5
_HOW = ("exact", "normalised", "fuzzy")


@dataclass
class Mention:
    """A candidate span of a plain question and the entities its text matches."""

    start: int
    end: int
    text: str
    entities: List[int]
    how: List[str]
    similarity: List[float]


def find_mentions(plain: str, index: AliasIndex, max_words: int = 8, per_span: int = 10,
                  max_spans: int = 16) -> List[Mention]:
    """Spans with an exact or normalised match; only when there is none, fuzzy (trigram) matches
    of spans up to 4 words, which keeps a typo answerable without a fuzzy lookup per n-gram of
    every question. At most ``max_spans``, the longest first."""
    spans = candidate_spans(plain, index, max_words, per_span)
    if not spans:
        spans = candidate_spans(plain, index, min(4, max_words), per_span, fuzzy=True)
    spans.sort(key=lambda s: (-(s.end - s.start), s.start))
    return [Mention(s.start, s.end, s.text, [c.entity for c in s.candidates], [c.how for c in s.candidates],
                    [c.score for c in s.candidates]) for s in spans[:max_spans]]


def mask_span(plain: str, m: Mention, token: str = "NE") -> str:
    return plain[: m.start] + token + plain[m.end :]


def overlaps(a: Mention, b: Mention) -> bool:
    return a.start < b.end and b.start < a.end


@dataclass
class LinkInput:
    """One question's precomputed resolution inputs (the encoder is frozen)."""

    plain: str
    mentions: List[Mention]
    question: torch.Tensor  # [D] the plain question, mean-pooled
    span: torch.Tensor  # [S, D] mean token state over each span
    masked: torch.Tensor  # [S, D] the question with the span replaced by NE, encoded


@dataclass
class LinkBatch:
    inputs: List[LinkInput]
    question: torch.Tensor  # [B, D]
    span: torch.Tensor  # [B, S, D]
    masked: torch.Tensor  # [B, S, D]
    span_features: torch.Tensor  # [B, S, SPAN_FEATURES]
    span_valid: torch.Tensor  # [B, S] bool
    overlap: torch.Tensor  # [B, S, S] float: 1 where two spans share a character (a span overlaps itself)
    entity: torch.Tensor  # [B, S, C] entity ids (0 where not valid)
    entity_features: torch.Tensor  # [B, S, C, ENTITY_FEATURES]
    entity_valid: torch.Tensor  # [B, S, C] bool


class EntityFacts:
    """Per entity: which relations (inverses included) its facts use, and log(1 + its degree)."""

    def __init__(self, kb: KnowledgeBase):
        s, p, o = kb.triples.unbind(1)
        nrel = len(kb.base_relations)
        self.profile = torch.zeros(kb.num_entities, kb.num_relations)
        self.profile[s, p] = 1.0
        self.profile[o, p + nrel] = 1.0
        degree = torch.bincount(torch.cat([s, o]), minlength=kb.num_entities).float()
        self.log_degree = torch.log1p(degree)


def collate(inputs: List[LinkInput], facts: EntityFacts) -> LinkBatch:
    B = len(inputs)
    D = inputs[0].question.numel()
    S = max(1, max(len(x.mentions) for x in inputs))
    C = max([1] + [len(m.entities) for x in inputs for m in x.mentions])
    span = torch.zeros(B, S, D)
    masked = torch.zeros(B, S, D)
    span_f = torch.zeros(B, S, SPAN_FEATURES)
    span_ok = torch.zeros(B, S, dtype=torch.bool)
    overlap = torch.zeros(B, S, S)
    ent = torch.zeros(B, S, C, dtype=torch.long)
    ent_f = torch.zeros(B, S, C, ENTITY_FEATURES)
    ent_ok = torch.zeros(B, S, C, dtype=torch.bool)
    for b, x in enumerate(inputs):
        n = len(x.mentions)
        if n:
            span[b, :n] = x.span
            masked[b, :n] = x.masked
            span_ok[b, :n] = True
        for j, m in enumerate(x.mentions):
            for i, other in enumerate(x.mentions):
                overlap[b, j, i] = float(overlaps(m, other))
            kinds = set(m.how)
            span_f[b, j] = torch.tensor([
                len(m.text.split()) / 8, float("exact" in kinds), float(kinds == {"normalised"}),
                float(kinds == {"fuzzy"}), math.log1p(len(m.entities)) / math.log(10), m.start / max(1, len(x.plain))])
            c = len(m.entities)
            ids = torch.tensor(m.entities)
            ent[b, j, :c] = ids
            ent_ok[b, j, :c] = True
            ent_f[b, j, :c, :3] = torch.tensor([[float(h == k) for k in _HOW] for h in m.how])
            ent_f[b, j, :c, 3] = torch.tensor(m.similarity)
            ent_f[b, j, :c, 4] = facts.log_degree[ids] / 10
    return LinkBatch(inputs, torch.stack([x.question for x in inputs]), span, masked, span_f, span_ok, overlap, ent, ent_f,
                     ent_ok)


@dataclass
class Resolution:
    span: torch.Tensor  # [B, S] P(span), zero on padding: the first branch
    second: torch.Tensor  # [B, S] P2(span): the second branch, off the spans the first covers
    # (all zero when every span overlaps the first one's best: no second entity)
    entity: torch.Tensor  # [B, S, C] P(entity | span), zero on padding
    two: torch.Tensor  # [B, 1] P(the question has two topic entities)


class EntityResolver(nn.Module):
    def __init__(self, enc_dim: int, num_relations: int, hidden: int = 128):
        super().__init__()
        # Two logits per span: for the first branch and for the second.
        self.span_scorer = nn.Sequential(nn.Linear(2 * enc_dim + SPAN_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.match_scorer = nn.Linear(ENTITY_FEATURES, 1)
        # What the rest of the question asks about, against the relations an entity's facts use.
        self.asks = nn.Linear(enc_dim, num_relations)
        self.count_head = nn.Sequential(nn.Linear(enc_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, lb: LinkBatch, facts: EntityFacts) -> Resolution:
        logits = self.span_scorer(torch.cat([lb.span, lb.masked, lb.span_features], -1))
        # A large negative, not -inf: a question without spans must give zeros, not NaN.
        p_span = logits[..., 0].masked_fill(~lb.span_valid, -1e4).softmax(-1) * lb.span_valid
        # The second branch may take no span that overlaps the first one's best; a soft penalty
        # instead lets the intersection loss of one-entity questions pull it back onto the first
        # entity (intersecting an entity with itself answers those questions too).
        best = p_span.detach().argmax(-1, keepdim=True)
        free = lb.span_valid & (lb.overlap.gather(1, best.unsqueeze(-1).expand(-1, 1, lb.overlap.shape[2])).squeeze(1) == 0)
        p_second = logits[..., 1].masked_fill(~free, -1e4).softmax(-1) * free
        profile = facts.profile.to(lb.masked.dtype)[lb.entity]  # [B, S, C, R]
        neighbourhood = (profile * self.asks(lb.masked).unsqueeze(2)).sum(-1)
        ent_logits = self.match_scorer(lb.entity_features).squeeze(-1) + neighbourhood
        p_ent = ent_logits.masked_fill(~lb.entity_valid, -1e4).softmax(-1) * lb.entity_valid
        return Resolution(p_span, p_second, p_ent, torch.sigmoid(self.count_head(lb.question)))


def seed(lb: LinkBatch, weights: torch.Tensor, num_entities: int) -> torch.Tensor:
    """[B, E] with each candidate entity's weight ([B, S, C]) added at its id."""
    B = weights.shape[0]
    rows = torch.arange(B).view(B, 1, 1).expand_as(lb.entity)
    ok = lb.entity_valid
    return torch.zeros(B, num_entities, dtype=weights.dtype).index_put(
        (rows[ok], lb.entity[ok]), weights[ok], accumulate=True)


def predicted_topics(lb: LinkBatch, res: Resolution, intersection: bool) -> List[List[int]]:
    """The entities the model links, in branch order: the best entity of the best span, and of the
    best second span when P(two entities) > 0.5."""
    out = []
    first, second = res.span.argmax(1).tolist(), res.second.argmax(1).tolist()
    best_ent = res.entity.argmax(2)
    for b, x in enumerate(lb.inputs):
        if not x.mentions:
            out.append([])
            continue
        spans = [first[b]]
        if intersection and res.two[b, 0] > 0.5 and res.second[b].sum() > 0:
            spans.append(second[b])
        out.append([int(lb.entity[b, j, best_ent[b, j]]) for j in spans])
    return out


def linking_inputs(texts: List[str], index: AliasIndex, encoder, cache: dict) -> List[LinkInput]:
    """LinkInputs for plain questions, computed once per text (``cache``: text -> LinkInput)."""
    todo = sorted({t for t in texts if t not in cache})
    if todo:
        if not hasattr(encoder, "token_spans"):
            raise ValueError("learned entity resolution needs a transformers encoder (token states); "
                             f"{type(encoder).__name__} has none")
        mentions = [find_mentions(t, index) for t in todo]
        masked_texts = sorted({mask_span(t, m) for t, ms in zip(todo, mentions) for m in ms})
        masked_vecs = dict(zip(masked_texts, encoder(masked_texts))) if masked_texts else {}
        pooled, spans = encoder.token_spans(todo, [[(m.start, m.end) for m in ms] for ms in mentions])
        for t, ms, q, sp in zip(todo, mentions, pooled, spans):
            masked = torch.stack([masked_vecs[mask_span(t, m)] for m in ms]) if ms else torch.zeros(0, q.numel())
            cache[t] = LinkInput(t, ms, q, sp, masked)
    return [cache[t] for t in texts]
