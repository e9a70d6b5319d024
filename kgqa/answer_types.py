"""Answer types: which entities a question's relation path can end at. A KB tells types apart by
its relations' ranges (a year is the object of ``release_year``, never of ``starred_actors``), so
the entities consistent with a question are those the relations of its last hop can reach. The
model's hops already follow only facts; what this adds is a check against the relations the model
*chose*: an entity that the softmax's small share on other relations reaches (many paths can
make that share a high score, since a hop sums over paths) is of a type the question does not ask
for. ``kgqa.calibration`` decides whether and how strictly the check applies."""
from __future__ import annotations

import torch

import kgqa_kernels as kk


def type_weights(relations: torch.Tensor, hop_attention: torch.Tensor, kb: kk.SparseKB) -> torch.Tensor:
    """[B, E] in [0, 1]: per question, summed over hops t with the hop attention, the probability of
    the most probable relation of hop t (first branch) that has a fact ending at the entity.
    ``relations`` [B, hops, branches, R] and ``hop_attention`` [B, hops], as in ``model.Output``.
    One follow over every fact per hop (``reduce="max"`` from every entity): the range of each
    relation, weighted, without a per-relation table. The first branch suffices: with two topic
    entities the answer is an intersection, which lies in the range of either branch's relations."""
    B, hops = hop_attention.shape
    ones = torch.ones(B, kb.num_entities, dtype=relations.dtype, device=relations.device)
    total = torch.zeros_like(ones)
    for t in range(hops):
        reach = kk.follow(ones, relations[:, t, 0].contiguous(), kb, reduce="max")
        total = total + hop_attention[:, t : t + 1] * reach
    return total


def type_consistent(weights: torch.Tensor, ratio: float) -> torch.Tensor:
    """[B, E] bool: the entities whose type weight is at least ``ratio`` times the question's best,
    i.e. reached by one of the relations the model chose (0: every entity)."""
    return weights >= ratio * weights.amax(dim=1, keepdim=True)
