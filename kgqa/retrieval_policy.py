"""Candidate spans and entities drawn by a learned policy (``--retrieval policy``): the spans are the
question's word n-grams, each span's candidates are drawn from the generators of
``kgqa.retrieval`` in the amounts the bandit (``kgqa.bandit``) chooses under a budget, and the
entity resolver (``kgqa.resolver``) ranks their union as it ranks the alias index's candidates
(``--retrieval alias``, today's ``kgqa.mentions.find_mentions``, kept for comparison).

Per question: every n-gram of up to MAX_FUZZY_WORDS words, and longer ones (up to MAX_SPAN_WORDS)
only when the alias index matches them (cheap: a dict lookup), get a first probe (PROBE_K hits
from each generator, one batched search); the MAX_SPANS spans whose best-probed name is most like
them are kept (ties: the longest; a name the span is the initials of counts as INITIALS_CLOSENESS
alike); each kept span's context (``kgqa.retrieval_context``) picks its allocation, and the drawn
hits, each entity once, are its candidates. Exact and normalised name matches are described to the
resolver as the alias index's ("exact", "normalised"); every other candidate as "fuzzy" with the
similarity of its name to the span, whichever generator found it, and two kinds of fuzzy match by
name (``kgqa.features.NAME_KINDS``): "initials", the span is the name's initials
(``kgqa.retrieval.alias.abbreviations``), and "words", every word of the span is a word of the name.
That similarity is ``aliases.similarity_any_order`` (a span with the name's words in another order
is as like it as the name): with the character-order ratio, a noisy-mention model trained on
misspelt copies answered 61.8% of word-order questions, with this one 81.2% (docs/results.md
"Training on noisy copies"). A policy state from before either ("any_order", "name_kinds" absent)
keeps what it was trained with: ``aliases.similarity``, no NAME_KINDS.

Learning: ``learn`` plays one span whose gold entities are known (a training question's
[bracketed] topic entity): probe, allocate with exploration, draw, reward each generator's arms
with where the gold entity was among what it gave (``BudgetBandit.update``). ``remember`` feeds the
memory generator (mention, entity) pairs that led to correct answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from .aliases import normalise, similarity, similarity_any_order
from .bandit import BUDGET, BudgetBandit, fill
from .config import POLICY
from .linking import word_spans
from .mentions import MAX_FUZZY_WORDS, MAX_SPAN_WORDS, MAX_SPANS, Mention
from .retrieval import MemoryIndex, Retrieval
from .retrieval.alias import abbreviations, as_abbreviation
from .retrieval_context import CONTEXT_VERSION, PROBE_K, context_dim, context_features

POLICY_VERSION = 1
# How like a span the name it is the initials of is, to choose the spans kept (``find_mentions``):
# their character similarity (0.32 for "lotr" against "the lord of the rings") kept 161 of 200 noisy
# 1-hop initials among a question's MAX_SPANS closest spans, the 16th being at 0.38-0.55; with this,
# all 200 (experiments/initials_spans_kept.py). A typo of a name is at about 0.95.
INITIALS_CLOSENESS = 0.9


@dataclass
class ChosenSpans:
    """``CandidatePolicy.choose_spans``: per question its spans [(start, end)], each one's
    closeness, and the indices of those kept; and each distinct span text (``at_text``: its
    index) with its bandit context row of ``X``."""

    spans: List[List[Tuple[int, int]]]
    closeness: List[List[float]]
    kept: List[Set[int]]
    distinct: List[str]
    at_text: Dict[str, int]
    X: np.ndarray


class CandidatePolicy:
    """The bandit over a Retrieval's generators for the entity ``names`` (entity i is names[i])."""

    def __init__(self, retrieval: Retrieval, names: Sequence[str], bandit: Optional[BudgetBandit] = None,
                 budget: int = BUDGET, seed: int = 0, any_order: bool = True, name_kinds: bool = True):
        self.retrieval, self.names = retrieval, names
        # How a candidate is described to the resolver (see the module's docstring): by which
        # similarity, and whether NAME_KINDS are named.
        self.any_order, self.name_kinds = any_order, name_kinds
        self.similarity = similarity_any_order if any_order else similarity
        self.generators = list(retrieval.generators)
        if not self.generators:
            raise ValueError("retrieval: no generator was built")
        if bandit is None:
            bandit = BudgetBandit(self.generators, context_dim(self.generators), budget=budget, seed=seed)
        elif bandit.generators != self.generators:
            raise ValueError(f"bandit: its generators {bandit.generators} are not the retrieval's {self.generators} "
                             f"(build the retrieval with the same generators as the policy was trained with)")
        if bandit.dim != context_dim(self.generators):
            raise ValueError(f"bandit: dim: {bandit.dim}, but the context of {len(self.generators)} generators is "
                             f"{context_dim(self.generators)} wide")
        self.bandit = bandit

    @property
    def memory(self) -> Optional[MemoryIndex]:
        return self.retrieval.memory

    # ---- one span at a time ----------------------------------------------------------------------

    def contexts(self, mentions: Sequence[str]) -> Tuple[np.ndarray, list]:
        """([N, dim] the mentions' contexts, their probes): one batched search of PROBE_K each."""
        probes = self.retrieval.search(list(mentions), {g: PROBE_K for g in self.generators})
        X = np.stack([context_features(m, p, self.names, self.generators) for m, p in zip(mentions, probes)]) \
            if len(mentions) else np.zeros((0, self.bandit.dim))
        return X, probes

    def draw(self, mentions: Sequence[str], X: np.ndarray, explore: bool = False) -> Tuple[list, list]:
        """(per mention its allocation, per mention {generator: hits drawn}): the allocation's hits,
        then more from the generators (``kgqa.bandit.fill``) until the budget's worth of distinct
        entities. One batched search of every generator at the budget's depth."""
        allocs = [self.bandit.allocate(x, explore) for x in X]
        rows = self.retrieval.search(list(mentions), {g: self.bandit.budget for g in self.generators}) \
            if len(mentions) else []
        drawn = []
        for a, row in zip(allocs, rows):
            depth = fill(a, {g: [h.entity for h in hits] for g, hits in row.items()}, self.bandit.budget)
            drawn.append({g: hits[: depth[g]] for g, hits in row.items() if depth[g]})
        return allocs, drawn

    def learn(self, mentions: Sequence[str], gold: Sequence[Set[int]]) -> List[bool]:
        """Plays each mention with its gold entities (exploring) and updates the bandit with where
        they were among each generator's allocated hits; per mention whether the drawn candidates
        (the fill included) held a gold entity."""
        X, _ = self.contexts(mentions)
        allocs, drawn = self.draw(mentions, X, explore=True)
        out = []
        for x, a, row, g in zip(X, allocs, drawn, gold):
            ranks = {name: next((r for r, h in enumerate(hits) if h.entity in g), None) for name, hits in row.items()}
            self.bandit.update(x, a, {name: (r if r is not None and r < a.get(name, 0) else None)
                                      for name, r in ranks.items()})
            out.append(any(r is not None for r in ranks.values()))
        return out

    def remember(self, pairs: Iterable[Tuple[str, int]]) -> int:
        """Adds (mention, entity) pairs that led to correct answers to the memory generator; how
        many were added (0 without a memory generator). A mention with no letter or digit is
        left out: the memory looks mentions up normalised, and it normalises to nothing (MetaQA
        has a film named "$")."""
        if self.memory is None:
            return 0
        n = 0
        for mention, entity in pairs:
            if not normalise(mention):
                continue
            self.memory.add(mention, int(entity))
            n += 1
        return n

    # ---- a question's spans ----------------------------------------------------------------------

    def choose_spans(self, plains: Sequence[str], max_spans: int = MAX_SPANS) -> "ChosenSpans":
        """Per plain question its spans, each one's closeness (how like the span the best name any
        generator probed is: ``_best_similarity``) and the ``max_spans`` kept: the closest, the
        longer first on a tie. What ``find_mentions`` draws candidates for."""
        spans_of = [self._spans(t) for t in plains]
        texts = [t[s:e] for t, spans in zip(plains, spans_of) for s, e in spans]
        # A span's probe, context, closeness and (drawn without exploration) candidates depend on
        # its text alone: each distinct text is probed and drawn once. Questions share most of their
        # n-grams ("what movies did", "act in"): 1,000 MetaQA 1-hop questions have 20,804 n-grams of
        # up to 4 words, 10,673 distinct (docs/results.md, "End to end with --retrieval policy").
        distinct = list(dict.fromkeys(texts))
        at_text = {m: i for i, m in enumerate(distinct)}
        X, probes = self.contexts(distinct)
        near = [max(self._best_similarity(m, p), default=0.0) for m, p in zip(distinct, probes)]
        closeness, kept, at = [], [], 0
        for t, spans in zip(plains, spans_of):
            close = [near[at_text[t[s:e]]] for s, e in spans]
            order = sorted(range(len(spans)), key=lambda j: (-close[j], -(spans[j][1] - spans[j][0])))
            closeness.append(close)
            kept.append(set(order[:max_spans]))
        return ChosenSpans(spans_of, closeness, kept, distinct, at_text, X)

    def find_mentions(self, plains: Sequence[str], max_spans: int = MAX_SPANS) -> List[List[Mention]]:
        """Per plain question its Mentions (as ``kgqa.mentions.find_mentions``), the candidates drawn
        by the policy without exploration for the spans ``choose_spans`` keeps; the longest first."""
        c = self.choose_spans(plains, max_spans)
        chosen = sorted({c.at_text[t[s:e]] for t, spans, kept in zip(plains, c.spans, c.kept)
                         for j, (s, e) in enumerate(spans) if j in kept})
        _, drawn = self.draw([c.distinct[i] for i in chosen], c.X[chosen] if chosen else c.X[:0])
        drawn_for = dict(zip(chosen, drawn))
        out = []
        for t, spans, kept in zip(plains, c.spans, c.kept):
            ms = [self._mention(t, s, e, drawn_for[c.at_text[t[s:e]]]) for j, (s, e) in enumerate(spans) if j in kept]
            ms = [m for m in ms if m.entities]
            ms.sort(key=lambda m: (-(m.end - m.start), m.start))
            out.append(ms)
        return out

    def _spans(self, plain: str) -> List[Tuple[int, int]]:
        aliases = self.retrieval.generators.get("alias")
        out = []
        for s, e in word_spans(plain, MAX_SPAN_WORDS):
            if len(plain[s:e].split()) <= MAX_FUZZY_WORDS:
                out.append((s, e))
            elif aliases is not None and aliases.search([plain[s:e]], 1)[0]:
                out.append((s, e))
        return out

    def _best_similarity(self, mention: str, probe: dict) -> List[float]:
        """Per generator, how like the span its best hit is: the similarity, and at least
        INITIALS_CLOSENESS for a name the span is the initials of (with name_kinds)."""
        key = normalise(mention)
        out = []
        for hits in probe.values():
            if hits and key:
                name_key = normalise(self.names[hits[0].entity])
                near = self.similarity(key, name_key)
                if self.name_kinds and name_kind(mention, key, name_key) == "initials":
                    near = max(near, INITIALS_CLOSENESS)
                out.append(near)
        return out

    def _mention(self, plain: str, start: int, end: int, row: dict) -> Mention:
        text = plain[start:end]
        key = normalise(text)
        best: Dict[int, Tuple[str, float]] = {}
        for hits in row.values():
            for h in hits:
                if h.entity in best:
                    continue
                name = self.names[h.entity]
                if name == text:
                    best[h.entity] = ("exact", 1.0)
                elif normalise(name) == key:
                    best[h.entity] = ("normalised", 0.99)  # kgqa.aliases.Candidate's scores
                else:
                    name_key = normalise(name)
                    how = name_kind(text, key, name_key) if self.name_kinds else "fuzzy"
                    best[h.entity] = (how, self.similarity(key, name_key) if key else 0.0)
        order = sorted(best, key=lambda e: -best[e][1])  # stable: the generators' order breaks ties
        return Mention(start, end, text, order, [best[e][0] for e in order], [best[e][1] for e in order])

    # ---- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain JSON-able data: the bandit's and the memory's states, with the versions of the
        context features they were learned with."""
        return {"version": POLICY_VERSION, "context_version": CONTEXT_VERSION, "bandit": self.bandit.state_dict(),
                "memory": self.memory.state_dict() if self.memory is not None else None, "any_order": self.any_order,
                "name_kinds": self.name_kinds}

    @staticmethod
    def check_state(d) -> dict:
        """``d`` as a policy state; ValueError naming the key otherwise."""
        if not isinstance(d, dict):
            raise ValueError(f"expected an object, got {type(d).__name__}")
        for key in ("version", "context_version", "bandit", "memory"):
            if key not in d:
                raise ValueError(f"{key}: missing")
        if d["version"] != POLICY_VERSION:
            raise ValueError(f"version: {d['version']!r}, this kgqa reads {POLICY_VERSION}")
        for key in ("any_order", "name_kinds"):
            if type(d.get(key, False)) is not bool:
                raise ValueError(f"{key}: expected true or false, got {d[key]!r}")
        if d["context_version"] != CONTEXT_VERSION:
            raise ValueError(f"context_version: {d['context_version']!r}, this kgqa's context features are "
                             f"version {CONTEXT_VERSION} (train again)")
        return d

    @classmethod
    def from_state_dict(cls, d: dict, names: Sequence[str], encoder=None, aliases=None) -> "CandidatePolicy":
        """The policy ``d`` describes over ``names``: its Retrieval rebuilt with the generators the
        bandit was trained with, the memory restored. ValueError naming the key that is wrong."""
        d = cls.check_state(d)
        try:
            bandit = BudgetBandit.from_state_dict(d["bandit"])
        except ValueError as e:
            raise ValueError(f"bandit: {str(e).removeprefix('bandit state: ')}") from None
        try:
            memory = MemoryIndex.from_state_dict(d["memory"]) if d["memory"] is not None else None
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"memory: {e}") from None
        retrieval = Retrieval.build(names, encoder=encoder, memory=memory, generators=bandit.generators,
                                    aliases=aliases)
        return cls(retrieval, names, bandit, any_order=d.get("any_order", False), name_kinds=d.get("name_kinds", False))


def name_kind(text: str, key: str, name_key: str) -> str:
    """How a span that is neither the name nor the name normalised matches it (``key``, ``name_key``:
    both normalised): "initials" when the span, read as an abbreviation, is the name's initials;
    "words" when every word of the span is a word of the name; else "fuzzy"."""
    short = as_abbreviation(text)
    if short and short in abbreviations(name_key):
        return "initials"
    words = key.split()
    if words and set(words) <= set(name_key.split()):
        return "words"
    return "fuzzy"


# ---- a QA's policy: built, trained, fed ---------------------------------------------------------

LEARN_CHUNK = 256  # spans played per batched search while the bandit learns


def for_qa(qa, state: Optional[dict] = None) -> CandidatePolicy:
    """A QA's candidate policy over its KB's names, with its encoder for the dense generator: new
    (``state`` None) or restored from a checkpoint's ``state``."""
    names = qa.kb.entities
    if state is not None:
        return CandidatePolicy.from_state_dict(state, names, encoder=qa.encoder, aliases=qa.kb.aliases)
    retrieval = Retrieval.build(names, encoder=qa.encoder, aliases=qa.kb.aliases)
    return CandidatePolicy(retrieval, names, budget=qa.cfg.budget, seed=qa.cfg.seed)


