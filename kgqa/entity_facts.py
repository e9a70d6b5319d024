"""The entity-facts index of learned entity resolution: per entity, which relations (inverses
included) its facts use, and log(1 + its degree)."""
from __future__ import annotations

import torch

from .kb import KnowledgeBase


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
