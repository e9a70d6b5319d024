"""The question-answering model (ReifKB / Rigel family) over kgqa_kernels' public ops.

Per hop t a distribution over relations (inverses included) from the question vector; the
entity weights follow it: x_t = follow(x_{t-1}, r_t), rescaled so the largest weight of an
example is at most 1; attention over hops decides how many hops the question takes. Questions
with several topic entities run one branch per entity (each with its own relation heads) and
join them with intersect / follow_intersect (Rigel-Intersect); ``intersection=False`` seeds one
branch with all topic entities instead, for comparison. With ``entities="learned"`` the topic
entities come from the entity resolver (``kgqa.resolver``) instead of the [brackets]. Every mode
runs its hops through one loop, ``follow_hops``; the losses are in ``kgqa.loss``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from torch import nn

import kgqa_kernels as kk

from .config import MAX_FOLLOW_EACH
from .decoding import TWO_ENTITIES, predicted_topics, seed
from .entity_facts import EntityFacts
from .features import ENTITY_FEATURES
from .link_batch import LinkBatch
from .metrics import indicator
from .operations import DEFAULT_MAX_COUNT, GATE, Attributes, OperationHead, OpOutput
from .relation_head import IDS, RelationNameHead
from .relation_head import relation_head as relation_head_of
from .relation_map import take_rows
from .resolver import MASKED_LOGIT, EntityResolver


@dataclass
class Output:
    scores: torch.Tensor  # [B, E] in [0, 1]
    relations: torch.Tensor  # [B, hops, branches, R] relation distributions
    hop_attention: torch.Tensor  # [B, hops]
    # Learned entity resolution only: what the model linked, and the entities it never answers.
    exclude: Optional[torch.Tensor] = None  # [B, E] bool
    linked: Optional[torch.Tensor] = None  # [B, 2] the entity of each branch, -1 where none; see ``topics``
    resolution: Optional[object] = None  # resolver.Resolution
    links: Optional[list] = None  # the resolver's inputs: link_batch.LinkInput per question
    # Learned entities with intersection: the scores of the first branch alone and of the pair,
    # which kgqa.loss.training_loss scores separately; ``scores`` mixes them by P(two entities).
    parts: Optional[tuple] = None
    # Only when asked (``trace=True``; never in training): per question, what its hops computed.
    trace: Optional[List["Trace"]] = None
    # Set by QA.predict(calibrated=True): per question, why the calibration refuses it, or None.
    refusals: Optional[List[Optional[str]]] = None
    # Models with operations (kgqa.operations): P(operation), the count and the superlatives' scores.
    ops: Optional[OpOutput] = None

    @property
    def topics(self) -> Optional[List[List[int]]]:
        """The linked entities per question, in branch order (learned entities only). A copy from
        the device, so only what reads the links (evaluation, ``kgqa ask``) pays for it, not a
        training step."""
        if self.linked is None:
            return None
        return [[e for e in row if e >= 0] for row in self.linked.tolist()]


@dataclass
class Term:
    """One part of the scores: ``weight * sum over hops t of attention[:, t] * outputs[t][output]``
    (``Trace``). Each chain in ``chains`` reaches all of it on its own: an output is one chain's
    entity weights, or the intersection of several chains'."""

    weight: Optional[torch.Tensor]  # [B]; None for 1
    attention: torch.Tensor  # [B, hops]
    output: int
    chains: List[int]


