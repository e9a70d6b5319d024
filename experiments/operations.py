"""Counting and superlative questions (issue 20; docs/results.md "Operations").

Trains one model on path questions and questions with operations together (gold entities,
--threads 1, --max-minutes caps) and prints Hits@1 per question kind of held-out questions (exact
match for counts), as JSON lines. Two sources:

- demo: the embedded demo (kgqa/data/demo: qa_* path questions, qa_ops_* counts, superlatives
  over the release year, 2-entity counts), a scratch encoder by default;
- files: --kb, --train FILE[:QTYPE]... --test FILE[:QTYPE]... (e.g. DATA's MetaQA sets).

--gate G replaces kgqa.operations.GATE (0: no gate: every weight of the path's set is a member),
A model with operations is also scored with no gate at inference (what leaked weights do to it).
--operations off trains paths only (the same files; count questions are then left out of training
and scored 0), which gives the "without" side of a comparison.

Usage: python experiments/operations.py demo [--encoder scratch] [--epochs 30] [--gate 0.5]
       python experiments/operations.py files --kb KB --hops N --train F[:Q] ... --test F[:Q] ...
       (common: --operations auto|on|off, --max-minutes M, --seed S, --save DIR, --tag T)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgqa import KnowledgeBase, TrainConfig, read_questions, train  # noqa: E402
from kgqa import operations  # noqa: E402
from kgqa.cli import DEMO_DIR  # noqa: E402
from kgqa.config import OPERATIONS_MODES, RESTRICT_HOPS_MODES  # noqa: E402
from kgqa.op_questions import COUNT, COUNT_2ENTITY  # noqa: E402

COUNT_KINDS = (COUNT, COUNT_2ENTITY)
SMALL_COUNT = 10


def _pairs(specs):
    out = []
    for spec in specs:
        path, _, qtype = spec.partition(":")
        out.append((Path(path), Path(qtype) if qtype else None))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", choices=("demo", "files"))
    ap.add_argument("--kb")
    ap.add_argument("--train", nargs="*", default=[])
    ap.add_argument("--valid", nargs="*", default=[])
    ap.add_argument("--test", nargs="*", default=[])
    ap.add_argument("--hops", type=int, default=2)
    ap.add_argument("--encoder", default=None, help="default: scratch for the demo, the default encoder for files")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--operations", default=TrainConfig().operations, choices=OPERATIONS_MODES)
    ap.add_argument("--gate", type=float, default=operations.GATE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--restrict-hops", default=TrainConfig().restrict_hops, choices=RESTRICT_HOPS_MODES,
                    help="TrainConfig.restrict_hops")
    ap.add_argument("--no-topic-types", action="store_true", help="TrainConfig.topic_types off")
    ap.add_argument("--save", default=None, help="save the trained model to this directory (kgqa.checkpoint)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    operations.GATE = args.gate
    if args.source == "demo":
        kb_path = DEMO_DIR / "kb.txt"
        split = {part: [(DEMO_DIR / f"{p}_{part}.txt", DEMO_DIR / f"{p}_{part}_qtype.txt") for p in ("qa", "qa_ops")]
                 for part in ("train", "valid", "test")}
        encoder, epochs = args.encoder or "scratch", args.epochs or 30
    else:
        kb_path = Path(args.kb)
        split = {"train": _pairs(args.train), "valid": _pairs(args.valid), "test": _pairs(args.test)}
        encoder, epochs = args.encoder or TrainConfig().encoder, args.epochs
    kb = KnowledgeBase.load(kb_path)
    read = {part: [q for f, t in files for q in read_questions(f, kb, t)[0]] for part, files in split.items()}
    cfg = TrainConfig(hops=args.hops, encoder=encoder, epochs=epochs, seed=args.seed, operations=args.operations,
                      max_minutes=args.max_minutes, restrict_hops=args.restrict_hops,
                      topic_types=not args.no_topic_types)
    t0 = time.perf_counter()
    qa = train(kb, read["train"], read["valid"] or None, cfg, progress=False, log=lambda s: print(s, file=sys.stderr))
    if args.save:
        qa.save(args.save, str(kb_path))
    row = {"tag": args.tag, "source": args.source, "gate": args.gate, "operations": args.operations,
           "restrict_hops": cfg.restrict_hops, "topic_types": cfg.topic_types,
           "model_restrict_hops": qa.model.restrict_hops,
           "model_operations": qa.operations, "encoder": encoder, "seed": args.seed,
           "train_minutes": round((time.perf_counter() - t0) / 60, 2), "epochs": len(cfg.history)}
    for f, t in split["test"]:
        qs, _ = read_questions(f, kb, t)
        r = qa.evaluate(qs)
        kinds = r.get("per_qtype", {})
        row[f.name] = {"n": r["n"], "hits@1": r["hits@1"], "f1": r["f1"],
                       "per_qtype": {k: {"n": v["n"], "hits@1": v["hits@1"]} for k, v in kinds.items()}}
        # issue 20's count target is on questions whose true count is at most SMALL_COUNT
        small = [q for q in qs if q.qtype in COUNT_KINDS and q.count is not None and q.count <= SMALL_COUNT]
        if small:
            rs = qa.evaluate(small).get("per_qtype", {})
            row[f.name][f"count_at_most_{SMALL_COUNT}"] = {k: {"n": v["n"], "hits@1": v["hits@1"]} for k, v in rs.items()}
    if qa.operations:  # the same model with no gate at inference: what the gate keeps out (leaked weights)
        operations.GATE, gated = 0.0, operations.GATE
        for f, t in split["test"]:
            qs, _ = read_questions(f, kb, t)
            r = qa.evaluate(qs)
            row[f.name]["no_gate_at_inference"] = {k: v["hits@1"] for k, v in r.get("per_qtype", {}).items()}
        operations.GATE = gated
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