def gold_mentions(questions) -> List[Tuple[str, Set[int]]]:
    """(the mention as written, its gold entities) for each [bracketed] topic of the questions whose
    topics are known: the spans the bandit learns from."""
    from .linking import strip_brackets

    out = []
    for q in questions:
        _, written = strip_brackets(q.text)
        if q.topics and len(written) == len(q.topics):
            out += [(m, {int(e)}) for m, e in zip(written, q.topics)]
    return out


def fit(qa, questions, log=print) -> CandidatePolicy:
    """A new policy for ``qa`` whose bandit has played every gold mention of ``questions`` once, in
    an order shuffled by ``qa.cfg.seed`` (exploring), as ``qa.links.policy`` (and ``qa.cfg.retrieval``
    "policy": a checkpoint of the QA stores it)."""
    policy = for_qa(qa)
    spans = gold_mentions(questions)
    np.random.default_rng(qa.cfg.seed).shuffle(spans)
    found = []
    for i in range(0, len(spans), LEARN_CHUNK):
        chunk = spans[i : i + LEARN_CHUNK]
        found += policy.learn([m for m, _ in chunk], [g for _, g in chunk])
    missing = f" (not built: {', '.join(f'{g}: {why}' for g, why in policy.retrieval.missing.items())})" \
        if policy.retrieval.missing else ""
    log(f"candidate policy: played {len(spans)} gold mentions over {', '.join(policy.generators)}{missing}; "
        f"the gold entity was drawn for {sum(found) / max(1, len(found)):.4f} of them while exploring")
    qa.links.policy = policy
    qa.cfg.retrieval = POLICY
    qa.links.forget()
    return policy


def remember_correct(qa, questions, batch_size: int = 256) -> int:
    """Feeds the memory generator the (span, entity) each branch linked in the questions ``qa``
    answers correctly (its top answer is an answer); how many pairs. The cached resolver inputs
    are dropped after: the memory changes what the policy draws."""
    import torch

    from .decoding import branch_links

    policy = qa.links.policy
    if policy is None or policy.memory is None:
        return 0
    pairs = []
    qa.model.eval()
    with torch.no_grad():
        for i in range(0, len(questions), batch_size):
            batch = questions[i : i + batch_size]
            out = qa.forward(batch)
            exclude = qa.excluded(batch, out)
            top = out.scores.masked_fill(exclude, float("-inf")).argmax(1).tolist()
            for b, (q, t) in enumerate(zip(batch, top)):
                if t in q.answers:
                    pairs += [(link.mention.text, link.entity)
                              for link in branch_links(out.resolution, out.links[b].mentions, b,
                                                       branches=len(out.topics[b]))]
    n = policy.remember(pairs)
    qa.links.forget()
    return n
