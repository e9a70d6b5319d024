"""The entity resolver's inputs: per question (``LinkInput``: its mentions and their encodings,
computed once per text by ``linking_inputs``) and per batch (``LinkBatch``, made by ``collate``:
the mentions' features and candidate entities as padded tensors on the device)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import torch

from .aliases import AliasIndex
from .entity_facts import EntityFacts
from .features import DEGREE_FEATURE, ENTITY_FEATURES, SPAN_FEATURES, degree_feature, match_features, span_features
from .mentions import Mention, find_mentions, mask_span, overlaps


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


def linking_inputs(texts: List[str], index: AliasIndex, encoder, cache: dict, device="cpu",
                   find: Optional[Callable[[List[str]], List[List[Mention]]]] = None) -> List[LinkInput]:
    """LinkInputs for plain questions, computed once per text (``cache``: text -> LinkInput), with
    their encodings on ``device`` (where ``collate`` builds the batches). ``find``: the questions'
    mentions, all at once (``CandidatePolicy.find_mentions``); default: ``find_mentions`` over
    ``index`` one question at a time."""
    todo = sorted({t for t in texts if t not in cache})
    if todo:
        if not hasattr(encoder, "token_spans"):
            raise ValueError("learned entity resolution needs a transformers encoder (token states); "
                             f"{type(encoder).__name__} has none")
        mentions = find(todo) if find is not None else [find_mentions(t, index) for t in todo]
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
            span_f[b, j] = torch.tensor(span_features(m, x.plain), device=cpu)
            span_start[b, j] = float(m.start)
            c = len(m.entities)
            ent[b, j, :c] = torch.tensor(m.entities, device=cpu)
            ent_ok[b, j, :c] = True
            ent_f[b, j, :c] = torch.tensor(match_features(m), device=cpu)
    fact_at, fact_rel = facts.relations_of(ent.view(-1), ent_ok.view(-1))
    span_f, span_ok, span_start, overlap, ent, ent_f, ent_ok, fact_at, fact_rel = (
        t.to(device, non_blocking=True)
        for t in (span_f, span_ok, span_start, overlap, ent, ent_f, ent_ok, fact_at, fact_rel))
    # The degrees' table lives on the device: this feature is filled in there.
    ent_f[..., DEGREE_FEATURE] = degree_feature(facts.log_degree[ent]) * ent_ok
    question = torch.stack([x.question for x in inputs]).to(device)
    return LinkBatch(inputs, question, span, masked, span_f, span_ok, overlap, ent, ent_f, ent_ok, span_start, fact_at,
                     fact_rel)
