"""The candidate-allocation bandit (kgqa.bandit) on the noisy-mention benchmark: its regret while it
learns, and candidate recall at the budget against each single generator, a uniform mix and the
best fixed mix.

For each hop's benchmark (experiments/noisy_mentions.py's DIR/N-hop/{noisy,clean}_meta.tsv: the
topic mention as written and the gold entity's KB name), the noisy and the clean mentions are
shuffled together (seed) and split in halves. The bandit plays the first half once, online, as in
training (``CandidatePolicy.learn``: probe, allocate with exploration, draw, learn), and the memory
generator is given each (mention, gold entity) after it is played (as training gives it the pairs
that led to correct answers: here every pair, an upper bound). On the second half the bandit
exploits; recall there is for the noisy and the clean mentions apart, by kind. Each allocation's
recall is reported twice: its draws alone, and "filled" (what ``CandidatePolicy.draw`` draws: then
more from the generators until the budget's worth of distinct entities, ``kgqa.bandit.fill``).

Regret while learning: per span, 1 when the best allocation in hindsight for that span drew the
gold entity (one generator ranks it within the budget) and the bandit's did not, and against the
best fixed mix in hindsight (the one allocation with the highest recall on the whole first half),
its recall minus the bandit's. Reported per quarter of the first half: sublinear regret shows as
falling regret per span.

    python experiments/bandit_recall.py /work/shared/data/metaqa/kb.txt runs/noisy --hops 1 2 --seed 0
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kgqa.bandit import BUDGET, fill, fixed, recall_of, uniform  # noqa: E402
from kgqa.kb import KnowledgeBase  # noqa: E402
from kgqa.retrieval import MemoryIndex, Retrieval  # noqa: E402
from kgqa.retrieval_policy import LEARN_CHUNK, CandidatePolicy  # noqa: E402


def read_meta(path, kb):
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        kind, mention, _, _, gold = line.split("\t")
        if gold in kb.entity_ids:
            out.append((kind, mention, kb.entity_ids[gold]))
    return out


def ranks_at(policy, mentions, golds, budget, lists=None):
    """Per mention, per generator: the gold entity's rank in its top ``budget`` (None: not there);
    ``lists`` (a list) gets per mention each generator's top ``budget`` entities."""
    out = []
    for i in range(0, len(mentions), LEARN_CHUNK):
        rows = policy.retrieval.search(mentions[i : i + LEARN_CHUNK], {g: budget for g in policy.generators})
        for row, gold in zip(rows, golds[i : i + LEARN_CHUNK]):
            out.append({g: next((r for r, h in enumerate(hits) if h.entity == gold), None) for g, hits in row.items()})
            if lists is not None:
                lists.append({g: [h.entity for h in hits] for g, hits in row.items()})
    return out


def filled_recall(allocation, ranked, gold, budget) -> bool:
    """Whether what ``CandidatePolicy.draw`` draws for ``allocation`` (the allocation, then
    ``kgqa.bandit.fill`` up to ``budget`` distinct entities) holds ``gold``."""
    depth = fill(allocation, ranked, budget)
    return any(gold in hits[: depth[g]] for g, hits in ranked.items())


def ladder_allocations(policy):
    b = policy.bandit
    return [{g: (b.depths[lv] if lv >= 0 else 0) for g, lv in zip(b.generators, levels)} for levels in b.allocations]


