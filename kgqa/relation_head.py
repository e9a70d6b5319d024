"""The relation heads of ``RigelModel`` (``kgqa.model``): from the question vector q [B, D] (the
encoder's) and its hidden state h [B, H] to relation logits per hop and branch [B, hops, branches, R].

- ``"ids"`` (``IdHead``): a classifier over relation ids, ``nn.Linear(H, hops * branches * R)`` on
  h. It learns each relation from the questions that use it, and nothing about one that none uses.
- ``"names"`` (``RelationNameHead``): reads the relations' names. With n_r the encoding of relation
  r's name (its words, ``kgqa.relation_names``) by the question encoder,

      logit[t, j, r] = s_tj * cos(A_tj q, n_r) + [r is an inverse] * (w_tj . h + c_tj) + b_tjr

  A_tj (per hop t and branch j: what the hop asks of the question) is a D x D map that starts as
  the identity, so before any training each hop prefers the relations whose names the encoder
  finds like the question; s_tj scales the cosine. The names get no learned map of their own: one,
  shared by all relations, learns from the training questions to move the names that no question
  uses away from every question (tried while building this head: a relation that no training
  question used, "lives in", then lost to a trained "works in" on questions that said "lives in"). The
  second term is the direction: the question's hidden state says whether hop t follows relations
  forward or inverted, for every relation alike, so it carries over to relations no training
  question used. b_tjr (zero at first) lets a relation learn a preference of its own from the
  questions that use it. A relation that no training question used is scored by its name like
  any other, and is chosen when its name matches what the hop asks.

The name encodings are an input of the head, not a parameter: the QA computes them from the KB's
relation names (once, for a frozen encoder; every step, with gradients, for an encoder that
trains) and hands them over with ``read`` before a forward. A checkpoint holds A, s, w, c and b;
the encodings are computed again from the KB's relation names when it loads."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .config import IDS, NAMES, RELATION_HEADS  # the kinds: kgqa.config owns them (the command line reads them)

# The names head's similarity is a cosine, in [-1, 1]: scaled by 10 at first, the relation whose
# name is most like the question leads the others by a few logits.
INITIAL_SCALE = 10.0


class IdHead(nn.Linear):
    """The ids head: ``nn.Linear(H, hops * branches * R)`` over the hidden state (its tensors are
    named as they always were, ``weight`` and ``bias``)."""

    def forward(self, h: torch.Tensor, q: Optional[torch.Tensor] = None) -> torch.Tensor:
        return super().forward(h)


class RelationNameHead(nn.Module):
    """``bias`` [hops, branches, R] (b above) is the head's one tensor with a row per relation, in
    the KB's relation order (the last axis); zero is a relation scored by its name alone."""

    def __init__(self, hidden: int, enc_dim: int, hops: int, branches: int, num_relations: int):
        super().__init__()
        self.hops, self.branches, self.num_relations = hops, branches, num_relations
        self.direction = nn.Linear(hidden, hops * branches)
        # A_tj, one D x D block each, identities at first: every hop starts from the encoder's own
        # similarity of question and name.
        self.ask = nn.Linear(enc_dim, hops * branches * enc_dim, bias=False)
        with torch.no_grad():
            self.ask.weight.zero_()
            self.ask.weight.view(hops * branches, enc_dim, enc_dim).diagonal(dim1=1, dim2=2).fill_(1.0)
        # Beside the head's other tensors: on the CPU, or on the meta device while a checkpoint is checked.
        device = self.direction.weight.device
        self.scale = nn.Parameter(torch.full((hops, branches), INITIAL_SCALE, device=device))
        self.bias = nn.Parameter(torch.zeros(hops, branches, num_relations, device=device))
        self.names: Optional[torch.Tensor] = None  # [R, enc_dim], set by read()
        self.inverse: Optional[torch.Tensor] = None  # [R] 1.0 on inverse relations

    def read(self, names: torch.Tensor, inverse: torch.Tensor) -> None:
        """The relations' name encodings [R, enc_dim] and which relations are inverses [R] (bool),
        in relation-id order: what the next forwards score against."""
        if names.dim() != 2 or names.shape[0] != self.num_relations:
            raise ValueError(f"RelationNameHead.read(): names must be [{self.num_relations}, enc_dim] (a row per "
                             f"relation), got {tuple(names.shape)}")
        if inverse.shape != (self.num_relations,):
            raise ValueError(f"RelationNameHead.read(): inverse must be [{self.num_relations}], got {tuple(inverse.shape)}")
        self.names, self.inverse = names, inverse.to(names.dtype)

    def forward(self, h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if self.names is None:
            raise RuntimeError("RelationNameHead: no relation names read; QA.forward reads them (or call "
                               "model.relation_head.read(names, inverse) before the model)")
        B = q.shape[0]
        asked = self.ask(q).view(B, self.hops, self.branches, -1)
        similarity = F.normalize(asked, dim=-1) @ F.normalize(self.names, dim=-1).t()  # [B, hops, branches, R]
        direction = self.direction(h).view(B, self.hops, self.branches, 1) * self.inverse
        return self.scale.unsqueeze(-1) * similarity + direction + self.bias


def check_kind(kind, where: str) -> str:
    """``kind`` if it is one of ``RELATION_HEADS``, else a ValueError naming ``where``'s relation_head."""
    if kind not in RELATION_HEADS:
        raise ValueError(f"{where}: relation_head must be one of {', '.join(map(repr, RELATION_HEADS))}, got {kind!r}")
    return kind


def relation_head(kind: str, hidden: int, enc_dim: int, hops: int, branches: int, num_relations: int) -> nn.Module:
    """The head of ``kind`` (``RELATION_HEADS``): ``head(h, q)`` gives logits that view as
    [B, hops, branches, R] from the hidden state h [B, H] and the question vector q [B, enc_dim]."""
    if check_kind(kind, "RigelModel") == IDS:
        return IdHead(hidden, hops * branches * num_relations)
    return RelationNameHead(hidden, enc_dim, hops, branches, num_relations)
