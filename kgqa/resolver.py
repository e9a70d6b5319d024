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

This module holds the scorers (the nn.Module); the rest of the resolver lives by job in
``mentions`` (candidate spans), ``features`` (their hand-made features), ``entity_facts`` (the
per-entity relations index), ``link_batch`` (the inputs, per question and batched) and
``decoding`` (from the distributions to seeds and linked entities). The names they define are
re-exported here, where they used to live.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .decoding import predicted_topics, seed
from .entity_facts import EntityFacts
from .features import ENTITY_FEATURES, ENTITY_FEATURES_BEFORE_NAME_KINDS, SPAN_FEATURES
from .link_batch import LinkBatch, LinkInput, collate, linking_inputs
from .mentions import Mention, find_mentions, mask_span, overlaps
from .relation_map import take_rows

__all__ = ["Resolution", "EntityResolver", "relation_match",
           # re-exported from their modules:
           "EntityFacts", "ENTITY_FEATURES", "SPAN_FEATURES", "LinkBatch", "LinkInput", "collate", "linking_inputs",
           "Mention", "find_mentions", "mask_span", "overlaps", "predicted_topics", "seed"]

# Where a distribution has no mass (padding; spans the second branch may not take): a large
# negative logit, not -inf, so that a question without spans gives zeros after the softmax and the
# mask, not NaN.
MASKED_LOGIT = -1e4


@dataclass
class Resolution:
    span: torch.Tensor  # [B, S] P(span), zero on padding: the first branch
    second: torch.Tensor  # [B, S] P2(span): the second branch, off the spans the first covers
    # (all zero when every span overlaps the first one's best: no second entity)
    entity: torch.Tensor  # [B, S, C] P(entity | span), zero on padding
    two: torch.Tensor  # [B, 1] P(the question has two topic entities)


class EntityResolver(nn.Module):
    def __init__(self, enc_dim: int, num_relations: int, hidden: int = 128, entity_features: int = ENTITY_FEATURES):
        """``entity_features``: how many of a candidate's features (``kgqa.features``) the match
        scorer reads, the first ones: ENTITY_FEATURES_BEFORE_NAME_KINDS for a resolver trained before
        NAME_KINDS."""
        super().__init__()
        if entity_features not in (ENTITY_FEATURES_BEFORE_NAME_KINDS, ENTITY_FEATURES):
            raise ValueError(f"entity_features: expected {ENTITY_FEATURES_BEFORE_NAME_KINDS} or {ENTITY_FEATURES}, "
                             f"got {entity_features!r}")
        self.entity_features = entity_features
        # Two logits per span: for the first branch and for the second.
        self.span_scorer = nn.Sequential(nn.Linear(2 * enc_dim + SPAN_FEATURES, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        self.match_scorer = nn.Linear(entity_features, 1)
        # What the rest of the question asks about, against the relations an entity's facts use.
        self.asks = nn.Linear(enc_dim, num_relations)
        self.count_head = nn.Sequential(nn.Linear(enc_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    @torch.no_grad()
    def remap_relations(self, mapping: torch.Tensor) -> None:
        """``asks`` (its only per-relation parameter) re-indexed to a KB's relations (``RigelModel.
        remap_relations``): a relation it was not trained on adds nothing to an entity's score."""
        self.asks.weight = nn.Parameter(take_rows(self.asks.weight, mapping, 0, 0.0))
        self.asks.bias = nn.Parameter(take_rows(self.asks.bias, mapping, 0, 0.0))
        self.asks.out_features = len(mapping)

    def forward(self, lb: LinkBatch, facts: EntityFacts) -> Resolution:
        logits = self.span_scorer(torch.cat([lb.span, lb.masked, lb.span_features], -1))
        p_span = logits[..., 0].masked_fill(~lb.span_valid, MASKED_LOGIT).softmax(-1) * lb.span_valid
        # The second branch may take no span that overlaps the first one's best; a soft penalty
        # instead lets the intersection loss of one-entity questions pull it back onto the first
        # entity (intersecting an entity with itself answers those questions too).
        best = p_span.detach().argmax(-1, keepdim=True)
        free = lb.span_valid & (lb.overlap.gather(1, best.unsqueeze(-1).expand(-1, 1, lb.overlap.shape[2])).squeeze(1) == 0)
        p_second = logits[..., 1].masked_fill(~free, MASKED_LOGIT).softmax(-1) * free
        neighbourhood = relation_match(self.asks(lb.masked), lb)
        ent_logits = self.match_scorer(lb.entity_features[..., : self.entity_features]).squeeze(-1) + neighbourhood
        p_ent = ent_logits.masked_fill(~lb.entity_valid, MASKED_LOGIT).softmax(-1) * lb.entity_valid
        return Resolution(p_span, p_second, p_ent, torch.sigmoid(self.count_head(lb.question)))


def relation_match(asks: torch.Tensor, lb: LinkBatch) -> torch.Tensor:
    """[B, S, C]: for each candidate, the sum of ``asks`` [B, S, R] (what the rest of the question
    asks about) over the relations its facts use; zero for padding."""
    B, S, C = lb.entity.shape
    per_span = asks.reshape(B * S, -1)
    out = torch.zeros(B * S * C, dtype=asks.dtype, device=asks.device)
    return out.index_add(0, lb.fact_at, per_span[lb.fact_at // C, lb.fact_rel]).view(B, S, C)
