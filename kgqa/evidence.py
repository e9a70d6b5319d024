"""Evidence: the KB paths that carry an answer's score, with their shares of it.

A chain's entity weights after hop t are ``hop_update(follow(x, r))`` of its weights x before the
hop and the hop's relation distribution r (``kgqa.model.follow_hops``): the weight of entity e
is proportional to the sum, over the facts (s, p, e) into e, of ``x[s] * r[p]`` (times the fact's
weight), since masking and rescaling multiply e's sum by a factor of e alone. So whatever amount
of score sits at e after hop t splits exactly among the facts into e in proportion to their terms,
and each share goes on to s before the hop; t steps back, the amounts sit on the chain's seed
(the topic entities). Summed over every path and every number of hops, the shares are the answer's
score (before the excluded entities are masked), up to float rounding: this is a decomposition,
not an approximation. An intersection's output at the answer is reached from each branch: the
paths from each topic entity carry the whole of it (the scores of the branches meet by their
minimum).

Only a few paths are kept: the walk back holds the ``BEAM`` largest partial paths at each hop.
The amounts of the paths it keeps are exact; paths it drops are missing from the sum.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .kb import INVERSE_SUFFIX, KnowledgeBase
from .model import Trace

__all__ = ["Step", "EvidencePath", "FactIndex", "HostTrace", "answer_paths", "named", "BEAM"]

BEAM = 32  # partial paths kept at each hop of the walk back from an answer


@dataclass
class Step:
    """One fact on a path, in the direction it was followed: ``relation`` may be an inverse
    (``r~inv``: the KB holds the fact (target, r, source))."""

    source: str
    relation: str
    target: str
    weight: float  # the relation's probability at this hop (the model's relation distribution)

    @property
    def fact(self) -> Tuple[str, str, str]:
        """(subject, relation, object) as the KB file states it."""
        if self.relation.endswith(INVERSE_SUFFIX):
            return self.target, self.relation[: -len(INVERSE_SUFFIX)], self.source
        return self.source, self.relation, self.target

    def to_dict(self) -> dict:
        return {"from": self.source, "relation": self.relation, "to": self.target, "weight": self.weight}


@dataclass
class EvidencePath:
    """A path of facts from a topic entity to an answer, and the part of the answer's score it
    carries (``share``): the paths from one topic entity sum to the answer's score."""

    topic: str
    steps: List[Step]
    share: float

    def to_dict(self) -> dict:
        return {"topic": self.topic, "share": self.share, "steps": [s.to_dict() for s in self.steps]}


class FactIndex:
    """The facts into each entity, as the hops follow them (inverses included): the object-grouped
    index of the KB's SparseKB, on the host."""

    def __init__(self, kb: KnowledgeBase):
        sparse = kb.sparse
        self.ptr = sparse.tensor("OBJ_PTR").cpu().numpy()
        self.source = sparse.tensor("OBJ_SUBJ").cpu().long().numpy()
        self.relation = sparse.tensor("OBJ_REL").cpu().long().numpy()
        w = sparse.tensor("OBJ_WEIGHT") if sparse.weight is not None else None
        self.weight = None if w is None else w.detach().cpu().double().numpy()

    def into(self, entity: int):
        """(sources, relations, fact weights or None) of the facts into ``entity``."""
        lo, hi = self.ptr[entity], self.ptr[entity + 1]
        return self.source[lo:hi], self.relation[lo:hi], None if self.weight is None else self.weight[lo:hi]


# A path while it is found: (amount, entities from the answer back, relation ids, relation weights).
_Partial = Tuple[float, List[int], List[int], List[float]]


def _walk_back(index: FactIndex, inputs: List[np.ndarray], relations: List[np.ndarray], answer: int, amount: float,
               beam: int) -> List[_Partial]:
    """The paths of ``len(inputs)`` hops that carry ``amount`` to ``answer``: inputs[t] and
    relations[t] are the chain's entity weights before hop t+1 and its relation distribution."""
    frontier: List[_Partial] = [(amount, [answer], [], [])]
    for t in reversed(range(len(inputs))):
        x, r = inputs[t], relations[t]
        grown: List[_Partial] = []
        for amt, ents, rels, ws in frontier:
            src, rel, fw = index.into(ents[-1])
            terms = x[src] * r[rel]
            if fw is not None:
                terms = terms * fw
            total = terms.sum()
            if not total > 0:
                continue
            keep = np.flatnonzero(terms > 0)
            if keep.size > beam:
                keep = keep[np.argpartition(-terms[keep], beam - 1)[:beam]]
            for j in keep:
                grown.append((amt * float(terms[j] / total), ents + [int(src[j])], rels + [int(rel[j])],
                              ws + [float(r[rel[j]])]))
        grown.sort(key=lambda p: -p[0])
        frontier = grown[:beam]
    return frontier


class HostTrace:
    """One question's Trace (batch size 1) on the host, as float64 arrays: read once, walked back
    from each of its answers."""

    def __init__(self, trace: Trace):
        def host(t):
            return t[0].detach().double().cpu().numpy()

        self.inputs = [[host(x) for x in xs] for xs in trace.inputs]
        self.relations = [[host(r) for r in rs] for rs in trace.relations]
        self.outputs = [[host(o) for o in os] for os in trace.outputs]
        self.terms = [(1.0 if m.weight is None else float(m.weight[0]), host(m.attention), m.output, m.chains)
                      for m in trace.terms]
        self.branches = trace.branches


def answer_paths(trace: HostTrace, index: FactIndex, answer: int, per_topic: int = 3,
                 beam: int = BEAM) -> List[Tuple[int, float, List[int], List[int], List[float]]]:
    """The paths that carry entity ``answer``'s score: up to ``per_topic`` per branch (topic
    entity), largest first, as (branch, share, entities from the topic entity to the answer,
    relation ids, relation weights). Paths that chains of a branch share (the same facts in the
    same order, as the one- and two-entity readings of learned entities can) are listed once,
    with their shares added."""
    found: Dict[Tuple[int, tuple, tuple], list] = {}  # (branch, entities, relations) -> [share, weights, largest]
    for weight, att, output, chains in trace.terms:
        for t in range(len(trace.outputs)):
            amount = weight * att[t] * trace.outputs[t][output][answer]
            if not amount > 0:
                continue
            for i in chains:
                inputs = [trace.inputs[u][i] for u in range(t + 1)]
                rels = [trace.relations[u][i] for u in range(t + 1)]
                for amt, ents, rel_ids, ws in _walk_back(index, inputs, rels, answer, amount, beam):
                    key = (trace.branches[i], tuple(ents[::-1]), tuple(rel_ids[::-1]))
                    entry = found.setdefault(key, [0.0, None, 0.0])
                    entry[0] += amt
                    if amt > entry[2]:  # the relation weights of the larger contributor
                        entry[1], entry[2] = ws[::-1], amt
    by_branch: Dict[int, list] = {}
    for (branch, ents, rel_ids), (share, ws, _) in found.items():
        by_branch.setdefault(branch, []).append((branch, share, list(ents), list(rel_ids), ws))
    out = []
    for paths in by_branch.values():
        out += sorted(paths, key=lambda p: -p[1])[:per_topic]
    return sorted(out, key=lambda p: -p[1])


def named(kb: KnowledgeBase, path) -> EvidencePath:
    """An ``answer_paths`` entry with the KB's names."""
    _, share, ents, rel_ids, ws = path
    steps = [Step(kb.entities[a], kb.relations[p], kb.entities[b], w)
             for a, p, b, w in zip(ents, rel_ids, ents[1:], ws)]
    return EvidencePath(kb.entities[ents[0]], steps, float(share))