@dataclass
class Trace:
    """What the hop loop (``follow_hops``) computed, kept for ``kgqa.evidence``, which splits an
    answer's score into the KB paths that carry it. Before the excluded entities are masked,
    ``scores`` = the sum of the ``terms``. A chain's entity weights at hop t+1 are
    ``hop_update(follow(inputs[t][i], relations[t][i]))``: proportional to what each fact into an
    entity brings, which is what makes the split exact."""

    inputs: List[List[torch.Tensor]] = field(default_factory=list)  # [t][i]: [B, E] chain i before hop t+1
    relations: List[List[torch.Tensor]] = field(default_factory=list)  # [t][i]: [B, R] chain i's at hop t+1
    outputs: List[List[torch.Tensor]] = field(default_factory=list)  # [t][m]: [B, E] hop t+1's output m
    terms: List[Term] = field(default_factory=list)
    branches: List[int] = field(default_factory=list)  # [i]: the topic entity (branch) chain i starts from

    def merge_before(self, other: "Trace", weight: torch.Tensor) -> None:
        """``other``'s chains, outputs and terms put before this trace's, its terms' weights times
        ``weight`` [B] (the same hops). ``forward_learned``: each candidate's chains (the first
        branch alone, ``each_candidate``) beside the pair's."""
        n_chains, n_out = len(other.inputs[0]), len(other.outputs[0])
        for field_ in ("inputs", "relations", "outputs"):
            mine, theirs = getattr(self, field_), getattr(other, field_)
            mine[:] = [a + b for a, b in zip(theirs, mine)]
        shifted = [Term(m.weight, m.attention, m.output + n_out, [c + n_chains for c in m.chains]) for m in self.terms]
        self.terms = [Term(weight if m.weight is None else m.weight * weight, m.attention, m.output, m.chains)
                      for m in other.terms] + shifted
        self.branches = other.branches + self.branches

    def rows(self) -> List["Trace"]:
        """One Trace per question (views of batch size 1)."""
        B = self.inputs[0][0].shape[0]

        def one(t, b):
            return None if t is None else t[b : b + 1]

        return [Trace([[one(x, b) for x in xs] for xs in self.inputs],
                      [[one(r, b) for r in rs] for rs in self.relations],
                      [[one(o, b) for o in os] for os in self.outputs],
                      [Term(one(m.weight, b), one(m.attention, b), m.output, m.chains) for m in self.terms],
                      self.branches) for b in range(B)]


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Entity weights kept in [0, 1]: an example whose largest weight exceeds 1 is scaled down."""
    return x / x.amax(dim=1, keepdim=True).clamp(min=1.0)


def largest(x: torch.Tensor) -> torch.Tensor:
    """[B, 1] each example's largest weight, or the smallest positive float where it has none (its
    weights, all 0, stay 0 divided by it)."""
    return x.amax(dim=1, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)


def hop_update(y: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """One hop's output masked (``keep``: zero on topic entities), then normalised: masked first,
    so a topic entity's weight never sets the scale."""
    return normalise(y if keep is None else y * keep)


def saturate(y: torch.Tensor, keep: Optional[torch.Tensor]) -> torch.Tensor:
    """One hop's output as a set, for counts and superlatives (``kgqa.operations``): masked as
    ``hop_update``, then each weight capped at 1 instead of the row scaled by its largest. After
    two hops a weight is the number of paths that reach the entity: scaled, an actor of one of a
    director's films weighs a third of one in three of them, and the members' gate (half the row's
    largest) left it out of the count. MetaQA counts over one or two hops: 61.4% Hits@1 with the
    scaled path scores (docs/results.md "Operations")."""
    return (y if keep is None else y * keep).clamp(max=1.0)


# Per SparseKB, its sorted unique (subject, relation) keys: a pass over every fact, made once per KB
# rather than at every forward of a 2-entity batch (the KB's facts never change; dropped with it).
_FACT_KEYS: "weakref.WeakKeyDictionary[kk.SparseKB, torch.Tensor]" = weakref.WeakKeyDictionary()
_KEY_ROWS: "weakref.WeakKeyDictionary[kk.SparseKB, torch.Tensor]" = weakref.WeakKeyDictionary()


def _fact_keys(kb: kk.SparseKB) -> torch.Tensor:
    keys = _FACT_KEYS.get(kb)
    if keys is None:  # the facts are sorted by (subject, relation)
        keys = _FACT_KEYS[kb] = torch.unique_consecutive(kb.subj * kb.num_relations + kb.rel)
    return keys


def _key_rows(kb: kk.SparseKB) -> torch.Tensor:
    """[E + 1]: entity e's (subject, relation) keys are ``_fact_keys(kb)[rows[e]:rows[e + 1]]``
    (cached with the keys)."""
    rows = _KEY_ROWS.get(kb)
    if rows is None:
        keys = _fact_keys(kb)
        bounds = torch.arange(kb.num_entities + 1, device=keys.device) * kb.num_relations
        rows = _KEY_ROWS[kb] = torch.searchsorted(keys, bounds)
    return rows


def set_relations(kb: kk.SparseKB, x: torch.Tensor) -> torch.Tensor:
    """[B, R] bool: the relations with at least one fact from a member of ``x`` [B, E] (an entity
    weighing at least GATE * its row's largest, as ``kgqa.operations.members`` reads a set); a row
    with no member, or whose members have no fact, is True everywhere (left as it is). Memory of
    the members' relations: no [B, facts] or [E, R] table."""
    B, R = x.shape[0], kb.num_relations
    top = x.amax(1, keepdim=True)
    b, e = ((x >= GATE * top) & (x > 0)).nonzero(as_tuple=True)
    keys, rows = _fact_keys(kb), _key_rows(kb)
    e = e.to(keys.device)
    start, n = rows[e], rows[e + 1] - rows[e]
    total = int(n.sum())
    offset = torch.arange(total, device=keys.device) - torch.repeat_interleave(n.cumsum(0) - n, n)
    at = torch.repeat_interleave(start, n) + offset
    out = torch.zeros(B, R, dtype=torch.bool, device=x.device)
    out[torch.repeat_interleave(b.to(keys.device), n).to(x.device), (keys[at] % R).to(x.device)] = True
    return out | ~out.any(1, keepdim=True)


