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
    span_start: torch.Tensor  # [B, S] float: each span's first character (0 on padding)
    # The relations each valid candidate's facts use, as pairs: flat index into [B, S, C], relation.
    fact_at: torch.Tensor  # [M] long
    fact_rel: torch.Tensor  # [M] long


class EntityFacts:
    """Per entity: which relations (inverses included) its facts use, and log(1 + its degree).
    The relations are kept sparse (CSR on the CPU, where ``collate`` reads them): a dense
    [entities, relations] table would not fit a Freebase-sized KB. The degrees live on ``device``."""

    def __init__(self, kb: KnowledgeBase, device="cpu"):
        s, p, o = kb.triples.cpu().unbind(1)
        nrel, R = len(kb.base_relations), kb.num_relations
        pairs = torch.unique(torch.cat([s * R + p, o * R + (p + nrel)]))  # sorted: by entity, then relation
        self.rel_ids = pairs % R
        self.rel_ptr = torch.zeros(kb.num_entities + 1, dtype=torch.long, device="cpu")
        torch.cumsum(torch.bincount(pairs // R, minlength=kb.num_entities), 0, out=self.rel_ptr[1:])
        degree = torch.bincount(torch.cat([s, o]), minlength=kb.num_entities).float()
        self.log_degree = torch.log1p(degree).to(device)

    @property
    def device(self) -> torch.device:
        return self.log_degree.device

    def relations_of(self, entities: torch.Tensor, valid: torch.Tensor):
        """(at, rel) on the CPU: for each valid candidate i of ``entities`` [N] and each relation r
        its facts use, one entry at = i, rel = r."""
        counts = (self.rel_ptr[entities + 1] - self.rel_ptr[entities]) * valid
        at = torch.repeat_interleave(torch.arange(len(entities), device="cpu"), counts)
        first = torch.cumsum(counts, 0) - counts  # where each candidate's entries start
        within = torch.arange(len(at), device="cpu") - first[at]
        return at, self.rel_ids[self.rel_ptr[entities[at]] + within]


def collate(inputs: List[LinkInput], facts: EntityFacts) -> LinkBatch:
    """The batch on the facts' device. The features come from the mentions' Python fields, so
    they are built on the CPU and sent in one copy each, not one small copy per mention; the
    encodings are on the device already (``linking_inputs``)."""
    device = facts.device
    B = len(inputs)
    D = inputs[0].question.numel()
    S = max(1, max(len(x.mentions) for x in inputs))
    C = max([1] + [len(m.entities) for x in inputs for m in x.mentions])
    span = torch.zeros(B, S, D, device=device)
    masked = torch.zeros(B, S, D, device=device)
    cpu = torch.device("cpu")
    span_f = torch.zeros(B, S, SPAN_FEATURES, device=cpu)
    span_ok = torch.zeros(B, S, dtype=torch.bool, device=cpu)
    span_start = torch.zeros(B, S, device=cpu)
    overlap = torch.zeros(B, S, S, device=cpu)
    ent = torch.zeros(B, S, C, dtype=torch.long, device=cpu)
    ent_f = torch.zeros(B, S, C, ENTITY_FEATURES, device=cpu)
    ent_ok = torch.zeros(B, S, C, dtype=torch.bool, device=cpu)
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
                float(kinds == {"fuzzy"}), math.log1p(len(m.entities)) / math.log(10), m.start / max(1, len(x.plain))],
                device=cpu)
            span_start[b, j] = float(m.start)
            c = len(m.entities)
            ent[b, j, :c] = torch.tensor(m.entities, device=cpu)
            ent_ok[b, j, :c] = True
            ent_f[b, j, :c, :3] = torch.tensor([[float(h == k) for k in _HOW] for h in m.how], device=cpu)
            ent_f[b, j, :c, 3] = torch.tensor(m.similarity, device=cpu)
    fact_at, fact_rel = facts.relations_of(ent.view(-1), ent_ok.view(-1))
    span_f, span_ok, span_start, overlap, ent, ent_f, ent_ok, fact_at, fact_rel = (
        t.to(device, non_blocking=True)
        for t in (span_f, span_ok, span_start, overlap, ent, ent_f, ent_ok, fact_at, fact_rel))
    ent_f[..., 4] = facts.log_degree[ent] / 10 * ent_ok  # the degree's table lives on the device
    question = torch.stack([x.question for x in inputs]).to(device)
    return LinkBatch(inputs, question, span, masked, span_f, span_ok, overlap, ent, ent_f, ent_ok, span_start, fact_at,
                     fact_rel)


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
        neighbourhood = relation_match(self.asks(lb.masked), lb)
        ent_logits = self.match_scorer(lb.entity_features).squeeze(-1) + neighbourhood
        p_ent = ent_logits.masked_fill(~lb.entity_valid, -1e4).softmax(-1) * lb.entity_valid
        return Resolution(p_span, p_second, p_ent, torch.sigmoid(self.count_head(lb.question)))


def relation_match(asks: torch.Tensor, lb: LinkBatch) -> torch.Tensor:
    """[B, S, C]: for each candidate, the sum of ``asks`` [B, S, R] (what the rest of the question
    asks about) over the relations its facts use; zero for padding."""
    B, S, C = lb.entity.shape
    per_span = asks.reshape(B * S, -1)
    out = torch.zeros(B * S * C, dtype=asks.dtype, device=asks.device)
    return out.index_add(0, lb.fact_at, per_span[lb.fact_at // C, lb.fact_rel]).view(B, S, C)


def seed(lb: LinkBatch, weights: torch.Tensor, num_entities: int) -> torch.Tensor:
    """[B, E] with each candidate entity's weight ([B, S, C]) added at its id. Padding adds a zero
    weight at entity 0 (its id), which selecting the valid entries first would avoid at the cost of
    a copy to the host (a boolean index's size) on every call."""
    B = weights.shape[0]
    w = (weights * lb.entity_valid).reshape(B, -1)
    x = torch.zeros(B, num_entities, dtype=weights.dtype, device=weights.device)
    return x.scatter_add(1, lb.entity.reshape(B, -1), w)


def predicted_topics(lb: LinkBatch, res: Resolution, intersection: bool) -> torch.Tensor:
    """[B, 2] the entities the model links, in branch order, -1 where none: the best entity of the
    best span (none without spans), and of the best second span when P(two entities) > 0.5.
    Computed on the device (``Output.topics`` has them as lists)."""
    best = lb.entity.gather(2, res.entity.argmax(2, keepdim=True)).squeeze(2)  # [B, S] each span's best entity
    linked = torch.stack([best.gather(1, p.argmax(1, keepdim=True)).squeeze(1) for p in (res.span, res.second)], 1)
    first = lb.span_valid.any(1)
    second = first & (res.two[:, 0] > 0.5) & (res.second.sum(1) > 0) if intersection else torch.zeros_like(first)
    return linked.masked_fill(~torch.stack([first, second], 1), -1)


def linking_inputs(texts: List[str], index: AliasIndex, encoder, cache: dict, device="cpu") -> List[LinkInput]:
    """LinkInputs for plain questions, computed once per text (``cache``: text -> LinkInput), with
    their encodings on ``device`` (where ``collate`` builds the batches)."""
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
            if ms:
                masked = torch.stack([masked_vecs[mask_span(t, m)] for m in ms])
            else:
                masked = torch.zeros(0, q.numel(), device=q.device)
            cache[t] = LinkInput(t, ms, q.to(device), sp.to(device), masked.to(device))
    return [cache[t] for t in texts]
