"""Operations on the path's entity set (issue 20): the model picks, per question, one of
``OPERATIONS`` from the question vector (like the hop attention), learned from answers alone.

- path: the path's scores as they are (intersection included);
- count: the soft count of the path's set (``kgqa_kernels.count``), and from it a distribution
  over the numbers 0..max_count: a discretised Gaussian of width COUNT_WIDTH around the count;
  the model's answer is its most probable number;
- argmax / argmin: the members of the set with the largest / smallest value of a numeric
  attribute (a film's release year), ``kgqa_kernels.select_extreme``, mixed over the attributes
  by a distribution the question gives (``kgqa.numbers.numeric_relations`` are the candidates;
  each one's values, ``kgqa_kernels.entity_values``, are computed once per KB: ``Attributes``).

The path's set is the hops again with each hop's weights capped at 1 (``kgqa.model.saturate``),
not scaled by the row's largest as the path's scores are: an entity that one path reaches counts as
much as one that three reach. Both count and the superlatives read it through ``members``: weights under
GATE * the row's largest are dropped. A soft relation distribution leaks small weights onto
many entities; without the gate they add up in a count, and a leaked film with a later year
would set the best value of the set and take the argmax from the true answer. Measured on
MetaQA (docs/results.md "Operations"; experiments/operations-metaqa.sh): the same model scored
without the gate at inference answered 2,783 held-out questions with argmax Hits@1 0.964 and
argmin 0.944, against 1.000 and 0.998 with it (counts the same, 0.982).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

import kgqa_kernels as kk

PATH, COUNT, ARGMAX, ARGMIN = "path", "count", "argmax", "argmin"
OPERATIONS = (PATH, COUNT, ARGMAX, ARGMIN)
GATE = 0.5  # members: the entities weighing at least this share of the row's largest (see the docstring)
COUNT_WIDTH = 0.5  # the count distribution's standard deviation: P(round(c)) >= 0.79 when c is a whole number
DEFAULT_MAX_COUNT = 20  # the largest count answered, unless training has larger count answers
MAX_COUNT_ANSWER = 10_000  # the bound of a checkpoint's max_count (a [B, max_count + 1] distribution)
EPS = 1e-9
MASKED = -1e4  # the logit of an operation the model cannot do (no numeric attribute): P = 0 in float32


@dataclass
class Attributes:
    """The numeric attributes of a KB the model reads: relation ids (the model's numbering) and
    each one's value per entity, [A, E] (NaN: none), computed once per KB."""

    relations: List[int]
    values: torch.Tensor  # [A, E]

    @classmethod
    def of(cls, kb, names: List[str], sparse: kk.SparseKB) -> "Attributes":
        """The attributes named ``names`` (relation names, as a checkpoint stores them) over
        ``kb`` (a kgqa KnowledgeBase) whose facts ``sparse`` holds on the device the values go to:
        ValueError naming a relation the KB lacks."""
        from .numbers import numeric_values

        missing = [n for n in names if n not in kb.relation_ids]
        if missing:
            raise ValueError(f"the model's numeric attribute {missing[0]!r} is not a relation of the KB")
        ids = [kb.relation_ids[n] for n in names]
        device = sparse.device
        if not ids:
            return cls([], torch.zeros(0, kb.num_entities, device=device))
        numbers = torch.tensor(numeric_values(kb), dtype=torch.float32, device=device)
        r = torch.zeros(len(ids), kb.num_relations, device=device)
        r[torch.arange(len(ids)), torch.tensor(ids)] = 1.0
        return cls(ids, kk.entity_values(numbers, r, sparse))


@dataclass
class OpOutput:
    """What the operations computed for a batch (``Output.ops``)."""

    p: torch.Tensor  # [B, 4] P(operation), in OPERATIONS' order
    count: torch.Tensor  # [B] the soft count of the path's set (the hops' counts, mixed by the hop attention)
    count_dist: torch.Tensor  # [B, max_count + 1] P(n)
    extreme: torch.Tensor  # [B, 2, E] the argmax and argmin scores (mixed over attributes)
    attribute: torch.Tensor  # [B, A] P(attribute)
    hop_counts: Optional[torch.Tensor] = None  # [B, hops] each hop's soft count, which ``count`` mixes

    @property
    def chosen(self) -> torch.Tensor:
        """[B] the index in OPERATIONS of each question's most probable operation."""
        return self.p.argmax(1)

    @property
    def number(self) -> torch.Tensor:
        """[B] the count answer: the most probable number."""
        return self.count_dist.argmax(1)


def chosen_scores(ops: OpOutput, scores: torch.Tensor) -> torch.Tensor:
    """[B, E]: the entity scores of each question's chosen operation: the superlative's where it
    chose argmax or argmin, the path's otherwise (a count's answer is ``OpOutput.number``)."""
    chosen = ops.chosen.view(-1, 1)
    return torch.where(chosen == OPERATIONS.index(ARGMAX), ops.extreme[:, 0],
                       torch.where(chosen == OPERATIONS.index(ARGMIN), ops.extreme[:, 1], scores))


def members(x: torch.Tensor) -> torch.Tensor:
    """The path's set: ``x`` [..., E] (>= 0) with weights under GATE * the row's largest set to 0
    (the gate carries no gradient; what it keeps does)."""
    top = x.detach().amax(-1, keepdim=True)
    return x * (x.detach() >= GATE * top).to(x.dtype)


def count_distribution(c: torch.Tensor, max_count: int) -> torch.Tensor:
    """[B, max_count + 1]: P(n) proportional to exp(-(n - c)^2 / (2 COUNT_WIDTH^2))."""
    n = torch.arange(max_count + 1, device=c.device, dtype=c.dtype)
    return (-(n - c.unsqueeze(1)) ** 2 / (2 * COUNT_WIDTH ** 2)).softmax(1)


class OperationHead(nn.Module):
    """P(operation | question) and P(attribute | question) from the model's hidden question
    vector."""

    def __init__(self, hidden: int, num_attributes: int, max_count: int):
        super().__init__()
        self.op = nn.Linear(hidden, len(OPERATIONS))
        self.attribute = nn.Linear(hidden, max(1, num_attributes))
        self.num_attributes, self.max_count = num_attributes, max_count
        # An experiment's switch, not a checkpoint's (experiments/count_hops_diag.py --whole-members):
        # out of training, count each hop's members (the entities over the gate) as whole entities
        # rather than by their weights. Off: what every model was trained and measured with.
        self.whole_members = False

    def forward(self, h: torch.Tensor, sets: torch.Tensor, attention: torch.Tensor, attributes: Optional[Attributes],
                exclude: Optional[torch.Tensor] = None) -> OpOutput:
        """``h`` [B, hidden]; ``sets`` [B, T, E] the path's set after each hop (``kgqa.model.
        saturate``'s hops, in [0, 1]); ``attention`` [B, T] the hop attention; ``exclude`` [B, E]
        bool: entities that are never members (the topic entities).

        Each operation is taken on each hop's set, its members scaled so that the largest weighs
        1, and mixed by the hop attention: P(n) is the attention's mixture of the hops' count
        distributions. Counted on the attention-weighted sum of the hops instead, a count scales
        with the attention (five films at attention 0.8 count 4), which a model of one hop never
        has: MetaQA counts over one or two hops, --hops 2, 61.2% Hits@1 (docs/results.md "Operations")."""
        logits = self.op(h)
        have = attributes is not None and len(attributes.relations) > 0
        if not have:  # no attribute to take an extreme of: argmax and argmin are impossible
            off = torch.tensor([0.0, 0.0, MASKED, MASKED], device=h.device, dtype=logits.dtype)
            logits = logits + off
        p = logits.softmax(1)
        B, T, E = sets.shape
        x = sets.clamp(min=0) if exclude is None else sets.clamp(min=0).masked_fill(exclude.unsqueeze(1), 0.0)
        m = members(x)
        m = (m / m.detach().amax(-1, keepdim=True).clamp(min=EPS)).reshape(B * T, E)  # the largest member: 1
        att = attention.unsqueeze(2)  # [B, T, 1]
        c = (m > 0).sum(-1).to(m.dtype) if self.whole_members and not self.training else kk.count(m)
        c = c.view(B, T)
        dist = (att * count_distribution(c.reshape(-1), self.max_count).view(B, T, -1)).sum(1)
        if have:
            pa = self.attribute(h)[:, : len(attributes.relations)].softmax(1)
            ext = []
            for mode in ("max", "min"):
                y = sum(pa[:, a : a + 1, None] * kk.select_extreme(m, attributes.values[a], mode=mode).view(B, T, E)
                        for a in range(len(attributes.relations)))
                ext.append((att * y).sum(1))
            extreme = torch.stack(ext, 1)
        else:
            pa = h.new_zeros(B, 0)
            extreme = x.new_zeros(B, 2, E)
        return OpOutput(p, (attention * c).sum(1), dist, extreme, pa, c)


def answer_probabilities(ops: OpOutput, scores: torch.Tensor, answers: torch.Tensor, counts: torch.Tensor,
                         exclude: Optional[torch.Tensor] = None) -> torch.Tensor:
    """[B, 4]: P(the answer | operation) per operation: for path, argmax and argmin how well the
    operation's entity weights y give the answer set, the share of y's mass on it times its
    coverage (the answers' mean weight, y scaled to a largest weight of 1); for count P(n) at the
    answer numeral (``counts`` [B], -1 where the answer is no numeral or past max_count).
    ``answers`` [B, E] mask. Without the coverage a superlative explains a path question as well
    as the path does (its one member is an answer: share 1), and on a toy KB (tests/kgqa/
    test_operations.py) the model took argmin for "what films did [X] direct" (answer-set F1 0.93
    instead of 1)."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, 0.0)
    s = scores.clamp(min=0)

    def share(y):
        on = (y * answers).sum(1)
        coverage = on / (y.amax(1) * answers.sum(1)).clamp(min=EPS)
        return on / (y.sum(1) + EPS) * coverage.clamp(max=1)

    K = ops.count_dist.shape[1]
    ok = (counts >= 0) & (counts < K)
    at = ops.count_dist.gather(1, counts.clamp(0, K - 1).unsqueeze(1)).squeeze(1)
    p_count = torch.where(ok, at, torch.zeros_like(at))
    return torch.stack([share(s), p_count, share(ops.extreme[:, 0]), share(ops.extreme[:, 1])], 1)
