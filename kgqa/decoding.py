"""From the entity resolver's distributions (``resolver.Resolution``) to entities: the soft seed of
the hops, the entities the model links (on the device), and each branch's best span and entity as
``kgqa ask`` shows them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List

import torch

from .link_batch import LinkBatch
from .mentions import Mention

if TYPE_CHECKING:
    from .resolver import Resolution

TWO_ENTITIES = 0.5  # P(two entities) above which a question is read as having two topic entities


def seed(lb: LinkBatch, weights: torch.Tensor, num_entities: int) -> torch.Tensor:
    """[B, E] with each candidate entity's weight ([B, S, C]) added at its id. Padding adds a zero
    weight at entity 0 (its id), which selecting the valid entries first would avoid at the cost of
    a copy to the host (a boolean index's size) on every call."""
    B = weights.shape[0]
    w = (weights * lb.entity_valid).reshape(B, -1)
    x = torch.zeros(B, num_entities, dtype=weights.dtype, device=weights.device)
    return x.scatter_add(1, lb.entity.reshape(B, -1), w)


def predicted_topics(lb: LinkBatch, res: "Resolution", intersection: bool) -> torch.Tensor:
    """[B, 2] the entities the model links, in branch order, -1 where none: the best entity of the
    best span (none without spans), and of the best second span when P(two entities) > 0.5.
    Computed on the device (``Output.topics`` has them as lists)."""
    best = lb.entity.gather(2, res.entity.argmax(2, keepdim=True)).squeeze(2)  # [B, S] each span's best entity
    linked = torch.stack([best.gather(1, p.argmax(1, keepdim=True)).squeeze(1) for p in (res.span, res.second)], 1)
    first = lb.span_valid.any(1)
    if intersection:
        second = first & (res.two[:, 0] > TWO_ENTITIES) & (res.second.sum(1) > 0)
    else:
        second = torch.zeros_like(first)
    return linked.masked_fill(~torch.stack([first, second], 1), -1)


@dataclass
class BranchLink:
    """A branch's best span and that span's best entity, with their probabilities."""

    mention: Mention
    entity: int
    span_p: float  # P(span) (the second branch: P2(span))
    entity_p: float  # P(entity | span)


def linked_mentions(res: "Resolution", mentions: List[List[Mention]], linked: torch.Tensor) -> List[List[Mention]]:
    """Per question, the spans behind ``predicted_topics``' entities (``linked``, [B, 2]), in branch
    order: each linked branch's best span. ``mentions``: each question's (``LinkInput.mentions``)."""
    best = torch.stack([res.span.argmax(1), res.second.argmax(1)], 1).tolist()
    return [[m[j] for j, e in zip(spans, row) if e >= 0] for m, spans, row in zip(mentions, best, linked.tolist())]


def branch_links(res: "Resolution", mentions: List[Mention], b: int, branches: int = 2) -> List[BranchLink]:
    """Question ``b``'s best span and entity for each of its first ``branches`` branches whose span
    distribution is not empty (none without spans; the second only where P2 has a span).
    ``mentions``: question b's (``LinkInput.mentions``)."""
    out = []
    for p in (res.span[b], res.second[b])[:branches]:
        if p.sum() > 0:
            j = int(p.argmax())
            c = int(res.entity[b, j].argmax())
            out.append(BranchLink(mentions[j], mentions[j].entities[c], float(p[j]), float(res.entity[b, j, c])))
    return out
