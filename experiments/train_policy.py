"""The measurements behind kgqa.policy's defaults (docs/results.md, "Small KBs with defaults").

    python experiments/train_policy.py steps [--steps 25,50,...] [--seeds 0,1,2]
        The small KBs of experiments/data/small-kbs, each trained on all its training questions
        (no validation, the last epoch kept) for about N optimiser steps: test Hits@1 per KB and
        step count, the mean over the seeds. Gives MIN_STEPS.
    python experiments/train_policy.py valid [--sizes 100,200,400,800] [--small] [--seeds 0,1]
        The first N questions of the demo KB's training file (shuffled with seed 0), or with
        --small each small KB's train.txt, trained three ways with the default (auto) schedule:
        "all" every question, no validation; "held-out" 10% held out (whatever its size),
        early stopping with the default patience, the last best epoch kept; "held-out-p4" the
        same with patience 4 (the old default). Test Hits@1 on the demo's 808 test questions, or
        each small KB's test.txt. Gives MIN_VALID and the patience rule.

Both train in this process with the default encoder (all-MiniLM-L6-v2, frozen), loaded once and
asked once per distinct text (a cache in front of it; the model and its schedule are train()'s).
Everything else is TrainConfig's defaults with hops=2. Prints one table a run.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kgqa import KnowledgeBase, TrainConfig, cli, read_questions, trainer  # noqa: E402
from kgqa.encoder import DEFAULT_ENCODER, TransformerEncoder  # noqa: E402

SMALL = ROOT / "experiments" / "data" / "small-kbs"
DEMO = Path(cli.DEMO_DIR)


def shared_encoder():
    """trainer.build_encoder, for the default encoder, returns one frozen encoder that encodes a
    text once per process."""
    enc = TransformerEncoder(DEFAULT_ENCODER)
    memo = {}
    forward = enc.forward

    def cached(texts):
        todo = sorted({t for t in texts if t not in memo})
        if todo:
            for t, v in zip(todo, forward(todo)):
                memo[t] = v
        return torch.stack([memo[t] for t in texts])

    enc.forward = cached
    orig = trainer.build_encoder
    trainer.build_encoder = lambda name, texts, finetune=False: (
        enc if name == DEFAULT_ENCODER and not finetune else orig(name, texts, finetune))


def quiet(_):
    pass


def steps(args):
    rows = {}
    for kb_dir in sorted(p for p in SMALL.iterdir() if p.is_dir()):
        kb = KnowledgeBase.load(kb_dir / "kb.txt", use_cache=False)
        train_qs, _ = read_questions(kb_dir / "train.txt", kb)
        test_qs, _ = read_questions(kb_dir / "test.txt", kb)
        for n in args.steps:
            hits = []
            for seed in args.seeds:
                cfg = TrainConfig(hops=2, seed=seed)
                probe = trainer.batches(train_qs, cfg.batch_size, cfg.intersection, shuffle=False)
                cfg.epochs = max(1, round(n / len(probe)))
                t0 = time.perf_counter()
                qa = trainer.train(kb, train_qs, [], cfg, progress=False, log=quiet)
                hits.append(qa.evaluate(test_qs)["hits@1"])
                print(f"{kb_dir.name} steps {cfg.epochs * len(probe)} seed {seed}: test Hits@1 {hits[-1]:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            rows.setdefault(kb_dir.name, {})[n] = statistics.mean(hits)
    print(f"\nsteps (about) | " + " | ".join(rows))
    print("|".join(["---"] * (len(rows) + 2)))
    for n in args.steps:
        vals = [rows[k][n] for k in rows]
        print(f"{n} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | mean {statistics.mean(vals):.3f}")


WAYS = {
    "all": dict(valid_fraction=0.0),
    "held-out": dict(min_valid=1),
    "held-out-p4": dict(min_valid=1, patience=4),
}


def valid_sets(args):
    """(name, KB, training questions, test questions): demo subsets, or the small KBs (--small)."""
    if args.small:
        for kb_dir in sorted(p for p in SMALL.iterdir() if p.is_dir()):
            kb = KnowledgeBase.load(kb_dir / "kb.txt", use_cache=False)
            train_qs, _ = read_questions(kb_dir / "train.txt", kb)
            yield kb_dir.name, kb, train_qs, read_questions(kb_dir / "test.txt", kb)[0]
        return
    kb = KnowledgeBase.load(DEMO / "kb.txt", use_cache=False)
    pool, _ = read_questions(DEMO / "qa_train.txt", kb)
    random.Random(0).shuffle(pool)
    test_qs, _ = read_questions(DEMO / "qa_test.txt", kb)
    for n in args.sizes:
        yield f"demo {n}", kb, pool[:n], test_qs


def valid(args):
    table, names = {}, []
    for name, kb, train_qs, test_qs in valid_sets(args):
        names.append(name)
        for way, extra in WAYS.items():
            if way not in args.ways:
                continue
            hits, epochs = [], []
            for seed in args.seeds:
                cfg = TrainConfig(hops=2, seed=seed, **extra)
                t0 = time.perf_counter()
                qa = trainer.train(kb, train_qs, None, cfg, progress=False, log=quiet)
                hits.append(qa.evaluate(test_qs)["hits@1"])
                epochs.append(f"{qa.best_epoch}/{len(cfg.history)}")
                print(f"{name} {way} seed {seed}: test Hits@1 {hits[-1]:.3f}, kept epoch {epochs[-1]} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            table[(name, way)] = (statistics.mean(hits), ", ".join(epochs))
    ways = [w for w in WAYS if w in args.ways]
    print("\ntraining questions | " + " | ".join(ways) + " | kept epoch / epochs run, per seed")
    print("|".join(["---"] * (len(ways) + 2)))
    for name in names:
        print(f"{name} | "
              + " | ".join(f"{table[(name, w)][0]:.3f}" for w in ways) + " | "
              + "; ".join(f"{w}: {table[(name, w)][1]}" for w in ways))


def ints(text):
    return [int(x) for x in text.split(",")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("steps", "valid"))
    ap.add_argument("--steps", type=ints, default=[25, 50, 100, 200, 300, 400, 800])
    ap.add_argument("--sizes", type=ints, default=[100, 200, 400, 800])
    ap.add_argument("--small", action="store_true", help="valid: the small KBs instead of demo subsets")
    ap.add_argument("--ways", default=",".join(WAYS), type=lambda t: t.split(","), help="valid: which ways to train")
    ap.add_argument("--seeds", type=ints, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    args.seeds = args.seeds or ([0, 1, 2] if args.what == "steps" else [0, 1])
    torch.set_num_threads(args.threads)
    shared_encoder()
    steps(args) if args.what == "steps" else valid(args)


if __name__ == "__main__":
    main()
