"""kgqa.bandit: the budgeted contextual bandit, on a synthetic problem whose best allocation is
known (three generators, three kinds of span, each kind best served by a different mix)."""
import itertools
import json

import numpy as np
import pytest

from kgqa.bandit import BudgetBandit, fill, fixed, recall_of, uniform

GENS = ["a", "b", "c"]
# Per kind of span (row) and generator (column): the chance the generator finds the gold entity at
# all, and how far down it then is (its rank uniform in [0, SPREAD)). Kind 0 needs a little of "a";
# kind 1 most of "b" and a little of "c"; kind 2 all 20 of "c" (no mix of smaller shares does as well).
FOUND = np.array([[0.95, 0.2, 0.1], [0.1, 0.9, 0.5], [0.3, 0.05, 0.9]])
SPREAD = np.array([[2, 5, 5], [3, 10, 1], [5, 5, 20]])


def expected_recall(kind, alloc):
    miss = 1.0
    for g, name in enumerate(GENS):
        miss *= 1 - FOUND[kind, g] * min(1.0, alloc[name] / SPREAD[kind, g])
    return 1 - miss


def context(kind):
    x = np.zeros(4)
    x[0], x[1 + kind] = 1.0, 1.0  # a bias and the kind, one-hot: each rung's P is linear in it
    return x


def best_recall(kind, bandit):
    return max(expected_recall(kind, dict(zip(GENS, (bandit.depths[lv] if lv >= 0 else 0 for lv in levels))))
               for levels in bandit.allocations)


def run(bandit, rounds, seed=1):
    """Plays ``rounds`` spans (kinds at random), learning from each; returns the per-round regret."""
    rng = np.random.default_rng(seed)
    best = [best_recall(k, bandit) for k in range(3)]
    regret = []
    for _ in range(rounds):
        kind = int(rng.integers(3))
        x = context(kind)
        alloc = bandit.allocate(x, explore=True)
        assert sum(alloc.values()) <= bandit.budget
        regret.append(best[kind] - expected_recall(kind, alloc))
        ranks = {}
        for g, name in enumerate(GENS):
            r = int(rng.integers(SPREAD[kind, g])) if rng.random() < FOUND[kind, g] else None
            ranks[name] = r if r is not None and r < alloc[name] else None  # what the draw shows
        bandit.update(x, alloc, ranks)
    return np.array(regret)


@pytest.fixture(scope="module")
def played():
    bandit = BudgetBandit(GENS, 4, budget=20, seed=0)
    return bandit, run(bandit, 1500)


def test_regret_is_sublinear(played):
    _, regret = played
    first, last = regret[:500].sum(), regret[-500:].sum()
    assert first > 1.0  # it had something to learn
    assert last < 0.2 * first  # linear regret would make them about equal


def test_learned_policy_beats_uniform_and_each_single_generator(played):
    bandit, _ = played
    for kind in range(3):
        got = expected_recall(kind, bandit.allocate(context(kind)))
        assert got == pytest.approx(best_recall(kind, bandit), abs=0.01)
    learned = np.mean([expected_recall(k, bandit.allocate(context(k))) for k in range(3)])
    assert learned > np.mean([expected_recall(k, uniform(GENS, 20)) for k in range(3)]) + 0.05
    for g in GENS:
        assert learned > np.mean([expected_recall(k, fixed(GENS, {g: 20})) for k in range(3)]) + 0.05


def test_exploitation_is_deterministic_and_state_round_trips(played):
    bandit, _ = played
    x = context(2) + 0.3
    first = bandit.allocate(x)
    assert all(bandit.allocate(x) == first for _ in range(3))
    state = json.loads(json.dumps(bandit.state_dict()))  # plain JSON data
    again = BudgetBandit.from_state_dict(state)
    for kind in range(3):
        assert again.allocate(context(kind)) == bandit.allocate(context(kind))
        np.testing.assert_allclose(again.estimates(context(kind), explore=True),
                                   bandit.estimates(context(kind), explore=True))
    assert again.updates == bandit.updates == 1500


