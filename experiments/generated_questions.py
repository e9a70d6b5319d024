"""How far a model trained only on generated questions gets on hand-written ones: for a folder
holding a KB (kb.txt) and hand-written test questions (test.txt: question<TAB>answer1|answer2,
topic entities in [brackets]), runs

    kgqa make-questions --kb DIR/kb.txt --hops H --two-entity --out OUT/generated.txt
    kgqa train --kb DIR/kb.txt --train OUT/generated.txt --hops H --out OUT/model   (defaults)
    kgqa eval --model OUT/model --questions DIR/test.txt --json

and prints the test Hits@1. The commands run this checkout's kgqa (PYTHONPATH is the repository).
OUT defaults to runs/experiments/generated-questions/<DIR's name>-<H>hop; its model folder is
replaced on each run.

Usage: python experiments/generated_questions.py --kb-dir DIR [--test FILE] [--hops 2] [--n 2000]
       [--seed 0] [--no-two-entity] [--out OUT]
e.g. the demo KB (its test questions come from kgqa/demo_data.py's own templates, not by hand):
       python experiments/generated_questions.py --kb-dir kgqa/data/demo --test kgqa/data/demo/qa_test.txt"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(args, env) -> str:
    """Runs ``python -m kgqa ARGS``, echoing its output; its stdout, or exits with its status."""
    print("$ kgqa " + " ".join(str(a) for a in args), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kgqa", *map(str, args)], env=env, stdout=subprocess.PIPE, text=True)
    print(done.stdout, end="")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb-dir", type=Path, required=True, help="folder holding kb.txt and test.txt")
    ap.add_argument("--test", type=Path, help="the hand-written test questions (default: --kb-dir's test.txt)")
    ap.add_argument("--hops", type=int, choices=(1, 2, 3), default=2,
                    help="make-questions' and train's --hops (default 2)")
    ap.add_argument("--n", type=int, default=2000, help="how many questions to generate (default 2000)")
    ap.add_argument("--seed", type=int, default=0, help="make-questions' --seed (default 0)")
    ap.add_argument("--no-two-entity", action="store_true", help="no 2-entity questions (default: with them)")
    ap.add_argument("--no-word-check", action="store_true", help="kgqa train's --no-word-check (default: off)")
    ap.add_argument("--out", type=Path, help="output folder (default runs/experiments/generated-questions/"
                                             "<kb-dir's name>-<hops>hop)")
    args = ap.parse_args()
    kb, test = args.kb_dir / "kb.txt", args.test or args.kb_dir / "test.txt"
    if not kb.is_file():
        ap.error(f"--kb-dir {args.kb_dir}: no file kb.txt")
    if not test.is_file():
        ap.error(f"--test {test}: no such file" if args.test else f"--kb-dir {args.kb_dir}: no file test.txt")
    name = f"{args.kb_dir.resolve().name}-{args.hops}hop"
    out = args.out or REPO / "runs" / "experiments" / "generated-questions" / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "model", ignore_errors=True)  # this script's own model of an earlier run
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))

    generated = out / "generated.txt"
    run(["make-questions", "--kb", kb, "--hops", args.hops, "--n", args.n, "--seed", args.seed, "--out", generated,
         "--qtype-out", out / "generated_qtype.txt"] + ([] if args.no_two_entity else ["--two-entity"]), env)
    run(["train", "--kb", kb, "--train", generated, "--hops", args.hops, "--out", out / "model", "--no-progress"]
        + (["--no-word-check"] if args.no_word_check else []), env)
    printed = run(["eval", "--model", out / "model", "--questions", test, "--json"], env)
    result = json.loads(printed.strip().splitlines()[-1])  # --json: the metrics on the last line
    print(f"\n{kb}: a model trained on generated questions only ({args.hops} hops), tested on {test}: "
          f"Hits@1 {result['hits@1']:.4f}, answer-set F1 {result['f1']:.4f}, answered {100 * result['answered']:.0f}% "
          f"(n = {result['n']})")


if __name__ == "__main__":
    main()
