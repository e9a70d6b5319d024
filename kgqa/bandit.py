"""A contextual bandit that allocates a budget of candidates across candidate generators, per span.

Arms are (generator, depth) pairs: for generator g and depth k (a rung of ``DEPTHS``), a ridge
regression of P(the gold entity is in g's top k | context) on the span's context features
(``kgqa.retrieval_context``), with LinUCB's confidence bonus (Li et al. 2010, disjoint arms). An
allocation takes each generator to one depth (or none) and is the one that maximises

    P(gold drawn) = 1 - prod over generators (1 - p[g, depth_g])

exactly, over every allocation within the budget (a greedy one by gain per candidate spread a
generator that needs 20 over several that need 5: measured on the synthetic problem of
tests/kgqa/test_bandit.py, 0.63 against the best 0.90). Exploration (``explore=True``, training): the
estimates are the upper confidence bounds, so a rung the policy knows little about gets tried;
exploitation (inference): the means, and the allocation is deterministic. ``seed`` breaks exact
ties at random while exploring (at the start every untried rung looks alike).

Why (generator, depth) arms and not one arm per allocation mix: drawing k candidates from g shows
where the gold entity is among them, so one draw answers every rung up to k at once. The update
uses all of that (partial monitoring), where an arm per mix would learn only the mix it drew and would
need a model for each of the 70 mixes of 20 candidates in steps of 5 over 5 generators. The
product assumes the generators miss independently; they do not (an exact alias match is also a
fuzzy one), which makes the allocation spend candidates on a second generator that finds what the
first found. The measurement (docs/results.md, "Candidate allocation by a contextual bandit")
says what that costs against the best fixed mix.

Own code in numpy rather than mabwiser (installable here: 2.7.4, which would also install pandas
and seaborn): its LinUCB chooses one arm per decision, so the budgeted allocation over several arms
and the update of every rung drawn would be this module's code around its ridge regression, which
is a few lines here; and its models are saved by pickling them, where a checkpoint holds plain data
that loading never executes (``state_dict``)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np

from .config import RETRIEVAL_BUDGET as BUDGET  # candidates per span: the 20

DEPTHS = (1, 2, 5, 10, 20)  # the rungs of each generator's ladder: how many of its best hits it gives
ALPHA = 0.5  # the confidence bonus's width in standard deviations of the ridge estimate
RIDGE = 1.0  # the ridge regression's prior precision (A starts as RIDGE * I)
STATE_VERSION = 1


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class BudgetBandit:
    """Allocates ``budget`` candidates across ``generators`` per context vector of width ``dim``."""

    def __init__(self, generators: Sequence[str], dim: int, budget: int = BUDGET, depths: Sequence[int] = DEPTHS,
                 alpha: float = ALPHA, ridge: float = RIDGE, seed: int = 0):
        self.generators = list(generators)
        if not self.generators or len(set(self.generators)) != len(self.generators):
            raise ValueError(f"generators must be distinct names, at least one, got {generators!r}")
        self.dim = _positive_int(dim, "dim")
        self.budget = _positive_int(budget, "budget")
        depths = sorted({_positive_int(k, "depths[]") for k in depths})
        if not depths:
            raise ValueError("depths must name at least one depth")
        # Rungs above the budget could never be drawn.
        self.depths = [k for k in depths if k <= self.budget] or [self.budget]
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge > 0):
            raise ValueError(f"ridge must be a finite number > 0, got {ridge!r}")
        self.alpha, self.ridge, self.seed = float(alpha), float(ridge), int(seed)
        G, L, d = len(self.generators), len(self.depths), self.dim
        self.A_inv = np.tile(np.eye(d) / self.ridge, (G, L, 1, 1))  # [G, L, d, d]
        self.b = np.zeros((G, L, d))  # [G, L, d]
        self.updates = 0
        # Every way to take each generator to a rung or none within the budget: with 5 generators and
        # 5 rungs, 1,666 of the 6^5; scoring all of them is one [M, G] gather per span.
        cost = np.array([0] + self.depths)
        grid = np.stack(np.meshgrid(*[np.arange(-1, L)] * G, indexing="ij"), -1).reshape(-1, G)
        spent = cost[grid + 1].sum(1)
        self._levels, self._spent = grid[spent <= self.budget], spent[spent <= self.budget]
        self.rng = np.random.default_rng(self.seed)

    # ---- estimates and allocation --------------------------------------------------------------

    def _context(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"context must be a vector of {self.dim} numbers, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("context holds NaN or infinite values")
        return x

    def estimates(self, x, explore: bool = False) -> np.ndarray:
        """[G, L]: P(gold in generator g's top depths[l] | x), the upper confidence bound with
        ``explore``, clipped to [0, 1] and made non-decreasing in depth."""
        x = self._context(x)
        theta = np.einsum("glij,glj->gli", self.A_inv, self.b)
        p = theta @ x
        if explore:
            p = p + self.alpha * np.sqrt(np.maximum(0.0, np.einsum("i,glij,j->gl", x, self.A_inv, x)))
        return np.maximum.accumulate(np.clip(p, 0.0, 1.0), axis=1)

    def allocate(self, x, explore: bool = False) -> Dict[str, int]:
        """{generator: how many candidates to draw} for context ``x`` (0 for those not drawn),
        at most ``budget`` in all: of the allocations that take each generator to a rung or to
        none (``allocations``), the one with the highest estimated P(gold drawn); ties go to the
        highest sum of the generators' estimates (more independent chances), then to the most
        candidates (a candidate left unused can only lose recall: the budget is what the ranker
        is sized for), then to the first in ``allocations``' order without ``explore`` (deterministic),
        at random (the seed's generator) with it."""
        p = np.concatenate([np.zeros((len(self.generators), 1)), self.estimates(x, explore)], 1)  # [G, 1 + L]
        got = p[np.arange(len(self.generators)), self._levels + 1]  # [M, G]
        hit = np.round(1.0 - np.prod(1.0 - got, axis=1), 9)
        chances = np.round(got.sum(1), 9)
        order = np.lexsort((np.arange(len(hit)), -self._spent, -chances, -hit))
        best = order[0]
        if explore:
            tied = order[(hit[order] == hit[best]) & (chances[order] == chances[best])
                         & (self._spent[order] == self._spent[best])]
            best = tied[int(self.rng.integers(len(tied)))]
        return {name: (self.depths[lv] if lv >= 0 else 0) for name, lv in zip(self.generators, self._levels[best])}

    @property
    def allocations(self) -> np.ndarray:
        """[M, G]: every allocation ``allocate`` chooses from, as each generator's rung (-1: none)."""
        return self._levels.copy()

    # ---- learning ------------------------------------------------------------------------------

    def update(self, x, allocation: Dict[str, int], gold_rank: Dict[str, Optional[int]]) -> None:
        """What drawing ``allocation`` for context ``x`` showed: ``gold_rank[g]``, the gold
        entity's 0-based rank among generator g's drawn hits, or None when it was not among them.
        Every rung up to the depth drawn learns whether the gold entity was within it. The rungs
        above learn nothing, found or not: learning 1 there when it was found and nothing when it
        was not would see only their successes (the estimates are made non-decreasing in depth
        instead, ``estimates``)."""
        x = self._context(x)
        unknown = set(allocation) - set(self.generators)
        if unknown:
            raise ValueError(f"allocation names generators this bandit does not have: {sorted(unknown)}")
        for g, name in enumerate(self.generators):
            k = allocation.get(name, 0)
            if k < 0 or k > self.budget:
                raise ValueError(f"allocation[{name!r}] must be in [0, {self.budget}], got {k}")
            if k == 0:
                continue
            rank = gold_rank.get(name)
            if rank is not None and not 0 <= rank < k:
                raise ValueError(f"gold_rank[{name!r}] must be in [0, {k}) (its allocation), got {rank}")
            for level, depth in enumerate(self.depths):
                if depth > k:
                    break
                self._learn(g, level, x, float(rank is not None and rank < depth))
        self.updates += 1

    def _learn(self, g: int, level: int, x: np.ndarray, reward: float) -> None:
        A_inv = self.A_inv[g, level]
        Ax = A_inv @ x
        A_inv -= np.outer(Ax, Ax) / (1.0 + x @ Ax)  # Sherman-Morrison: (A + x x^T)^-1
        self.b[g, level] += reward * x

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain JSON-able data: the settings and each arm's A^-1 and b as nested lists. The
        random state is not kept: a loaded bandit's exploration restarts from the seed."""
        return {"version": STATE_VERSION, "generators": list(self.generators), "dim": self.dim,
                "budget": self.budget, "depths": list(self.depths), "alpha": self.alpha, "ridge": self.ridge,
                "seed": self.seed, "updates": self.updates, "A_inv": self.A_inv.tolist(), "b": self.b.tolist()}

    @classmethod
    def from_state_dict(cls, d: dict) -> "BudgetBandit":
        """The bandit ``state_dict`` describes; ValueError naming the key that is missing or wrong."""
        if not isinstance(d, dict):
            raise ValueError(f"bandit state: expected an object, got {type(d).__name__}")
        for key in ("version", "generators", "dim", "budget", "depths", "alpha", "ridge", "seed", "updates", "A_inv",
                    "b"):
            if key not in d:
                raise ValueError(f"bandit state: {key}: missing")
        if d["version"] != STATE_VERSION:
            raise ValueError(f"bandit state: version: {d['version']!r}, this kgqa reads {STATE_VERSION}")
        out = cls(d["generators"], d["dim"], d["budget"], d["depths"], d["alpha"], d["ridge"], d["seed"])
        if out.depths != list(d["depths"]):
            raise ValueError(f"bandit state: depths: {d['depths']!r} is not sorted, distinct and within the budget")
        for key, shape in (("A_inv", out.A_inv.shape), ("b", out.b.shape)):
            try:
                value = np.asarray(d[key], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"bandit state: {key}: not an array of numbers") from None
            if value.shape != shape:
                raise ValueError(f"bandit state: {key}: shape {list(value.shape)}, expected {list(shape)}")
            if not np.isfinite(value).all():
                raise ValueError(f"bandit state: {key}: holds NaN or infinite values")
            setattr(out, key, value)
        if isinstance(d["updates"], bool) or not isinstance(d["updates"], int) or d["updates"] < 0:
            raise ValueError(f"bandit state: updates: expected an integer >= 0, got {d['updates']!r}")
        out.updates = d["updates"]
        return out


def recall_of(allocation: Dict[str, int], gold_rank: Dict[str, Optional[int]]) -> bool:
    """Whether drawing ``allocation`` finds the gold entity, given its 0-based rank in each
    generator's full list (None: not in it)."""
    return any(r is not None and r < allocation.get(g, 0) for g, r in gold_rank.items())


def fill(allocation: Dict[str, int], ranked: Dict[str, Sequence[int]], budget: int) -> Dict[str, int]:
    """How deep to take each generator's list of entities ``ranked[g]`` (best first) so that the
    drawn set holds up to ``budget`` distinct entities: first ``allocation[g]`` of each, then one
    more at a time from each generator in turn, the generators the allocation gave most first
    (the generators' order on a tie), until ``budget`` distinct entities or every list is taken.
    An allocation counts draws, and the generators often give the same names, so its distinct
    candidates fell short of the budget; filled, noisy recall at 20 rose from 96.58 to 97.38
    (docs/results.md "Candidate allocation by a contextual bandit")."""
    depth = {g: min(int(allocation.get(g, 0)), len(hits)) for g, hits in ranked.items()}
    seen = {e for g, hits in ranked.items() for e in hits[: depth[g]]}
    order = sorted(ranked, key=lambda g: -allocation.get(g, 0))  # stable: the generators' order on a tie
    while len(seen) < budget:
        grew = False
        for g in order:
            if len(seen) >= budget:
                break
            if depth[g] < len(ranked[g]):
                seen.add(ranked[g][depth[g]])
                depth[g] += 1
                grew = True
        if not grew:
            break
    return depth


def fixed(generators: Sequence[str], shares: Dict[str, int]) -> Dict[str, int]:
    """A fixed allocation: ``shares`` for the generators named, 0 for the others."""
    unknown = set(shares) - set(generators)
    if unknown:
        raise ValueError(f"shares names unknown generators: {sorted(unknown)}")
    return {g: int(shares.get(g, 0)) for g in generators}


def uniform(generators: Sequence[str], budget: int = BUDGET) -> Dict[str, int]:
    """The budget split evenly (the remainder to the first generators)."""
    n = len(generators)
    return {g: budget // n + (i < budget % n) for i, g in enumerate(generators)}


__all__ = ["BudgetBandit", "BUDGET", "DEPTHS", "ALPHA", "RIDGE", "recall_of", "fill", "fixed", "uniform"]