def over_relations(logits: torch.Tensor, kb: kk.SparseKB, x: torch.Tensor, restrict: bool) -> torch.Tensor:
    """softmax(``logits`` [B, R]), with ``restrict`` over ``set_relations(kb, x)`` only: a relation
    left out gets logit -inf, so exactly no weight and exactly no gradient (``RigelModel.hop_relations``)."""
    if restrict:
        logits = logits.masked_fill(~set_relations(kb, x.detach()), float("-inf"))
    return logits.softmax(-1)


def follow_hops(kb: kk.SparseKB, hops: int, seeds: List[torch.Tensor],
                relations: Callable[[int, List[torch.Tensor]], List[torch.Tensor]],
                keeps: List[Optional[torch.Tensor]], join: Callable, attentions: List[torch.Tensor],
                fused_join: Optional[Callable] = None, trace: Optional[Trace] = None,
                update: Callable = hop_update, per_hop: bool = False) -> List[torch.Tensor]:
    """The hop loop, for every mode. Chains start at ``seeds`` (one [B, E] each); at hop t chain i
    follows ``relations(t, xs)[i]`` ([B, R]; xs: the chains before hop t + 1) and takes an
    ``update`` (``hop_update``, or ``saturate`` for the operations' sets) with ``keeps[i]``. ``join``
    maps the chains' entity weights to the hop's outputs (one [B, E] per entry of
    ``attentions``), and output m scores sum over t of ``attentions[m][:, t] * output m of hop t``.
    ``fused_join(xs, rs)``, if given, makes the last hop's outputs from the chains before it (the
    fused follow_intersect, which never stores the branch outputs). Returns the scores, one [B, E]
    per entry of ``attentions``; ``per_hop``: instead, each output's hops unmixed, [B, hops, E].
    ``trace``: gets each hop's inputs, relations and outputs."""
    xs = list(seeds)
    totals = [torch.zeros_like(seeds[0]) for _ in attentions]
    hops_out = []
    for t in range(hops):
        rs = relations(t, xs)
        if trace is not None:
            trace.inputs.append(list(xs))
            trace.relations.append(list(rs))
        if fused_join is not None and t == hops - 1:
            joined = fused_join(xs, rs)
        else:
            xs = [update(kk.follow(x, r, kb), keep) for x, r, keep in zip(xs, rs, keeps)]
            joined = join(xs)
        if trace is not None:
            trace.outputs.append(list(joined))
        if per_hop:
            hops_out.append(joined)
        else:
            totals = [total + att[:, t : t + 1] * out for total, att, out in zip(totals, attentions, joined)]
    if per_hop:
        return [torch.stack([outs[m] for outs in hops_out], 1) for m in range(len(attentions))]
    return totals