def run_hop(kb, encoder, hop_dir: Path, seed: int, budget: int, log, limit: int = 0) -> dict:
    rows = [("noisy", *r) for r in read_meta(hop_dir / "noisy_meta.tsv", kb)] + \
           [("clean", *r) for r in read_meta(hop_dir / "clean_meta.tsv", kb)]
    rng = np.random.default_rng(seed)
    rng.shuffle(rows)
    if limit:
        rows = rows[:limit]
    half = len(rows) // 2
    train, test = rows[:half], rows[half:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        retrieval = Retrieval.build(kb.entities, encoder=encoder, memory=MemoryIndex(), aliases=kb.aliases)
    policy = CandidatePolicy(retrieval, kb.entities, budget=budget, seed=seed)
    gens = policy.generators
    # Learning, online: a chunk is played (one batched search), then its pairs join the memory.
    t0 = time.perf_counter()
    hit_bandit, hit_oracle, train_ranks = [], [], []
    for i in range(0, len(train), LEARN_CHUNK):
        chunk = train[i : i + LEARN_CHUNK]
        mentions, golds = [r[2] for r in chunk], [r[3] for r in chunk]
        train_ranks += ranks_at(policy, mentions, golds, budget)  # before the memory knows them
        hit_bandit += policy.learn(mentions, [{g} for g in golds])
        policy.remember(zip(mentions, golds))
    learn_s = time.perf_counter() - t0
    hit_oracle = [any(r is not None for r in rk.values()) for rk in train_ranks]
    allocs = ladder_allocations(policy)
    best_fixed = max(allocs, key=lambda a: (np.mean([recall_of(a, rk) for rk in train_ranks]), -sum(a.values())))
    fixed_hits = [recall_of(best_fixed, rk) for rk in train_ranks]
    quarters = np.array_split(np.arange(len(train)), 4)
    regret = {"per_span_vs_oracle_by_quarter": [float(np.mean(np.array(hit_oracle)[q] & ~np.array(hit_bandit)[q]))
                                                for q in quarters],
              "per_span_vs_best_fixed_by_quarter": [float(np.mean(np.array(fixed_hits, float)[q]
                                                                  - np.array(hit_bandit, float)[q])) for q in quarters],
              "cumulative_vs_oracle": int(sum(o and not b for o, b in zip(hit_oracle, hit_bandit))),
              "cumulative_vs_best_fixed": float(sum(fixed_hits) - sum(hit_bandit)), "spans": len(train)}
    # Evaluation: the bandit exploits; every baseline from the same rankings.
    t0 = time.perf_counter()
    mentions, golds = [r[2] for r in test], [r[3] for r in test]
    test_lists = []
    test_ranks = ranks_at(policy, mentions, golds, budget, test_lists)
    X, _ = policy.contexts(mentions)
    chosen = [policy.bandit.allocate(x) for x in X]
    eval_s = time.perf_counter() - t0
    baselines = {f"{g} only": fixed(gens, {g: budget}) for g in gens}
    baselines["uniform"] = uniform(gens, budget)
    baselines["best fixed mix (on the first half)"] = best_fixed
    result = {"generators": gens, "missing": policy.retrieval.missing, "train_spans": len(train),
              "test_spans": len(test), "learn_seconds": round(learn_s, 1), "eval_seconds": round(eval_s, 1),
              "best_fixed": best_fixed, "regret": regret, "recall": {}, "mean_candidates": {}}
    for split in ("noisy", "clean"):
        idx = [i for i, r in enumerate(test) if r[0] == split]
        table = {"bandit": float(np.mean([recall_of(chosen[i], test_ranks[i]) for i in idx]))}
        for name, a in baselines.items():
            table[name] = float(np.mean([recall_of(a, test_ranks[i]) for i in idx]))
        table["oracle"] = float(np.mean([any(r is not None for r in test_ranks[i].values()) for i in idx]))
        # what the policy draws: each allocation, then more until the budget's worth of distinct entities
        table["bandit, filled"] = float(np.mean([filled_recall(chosen[i], test_lists[i], golds[i], budget) for i in idx]))
        for name, a in baselines.items():
            table[f"{name}, filled"] = float(np.mean([filled_recall(a, test_lists[i], golds[i], budget) for i in idx]))
        by_kind = defaultdict(list)
        for i in idx:
            by_kind[test[i][1]].append(filled_recall(chosen[i], test_lists[i], golds[i], budget))
        table["bandit, filled, by kind"] = {k: round(float(np.mean(v)), 4) for k, v in sorted(by_kind.items())}
        result["recall"][split] = table
        result["mean_candidates"][split] = float(np.mean([sum(chosen[i].values()) for i in idx]))
    log(json.dumps(result))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb")
    ap.add_argument("benchmark", help="experiments/noisy_mentions.py's --out")
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=BUDGET)
    ap.add_argument("--no-dense", action="store_true", help="leave the dense generator out (no encoder)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N mentions after the shuffle (a smoke test)")
    ap.add_argument("--out", help="also write the results here (JSON)")
    args = ap.parse_args(argv)
    kb = KnowledgeBase.load(args.kb)
    encoder = None
    if not args.no_dense:
        from kgqa.config import DEFAULT_ENCODER
        from kgqa.encoder import build_encoder

        encoder = build_encoder(DEFAULT_ENCODER, [], False)
    results = {}
    for hop in args.hops:
        results[f"{hop}-hop"] = run_hop(kb, encoder, Path(args.benchmark) / f"{hop}-hop", args.seed, args.budget,
                                        lambda s: print(f"{hop}-hop: {s}", flush=True), args.limit)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