def test_update_learns_only_the_rungs_drawn():
    bandit = BudgetBandit(GENS, 2, budget=20, depths=(1, 5, 20))
    x = np.array([1.0, 0.0])
    for _ in range(50):
        bandit.update(x, {"a": 5, "b": 0, "c": 0}, {"a": 2})  # found at rank 2 of 5
    p = bandit.estimates(x)
    assert p[0, 0] < 0.05 and p[0, 1] > 0.9  # not in the top 1, in the top 5
    assert p[0, 2] == p[0, 1]  # the top 20 was never drawn: only the non-decreasing floor
    assert (p[1:] == 0).all()
    assert recall_of({"a": 5}, {"a": 2}) and not recall_of({"a": 2}, {"a": 2})


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dim"):
        BudgetBandit(GENS, 0)
    with pytest.raises(ValueError, match="budget"):
        BudgetBandit(GENS, 3, budget=-1)
    with pytest.raises(ValueError, match="generators"):
        BudgetBandit(["a", "a"], 3)
    with pytest.raises(ValueError, match="alpha"):
        BudgetBandit(GENS, 3, alpha=float("nan"))
    bandit = BudgetBandit(GENS, 3)
    with pytest.raises(ValueError, match="context"):
        bandit.allocate([1.0, 2.0])
    with pytest.raises(ValueError, match="context"):
        bandit.allocate([1.0, float("inf"), 0.0])
    with pytest.raises(ValueError, match="generators this bandit does not have"):
        bandit.update([1, 0, 0], {"z": 3}, {})
    with pytest.raises(ValueError, match=r"gold_rank\['a'\]"):
        bandit.update([1, 0, 0], {"a": 2}, {"a": 5})
    state = bandit.state_dict()
    for key, value, match in (("b", [[0.0]], "b: shape"), ("A_inv", "x", "A_inv"), ("version", 9, "version")):
        with pytest.raises(ValueError, match=match):
            BudgetBandit.from_state_dict({**state, key: value})
    with pytest.raises(ValueError, match="updates: missing"):
        BudgetBandit.from_state_dict({k: v for k, v in state.items() if k != "updates"})
    with pytest.raises(ValueError, match="unknown generators"):
        fixed(GENS, {"z": 1})


def test_allocations_cover_the_budget_exactly_once():
    bandit = BudgetBandit(GENS, 1, budget=7, depths=(1, 2, 5, 10))
    assert bandit.depths == [1, 2, 5]  # 10 is above the budget
    rows = {tuple(r) for r in bandit.allocations}
    expect = {ks for ks in itertools.product(range(-1, 3), repeat=3)
              if sum([0, 1, 2, 5][k + 1] for k in ks) <= 7}
    assert rows == expect and len(rows) == len(bandit.allocations)


def test_fill_takes_more_until_the_budget_of_distinct_entities():
    ranked = {"alias": [1, 2], "fuzzy": [1, 2, 3, 4, 5, 6], "dense": [7, 3, 8]}
    # alias's 2 (all it has) and fuzzy's first 2 are the same two entities: then fuzzy and dense
    # (alias has no more) take turns until 5 distinct
    assert fill({"alias": 10, "fuzzy": 2, "dense": 0}, ranked, 5) == {"alias": 2, "fuzzy": 4, "dense": 1}
    # an allocation that already draws the budget is left as it is
    assert fill({"alias": 0, "fuzzy": 5, "dense": 0}, ranked, 5) == {"alias": 0, "fuzzy": 5, "dense": 0}
    # every list taken: fewer than the budget
    assert fill({"alias": 1}, ranked, 20) == {"alias": 2, "fuzzy": 6, "dense": 3}
    distinct = lambda d: {e for g, hits in ranked.items() for e in hits[: d[g]]}  # noqa: E731
    assert len(distinct(fill({"dense": 1}, ranked, 7))) == 7
