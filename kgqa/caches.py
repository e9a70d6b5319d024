"""What a QA computes once and keeps: the question vectors of a frozen encoder, and for learned
entity resolution each plain question's mentions and encodings with the KB indexes they are
found and scored with (built on first use). Everything kept lives on the QA's device."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from .aliases import AliasIndex
from .entity_facts import EntityFacts
from .kb import KnowledgeBase
from .link_batch import LinkInput, linking_inputs


class EncodingCache:
    """Question vectors of a frozen encoder, one per distinct text."""

    def __init__(self, encoder, device):
        self.encoder, self.device = encoder, torch.device(device)
        self.vectors: Dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.vectors)

    def encode(self, texts: List[str]) -> torch.Tensor:
        """[len(texts), D]: the texts not seen before go through the encoder in one call."""
        todo = sorted({t for t in texts if t not in self.vectors})
        if todo:  # cached on the device: a batch is then one stack there
            for t, v in zip(todo, self.encoder(todo).to(self.device)):
                self.vectors[t] = v
        return torch.stack([self.vectors[t] for t in texts])


class LinkCache:
    """Learned entity resolution's inputs per plain question (``LinkInput``), computed once per
    text, and the alias index and entity facts of the KB, built with the first inputs."""

    def __init__(self, kb: KnowledgeBase, encoder, device):
        self.kb, self.encoder, self.device = kb, encoder, torch.device(device)
        self.inputs_by_text: Dict[str, LinkInput] = {}
        self.aliases: Optional[AliasIndex] = None
        self._facts: Optional[EntityFacts] = None
        # --retrieval policy: the candidate policy (kgqa.retrieval_policy) that finds the mentions;
        # None: the alias index's (kgqa.mentions.find_mentions). Set by the QA.
        self.policy = None

    def __len__(self) -> int:
        return len(self.inputs_by_text)

    def _build_indexes(self) -> None:
        if self.aliases is None:
            self.aliases = self.kb.aliases  # the KB's own, shared with forgiving [bracketed] names
            self._facts = EntityFacts(self.kb, self.device)

    @property
    def facts(self) -> EntityFacts:
        """The KB's entity facts on the device (``collate`` and the resolver read them)."""
        self._build_indexes()
        return self._facts

    def inputs(self, plain_texts: List[str]) -> List[LinkInput]:
        self._build_indexes()
        find = self.policy.find_mentions if self.policy is not None else None
        return linking_inputs(plain_texts, self.aliases, self.encoder, self.inputs_by_text, self.device, find)

    def forget(self) -> None:
        """Drops the inputs computed so far (the policy that found their mentions has changed)."""
        self.inputs_by_text.clear()
