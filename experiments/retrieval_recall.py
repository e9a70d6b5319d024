"""Candidate recall of the gold topic entity on the noisy-mention benchmark
(experiments/noisy_mentions.py), per perturbation kind and on the clean questions:

- each generator of kgqa.retrieval on the gold mention's text, at k = 1, 5, 20;
- fixed mixes at a budget of 20 (the union of each generator's best few);
- today's resolver: the union of kgqa.mentions.find_mentions' candidates over the whole plain
  question (up to 16 spans x 10 entities; its mean size is reported), and the alias index's own
  lookup (exact, normalised, trigram) of the gold mention's text at 20.

The memory generator is filled from the even lines' (mention, gold entity) pairs, noisy and clean,
and measured on the odd lines only (its row says so); the others on all lines. Usage:

    python experiments/noisy_mentions.py METAQA_DIR --hops 1 2 --seed 0 --out runs/noisy
    PYTHONPATH=. python experiments/retrieval_recall.py METAQA_DIR runs/noisy --hops 1 2 --out runs/recall.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

from kgqa.kb import KnowledgeBase
from kgqa.mention_noise import KINDS  # the benchmark's kinds (experiments/noisy_mentions.py)
from kgqa.mentions import find_mentions
from kgqa.retrieval import GENERATORS, MemoryIndex, Retrieval

KS = (1, 5, 20)
BUDGET = 20


def mixes(available: Sequence[str]) -> Dict[str, Dict[str, int]]:
    """Fixed mixes at BUDGET: how many to take from each generator's ranked list (taken in
    GENERATORS order, duplicates dropped, so the union may hold fewer than BUDGET)."""
    gens = [g for g in available if g != "memory"]
    equal = {g: BUDGET // len(gens) + (i < BUDGET % len(gens)) for i, g in enumerate(gens)}
    out = {"equal split": equal, "alias 20, then fuzzy": {"alias": BUDGET, "fuzzy": BUDGET}}
    out["alias 5 + fuzzy 10 + lexical 5"] = {"alias": 5, "fuzzy": 10, "lexical": 5}
    if "dense" in gens:
        out["alias 5 + fuzzy 8 + lexical 4 + dense 3"] = {"alias": 5, "fuzzy": 8, "lexical": 4, "dense": 3}
    return out


def take(ranked: Dict[str, List[int]], mix: Dict[str, int], budget: int = BUDGET) -> List[int]:
    out: List[int] = []
    for g in GENERATORS:
        for e in ranked.get(g, [])[: mix.get(g, 0)]:
            if len(out) >= budget:
                return out
            if e not in out:
                out.append(e)
    return out


def read_meta(path: Path):
    rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return [(kind, mention, int(s), int(e), gold) for kind, mention, s, e, gold in rows]


def pct(hits: int, n: int) -> float:
    return round(100.0 * hits / max(1, n), 2)


def evaluate(kb: KnowledgeBase, retrieval: Retrieval, folder: Path, which: str) -> dict:
    meta = read_meta(folder / f"{which}_meta.tsv")
    questions = [line.split("\t", 1)[0] for line in (folder / f"{which}.txt").read_text(encoding="utf-8").splitlines()]
    gold = [kb.entity_ids.get(g, -1) for *_, g in meta]
    mentions = [m for _, m, *_ in meta]
    kinds = [k for k, *_ in meta]
    rows: Dict[str, Dict[str, List[bool]]] = {}  # row -> "k@K" -> per question
    ranked = {}
    times = {}
    for g in retrieval.generators:
        t0 = time.perf_counter()
        ranked[g] = [[h.entity for h in hits] for hits in retrieval.generators[g].search(mentions, BUDGET)]
        times[g] = (time.perf_counter() - t0) / len(mentions)
    for g in ranked:
        rows[g] = {f"@{k}": [gd in r[:k] for gd, r in zip(gold, ranked[g])] for k in KS}
    per_q = [{g: ranked[g][i] for g in ranked} for i in range(len(mentions))]
    for name, mix in mixes(list(ranked)).items():
        rows[f"mix: {name}"] = {f"@{BUDGET}": [gd in take(r, mix) for gd, r in zip(gold, per_q)]}
    best = max((g for g in ranked if g != "memory"), key=lambda g: sum(rows[g][f"@{BUDGET}"]))
    rows[f"mix: all {BUDGET} from the best single ({best})"] = {f"@{BUDGET}": rows[best][f"@{BUDGET}"]}
    aliases = kb.aliases
    rows["today: AliasIndex.lookup (mention)"] = {
        f"@{k}": [gd in [c.entity for c in aliases.lookup(m, limit=BUDGET)][:k] for gd, m in zip(gold, mentions)]
        for k in KS}
    t0 = time.perf_counter()
    found = [find_mentions(q, aliases) for q in questions]
    times["today: find_mentions (question)"] = (time.perf_counter() - t0) / len(questions)
    union = [{e for m in ms for e in m.entities} for ms in found]
    rows["today: find_mentions (question)"] = {"all": [gd in u for gd, u in zip(gold, union)]}
    sizes = [len(u) for u in union]
    # kinds and the clean questions: recall per row and cutoff
    out = {"questions": len(meta), "missing_gold": sum(g < 0 for g in gold), "seconds_per_mention": times,
           "today_mean_candidates": round(sum(sizes) / max(1, len(sizes)), 1), "best_single": best, "rows": {}}
    odd = [i % 2 == 1 for i in range(len(meta))]
    for row, cuts in rows.items():
        out["rows"][row] = {}
        for cut, ok in cuts.items():
            pick = odd if row == "memory" else [True] * len(ok)
            cell = {"all": pct(sum(o for o, p in zip(ok, pick) if p), sum(pick))}
            for kind in KINDS:
                sel = [o for o, p, k in zip(ok, pick, kinds) if p and k == kind]
                cell[kind] = pct(sum(sel), len(sel))
            out["rows"][row][cut] = cell
    return out


def fill_memory(kb: KnowledgeBase, folder: Path) -> MemoryIndex:
    mem = MemoryIndex()
    for which in ("noisy", "clean"):
        for i, (_, mention, _, _, gold) in enumerate(read_meta(folder / f"{which}_meta.tsv")):
            if i % 2 == 0 and gold in kb.entity_ids:
                mem.add(mention, kb.entity_ids[gold])
    return mem


def table(res: dict, which: str) -> str:
    lines = [f"| {which} | " + " | ".join(("all",) + KINDS) + " |", "|---|" + "---:|" * (len(KINDS) + 1)]
    for row, cuts in res["rows"].items():
        for cut, cell in cuts.items():
            label = f"{row} {cut}" + (" (odd lines)" if row == "memory" else "")
            lines.append(f"| {label} | " + " | ".join(f"{cell[c]:.1f}" for c in ("all",) + KINDS) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metaqa", type=Path, help="MetaQA's folder (kb.txt)")
    ap.add_argument("noisy", type=Path, help="experiments/noisy_mentions.py's --out")
    ap.add_argument("--hops", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2", help="for the dense generator; 'none' leaves it out")
    ap.add_argument("--out", type=Path, help="all numbers as JSON")
    ap.add_argument("--threads", type=int, default=1, help="torch's and faiss' threads (the machine is shared)")
    args = ap.parse_args(argv)
    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    kb = KnowledgeBase.load(args.metaqa / "kb.txt")
    encoder = None
    if args.encoder != "none":
        from kgqa.encoder import TransformerEncoder

        encoder = TransformerEncoder(args.encoder)
    results = {}
    for hop in args.hops:
        folder = args.noisy / f"{hop}-hop"
        t0 = time.perf_counter()
        retrieval = Retrieval.build(kb.entities, encoder=encoder, memory=fill_memory(kb, folder), aliases=kb.aliases)
        print(f"{hop}-hop: built the generators over {kb.num_entities} names in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for which in ("clean", "noisy"):
            res = evaluate(kb, retrieval, folder, which)
            results[f"{hop}-hop {which}"] = res
            print(f"\n### {hop}-hop, {which}: {res['questions']} questions; gold recall (%)\n")
            print(table(res, which))
            print(f"\nbest single: {res['best_single']}; today's find_mentions: {res['today_mean_candidates']} "
                  f"candidates a question on average; ms per mention: "
                  + ", ".join(f"{g} {1000 * s:.2f}" for g, s in res["seconds_per_mention"].items()), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