def checked_follow_each(n, name: str) -> int:
    """``n`` when it is a ``RigelModel.follow_each`` (an int in [0, MAX_FOLLOW_EACH]), else a
    ValueError naming ``name`` (the constructor's argument, the CLI's option)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_FOLLOW_EACH:
        raise ValueError(f"{name} must be an int in [0, {MAX_FOLLOW_EACH}], got {n!r}")
    return n


class RigelModel(nn.Module):
    def __init__(self, enc_dim: int, num_relations: int, hops: int, branches: int = 2, hidden: int = 256,
                 entities: str = "gold", relation_head: str = IDS, attributes: Optional[List[str]] = None,
                 max_count: Optional[int] = None, entity_features: int = ENTITY_FEATURES,
                 restrict_hops: bool = True, topic_types: bool = True, restrict_learned: bool = True,
                 follow_each: int = 0):
        """``relation_head``: "ids" (a classifier over relation ids) or "names" (reads the relations'
        names, which the QA hands it: ``kgqa.relation_head``). ``attributes``: None, no operations
        (paths only, as every model before issue 20); else the model also counts and takes
        superlatives (``kgqa.operations``) over these numeric relations (by name; may be empty:
        count only), counting up to ``max_count``. ``restrict_hops`` (gold entities): every hop only
        over the relations its input set has facts of; off, the first hop of a question with two or
        more topics only, as every model before it (``hop_relations``). ``restrict_learned``:
        learned entities' hops are restricted where gold entities' are (``chain_relations``);
        off, never (every learned-entities model before it). ``topic_types``: the question vector
        also reads which relations its topic entities have facts of (``with_topic_types``).
        ``follow_each``: learned entities at inference, the first branch from each of its most likely
        (span, entity) pairs alone (``each_candidate``); 0, from the soft seed (every model before it)."""
        super().__init__()
        if entities not in ("gold", "learned"):
            raise ValueError(f"RigelModel: entities must be 'gold' or 'learned', got {entities!r}")
        checked_follow_each(follow_each, "RigelModel: follow_each")
        self.hops, self.branches, self.num_relations = hops, branches, num_relations
        self.hidden = nn.Sequential(nn.Linear(enc_dim, hidden), nn.Tanh())
        self.relation_head = relation_head_of(relation_head, hidden, enc_dim, hops, branches, num_relations)
        self.hop_head = nn.Linear(hidden, hops)
        self.resolver = EntityResolver(enc_dim, num_relations, entity_features=entity_features) \
            if entities == "learned" else None
        self.dims = dict(enc_dim=enc_dim, num_relations=num_relations, hops=hops, branches=branches, hidden=hidden,
                         entities=entities, relation_head=relation_head, restrict_hops=restrict_hops,
                         topic_types=topic_types, restrict_learned=restrict_learned, follow_each=follow_each)
        self.restrict_hops, self.restrict_learned, self.follow_each = restrict_hops, restrict_learned, follow_each
        # The topic entities' relations, read into the question vector (``with_topic_types``); zero at
        # first, so a new model starts from the question alone.
        self.topic_types = nn.Linear(num_relations, enc_dim, bias=False) if topic_types else None
        if self.topic_types is not None:
            nn.init.zeros_(self.topic_types.weight)
        if self.resolver is not None:
            self.dims["entity_features"] = entity_features
        self.operation_head = None
        if attributes is not None:
            max_count = DEFAULT_MAX_COUNT if max_count is None else max_count
            self.operation_head = OperationHead(hidden, len(attributes), max_count)
            self.dims.update(attributes=list(attributes), max_count=max_count)

    @torch.no_grad()
    def remap_relations(self, mapping: torch.Tensor) -> None:
        """The model over a KB with other relations: ``mapping`` (``kgqa.relation_map.relation_map``)
        gives each of the KB's relations its trained index, or NEW. Every per-relation parameter is
        re-indexed by it. A new relation: with the ids head its logit is MASKED_LOGIT whatever the
        question (zero weight, so the softmax gives it exactly 0: it is never chosen, since nothing
        was learnt about it); with the names head its own bias is 0, so it is scored by its name like
        a relation no training question used. The resolver gives it no weight. Nothing else in the
        model is per relation, and nothing is per entity."""
        rows, R = self.hops * self.branches, len(mapping)
        head = self.relation_head
        if isinstance(head, RelationNameHead):
            head.bias = nn.Parameter(take_rows(head.bias, mapping, 2, 0.0))
            head.num_relations = R
            head.names = head.inverse = None  # the QA reads the new KB's names before the next forward
        else:
            weight = take_rows(head.weight.view(rows, self.num_relations, -1), mapping, 1, 0.0)
            head.weight = nn.Parameter(weight.reshape(rows * R, -1))
            bias = take_rows(head.bias.view(rows, self.num_relations), mapping, 1, MASKED_LOGIT)
            head.bias = nn.Parameter(bias.reshape(-1))
            head.out_features = rows * R
        if self.topic_types is not None:  # a new relation's column: 0, as at first
            self.topic_types.weight = nn.Parameter(take_rows(self.topic_types.weight, mapping, 1, 0.0))
            self.topic_types.in_features = R
        if self.resolver is not None:
            self.resolver.remap_relations(mapping)
        self.num_relations = R
        self.dims["num_relations"] = R

    def heads(self, q: torch.Tensor):
        """(relation distributions [B, hops, branches, R], hop attention [B, hops]) from the
        question vector alone, no hop restricted (``hop_relations`` and ``chain_relations`` give
        the relations a forward takes)."""
        logits, att = self.head_logits(q)
        return logits.softmax(-1), att

    def with_topic_types(self, q: torch.Tensor, seeds: List[torch.Tensor], kb: kk.SparseKB) -> torch.Tensor:
        """``q`` plus a learned map of which relations the topic entities have facts of (the mean
        over ``seeds`` of ``set_relations``: an entity's type, in effect), or ``q`` as it is without
        ``topic_types``. "How many tags of [X] are there" asks has_tags of a film and
        starred_actors~inv then has_tags of an actor, from question vectors the encoder finds alike
        ("how many tags of the movies with [X]"): on the question alone the first hop was one map
        for both, and MetaQA's 2-hop model with operations answered 50 of 54 held-out "tags of
        [film]" counts by starred_actors (docs/results.md "MetaQA 1, 2 and 3-hop with the
        operations")."""
        if self.topic_types is None:
            return q
        kinds = torch.stack([set_relations(kb, x.detach()) for x in seeds], 0).to(q.dtype).mean(0)
        return q + self.topic_types(kinds)

    def head_logits(self, q: torch.Tensor):
        """(relation logits [B, hops, branches, R], hop attention [B, hops]) from one hidden state:
        every relation distribution comes from these logits, whichever head scores them."""
        h = self.hidden(q)
        logits = self.relation_head(h, q).view(q.shape[0], self.hops, self.branches, self.num_relations)
        return logits, self.hop_head(h).softmax(-1)

    def hop_relations(self, q: torch.Tensor, kb: kk.SparseKB, k: int):
        """(relations, hop attention, rel) for gold entities with ``k`` topics a question:
        ``relations(t, xs)`` is ``follow_hops``' callable; ``rel()`` [B, hops, branches, R] the
        relations it gave, once the hops have run (the branches no chain takes as the question
        alone gives them). Hop t of chain j (input set ``xs[j]``) is restricted to the relations
        its set has facts of (``set_relations``: the topic entity at the first hop, the members of
        the set before it after) with ``restrict_hops``; without, only the first hop of a question
        with two or more topics is (every model before restrict_hops). The branch heads are
        positional (branch 0 reads the first mention) and branch 0 is also the one branch of every
        1-entity question: "how many [Drama] films did [X] direct" drew branch 0 to X's relation
        (directed_by~inv) from [Drama], which reaches nothing; the intersection then counts 0 and
        its gradient to the right relation (through the min, times a near-0 softmax weight) never
        recovered it (docs/results.md "Operations"; tests/kgqa/test_operations.py's toy with both
        mention orders). A relation left out gets logit -inf, so exactly no weight and exactly no
        gradient (renormalising the probabilities instead left their logits a rounding error of
        gradient, which Adam scales to full steps: two data-parallel ranks then trained apart,
        tests/kgqa/test_parallel.py).

        Tried and not kept: each hop after the first also reading the relation its chain took at
        the hop before (commit 849d396's ``chain_hops``; docs/results.md "MetaQA 1, 2 and 3-hop with
        the operations")."""
        logits, att = self.head_logits(q)
        relations, taken = self.chain_relations(kb, [logits[:, :, j] for j in range(k)], [[j] for j in range(k)],
                                                [k] * k)
        # the branches no chain takes, as the question alone gives them
        return relations, att, lambda: torch.cat([taken(), logits[:, :, k:].softmax(-1)], 2)

    def chain_relations(self, kb: kk.SparseKB, logits: List[torch.Tensor], heads: List[List[int]],
                        topics: List[int], w: Optional[torch.Tensor] = None, restricts: bool = True):
        """(relations, rel) for ``follow_hops``, gold entities' (``hop_relations``) and learned
        ones' alike: chain i reads the logits [B, hops, R] ``logits[heads[i][0]]``, or, with two
        heads, ``w`` [B, 1] times that head's distribution plus 1 - ``w`` times the other's
        (learned entities' pair: the branch heads in the order its spans are written). Where a
        question with ``topics[i]`` topic entities is restricted (every hop with ``restrict_hops``,
        else the first hop of two or more topics), each distribution is over the relations the
        chain's set has facts of; ``restricts`` False: nowhere (learned entities without
        ``restrict_learned``). A learned chain's set is the resolver's soft pick, its members as
        ``set_relations`` reads a set. On the 2-hop 2-entity family, restricting a learned model
        trained without it at inference alone lifted Hits@1 84.13 -> 86.88 (docs/results.md
        "Learned entities restricted where gold ones are"). ``rel()``: [B, hops, chains, R], once
        the hops have run."""
        taken: List[torch.Tensor] = []

        def relations(t, xs):
            out = []
            for x, hs, k in zip(xs, heads, topics):
                restrict = self.restricts_hop(t, k, restricts)
                p = [over_relations(logits[h][:, t], kb, x, restrict) for h in hs]
                out.append(p[0] if len(p) == 1 else w * p[0] + (1 - w) * p[1])
            taken.append(torch.stack(out, 1))
            return out

        return relations, lambda: torch.stack(taken, 1)

    def restricts_hop(self, t: int, topics: int, restricts: bool = True) -> bool:
        """Whether hop ``t`` of a chain whose question has ``topics`` topic entities reads its
        relations over those its set has facts of (``chain_relations``): with ``restricts``, every
        hop with ``restrict_hops``, else the first hop of two or more topics. Where no hop does, a
        chain's relations are its heads' softmax alone, whatever its set."""
        return restricts and (self.restrict_hops or (t == 0 and topics > 1))

    def hops_from(self, seeds: List[torch.Tensor], rel: torch.Tensor, att: torch.Tensor, kb: kk.SparseKB,
                  keep: Optional[torch.Tensor], trace: Optional[Trace] = None,
                  update: Callable = hop_update, per_hop: bool = False) -> torch.Tensor:
        """Scores [B, E] from one seed per branch; branches meet by intersection at every hop.
        ``keep`` [B, E] multiplies every hop's output (zero on topic entities). ``update`` and
        ``per_hop`` (``follow_hops``): ``saturate`` and True give the operations' sets [B, hops, E]
        (the intersection's min commutes with the cap)."""
        k = len(seeds)

        def fused(xs, rs):  # the branch outputs are never stored
            return [update(kk.follow_intersect(xs, rs, kb), keep)]

        relations = rel if callable(rel) else (lambda t, xs: [rel[:, t, j] for j in range(k)])
        (scores,) = follow_hops(kb, self.hops, seeds, relations, [keep] * k,
                                lambda xs: [xs[0] if k == 1 else kk.intersect(*xs)], [att],
                                fused if k > 1 else None, trace, update, per_hop)
        if trace is not None:
            trace.terms, trace.branches = [Term(None, att, 0, list(range(k)))], list(range(k))
        return scores

    @property
    def follows_each(self) -> bool:
        """Whether ``forward_learned`` takes the first branch from ``each_candidate``: at inference
        only (training reads the soft seed's path), with ``follow_each`` set."""
        return self.follow_each > 0 and not self.training

    def each_candidate(self, lb: LinkBatch, res, kb: kk.SparseKB, exclude_topics: bool,
                       trace: Optional[Trace] = None) -> torch.Tensor:
        """The first branch as the expectation of its path over the ``follow_each`` most likely
        (span, entity) pairs: sum over k of w_k times the path from entity k alone, its relations
        read from its own span's masked question vector, w_k = P(span) P(entity | span) of the
        pairs taken, renormalised over them. The soft seed instead follows the mixture of the
        candidates, and each hop scales its row by its largest weight: after two hops an unlikely
        candidate whose paths converge (an actor of four of its films) outranked the likely one's
        answers. On the noisy 2-hop benchmark (a model trained with the soft seed) typos went from
        86.8 to 96.9 Hits@1 and all noisy questions from 85.6 to 88.8, clean ones unchanged at
        100.0; on 1-hop, where no path converges, 86.6 -> 86.2 noisy (docs/results.md "Each
        candidate followed alone"). ``trace``: gets one chain and one term per pair."""
        B, S, C = res.entity.shape
        joint = (res.span.unsqueeze(-1) * res.entity).reshape(B, S * C)
        w, at = joint.topk(min(self.follow_each, S * C), dim=1)
        w = w / w.sum(1, keepdim=True).clamp(min=torch.finfo(w.dtype).tiny)
        spans, ents = at // C, lb.entity.reshape(B, -1).gather(1, at)
        rows = torch.arange(B, device=w.device)
        K = w.shape[1]
        seeds, logits, atts = [], [], []
        for k in range(K):  # a pair of weight 0 (padding) starts from nothing and adds nothing
            x = torch.zeros(B, kb.num_entities, dtype=w.dtype, device=w.device)
            x.scatter_(1, ents[:, k : k + 1], (w[:, k : k + 1] > 0).to(w.dtype))
            lg, a = self.head_logits(self.with_topic_types(lb.masked[rows, spans[:, k]], [x], kb))
            seeds.append(x)
            logits.append(lg[:, :, 0])
            atts.append(a)
        relations, _ = self.chain_relations(kb, logits, [[k] for k in range(K)], [1] * K,
                                            restricts=self.restrict_learned)
        keeps = [(1 - x) if exclude_topics else None for x in seeds]
        outs = follow_hops(kb, self.hops, seeds, relations, keeps, list, atts, trace=trace)
        if trace is not None:
            trace.terms, trace.branches = [Term(w[:, k], atts[k], k, [k]) for k in range(K)], [0] * K
        return sum(w[:, k : k + 1] * out for k, out in enumerate(outs))

    def operations(self, q: torch.Tensor, sets: torch.Tensor, att: torch.Tensor, attributes: Optional[Attributes],
                   exclude: Optional[torch.Tensor]) -> Optional[OpOutput]:
        """The operations on the path's ``sets`` [B, hops, E] (``hops_from`` with ``saturate``,
        per hop) mixed by the hop attention ``att`` (None for a model without them)."""
        if self.operation_head is None:
            return None
        return self.operation_head(self.hidden(q), sets, att, attributes, exclude)

    def forward(self, q: torch.Tensor, topics: List[List[int]], kb: kk.SparseKB, intersection: bool = True,
                exclude_topics: bool = True, trace: bool = False, attributes: Optional[Attributes] = None) -> Output:
        """Gold entities. q: [B, enc_dim] question vectors; topics: per question its topic entity
        ids (every question of a batch with the same count when ``intersection``).
        ``exclude_topics``: a path never comes back to a topic entity (MetaQA's "the films that
        share actors with [X]" means films other than X, at every hop). ``trace``: keep what the
        hops computed in ``Output.trace`` (answers' evidence)."""
        E = kb.num_entities
        k = len(topics[0]) if intersection else 1
        if intersection and any(len(t) != k for t in topics):
            raise ValueError("RigelModel: with intersection, a batch's questions need the same number of topic entities")
        if k > self.branches:
            raise ValueError(f"RigelModel: {k} topic entities, but the model has {self.branches} branches")
        if intersection:
            seeds = [indicator([[ts[j]] for ts in topics], E, q.device, q.dtype) for j in range(k)]
        else:
            seeds = [indicator(topics, E, q.device, q.dtype)]
        keep = 1 - indicator(topics, E, q.device, q.dtype) if exclude_topics else None
        tr = Trace() if trace else None
        q = self.with_topic_types(q, seeds, kb)
        relations, att, taken = self.hop_relations(q, kb, k)
        scores = self.hops_from(seeds, relations, att, kb, keep, tr)
        rel = taken()
        ops = None
        if self.operation_head is not None:
            sets = self.hops_from(seeds, rel, att, kb, keep, update=saturate, per_hop=True)
            ops = self.operations(q, sets, att, attributes, None if keep is None else keep == 0)
        return Output(scores, rel, att, trace=None if tr is None else tr.rows(), ops=ops)

    def forward_learned(self, lb: LinkBatch, facts: EntityFacts, kb: kk.SparseKB, intersection: bool = True,
                        exclude_topics: bool = True, trace: bool = False,
                        attributes: Optional[Attributes] = None) -> Output:
        """Entities found by the resolver. The first branch starts from the mixture over spans and
        their entities, P(span) * P(entity | span); its question vector is the same mixture of the
        span-masked encodings, which is the gold-mode vector once the resolver is sure. At
        inference with ``follow_each``, its scores are ``each_candidate``'s instead. With
        ``intersection``, a pair of branches (the first, and the second from P2) meets by
        intersection, and the scores are (1 - g) * first alone + g * pair, each path scaled to its
        largest score, g = P(two entities).
        ``Output.parts`` holds the two paths for ``kgqa.loss.training_loss``."""
        if self.resolver is None:
            raise ValueError("RigelModel: this model was trained with gold entities; it has no entity resolver")
        E = kb.num_entities
        res = self.resolver(lb, facts)
        first = seed(lb, res.span.unsqueeze(-1) * res.entity, E)
        q_first = self.with_topic_types((res.span.unsqueeze(-1) * lb.masked).sum(1), [first], kb)
        logits, att = self.head_logits(q_first)
        keep = (1 - first.detach()).clamp(0, 1) if exclude_topics else None
        tr = Trace() if trace else None
        if not intersection:
            relations, rel = self.chain_relations(kb, [logits[:, :, 0]], [[0]], [1], restricts=self.restrict_learned)
            if not self.follows_each:
                scores = self.hops_from([first], relations, att, kb, keep, tr)
            else:
                # The soft seed's relations are still the ones reported (calibration, operations).
                # Its path is followed only where they read its sets; elsewhere they are the head's
                # softmax alone, and the pairs' paths are the scores. Not following it there took
                # the forward of 64 noisy 2-hop MetaQA questions from 403-412 to 327-340 ms on the
                # CPU (experiments/follow_each_cost.py; docs/results.md "Each candidate followed alone").
                if any(self.restricts_hop(t, 1, self.restrict_learned) for t in range(self.hops)):
                    self.hops_from([first], relations, att, kb, keep)
                else:
                    for t in range(self.hops):
                        relations(t, [first])
                scores = self.each_candidate(lb, res, kb, exclude_topics, tr)
            out = self._learned_output(lb, res, scores, rel(), att, None, False, exclude_topics, tr)
            if self.operation_head is not None:
                sets = self.hops_from([first], out.relations, att, kb, keep, update=saturate, per_hop=True)
                out.ops = self.operations(q_first, sets, att, attributes, out.exclude)
            return out
        # The pair's relations: gold mode's branch heads are positional (branch 0 takes the first
        # mention), so the pair reads them in the order its spans are written, softly:
        # w = P(the first branch's span comes before the second's).
        second = seed(lb, res.second.unsqueeze(-1) * res.entity, E)
        q_second = self.with_topic_types((res.second.unsqueeze(-1) * lb.masked).sum(1), [second], kb)
        logits2, att2 = self.head_logits((q_first + q_second) / 2)
        starts = lb.span_start
        before = (starts.unsqueeze(2) < starts.unsqueeze(1)).to(res.span.dtype)  # [B, i, j]: span i before span j
        w = torch.einsum("bi,bij,bj->b", res.span, before, res.second).view(-1, 1)
        keep2 = (1 - second.detach()).clamp(0, 1) if exclude_topics else None
        two = res.two.to(first.dtype)
        has_second = (res.second.sum(1, keepdim=True) > 0).to(first.dtype)  # else the pair is the first alone
        # Three chains: the first branch alone (x), and the pair (xa, xb), which meets by
        # intersection, or is the first alone where there is no second span.
        chains = [first, first, second]
        relations, rel = self.chain_relations(kb, [logits[:, :, 0], logits2[:, :, 0], logits2[:, :, 1]],
                                              [[0], [1, 2], [2, 1]], [1, 2, 2], w, self.restrict_learned)
        join = lambda xs: [xs[0], has_second * kk.intersect(xs[1], xs[2]) + (1 - has_second) * xs[0]]  # noqa: E731
        alone, pair = follow_hops(kb, self.hops, chains, relations, [keep, keep, keep2], join, [att, att2], trace=tr)
        each = Trace() if self.follows_each and tr is not None else None
        if self.follows_each:
            alone = self.each_candidate(lb, res, kb, exclude_topics, each)
        taken = rel()  # [B, hops, 3, R]: the chains' relations
        rel, pair_rel = taken[:, :, :1], taken[:, :, 1:]
        # Each path scaled to its largest score before the gate mixes them. The pair meets by the min
        # of two soft seeds' paths, so its scores sit under the first branch's, whose leftovers,
        # mixed in by 1 - P(two entities), outranked the pair's answers: on the 2-hop 2-entity
        # family, held out, Hits@1 97.12 unscaled and 98.38 scaled, the pair alone 98.38 (the same
        # weights; docs/results.md "The gate, and the two paths' scales").
        w_alone, w_pair = (1 - two) / largest(alone), two / largest(pair)
        scores = w_alone * alone + w_pair * pair
        if tr is not None:  # the pair is the first chain alone where there is no second span
            tr.branches = [0, 0, 1]
            tr.terms = [Term((w_pair * has_second)[:, 0], att2, 1, [1, 2]),
                        Term((w_pair * (1 - has_second))[:, 0], att2, 1, [0])]
            if each is None:
                tr.terms.insert(0, Term(w_alone[:, 0], att, 0, [0]))
            else:  # the first branch alone is each candidate's chain: theirs go first
                tr.merge_before(each, w_alone[:, 0])
        pick = (two > TWO_ENTITIES) & (has_second > 0)
        rel = torch.where(pick.view(-1, 1, 1, 1), pair_rel, rel[:, :, :1].expand_as(pair_rel))
        att = torch.where(pick, att2, att)
        out = self._learned_output(lb, res, scores, rel, att, (alone, pair), True, exclude_topics, tr)
        if self.operation_head is not None:
            alone, pair = follow_hops(kb, self.hops, chains, lambda t, xs: list(taken[:, t].unbind(1)),
                                      [keep, keep, keep2], join, [att, att2], update=saturate, per_hop=True)
            # the hops of what the model reads (att: the pair's attention where it reads two entities)
            out.ops = self.operations(q_first, (1 - two.unsqueeze(1)) * alone + two.unsqueeze(1) * pair, att,
                                      attributes, out.exclude)
        return out

    @staticmethod
    def _learned_output(lb, res, scores, rel, att, parts, intersection, exclude_topics, trace=None) -> Output:
        linked = predicted_topics(lb, res, intersection)
        B, E = scores.shape
        # One column past the entities takes the -1s (no entity), which the slice drops: a mask
        # built on the device, with no copy of the links to the host.
        exclude = torch.zeros(B, E + 1, dtype=torch.bool, device=scores.device)
        if exclude_topics:
            exclude.scatter_(1, torch.where(linked >= 0, linked, E), True)
        return Output(scores, rel, att, exclude[:, :E], linked, res, lb.inputs, parts,
                      None if trace is None else trace.rows())
