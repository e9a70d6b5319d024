"""Hand-written small KBs trained with `kgqa train`'s defaults: test Hits@1 per KB.

    python experiments/small_kbs.py [--code CHECKOUT] [--threads N] [--kbs orgchart,library]
    python experiments/small_kbs.py --check

For each folder of experiments/data/small-kbs (kb.txt, train.txt, test.txt, and the question
types of each question, *_qtype.txt), runs

    python -m kgqa train --kb kb.txt --train train.txt --hops 2 --out DIR --no-progress
    python -m kgqa eval --model DIR --questions test.txt --qtype test_qtype.txt --json

with nothing tuned (the default encoder, epochs, patience and validation), in CHECKOUT (default:
this one), so that the same data measure older code: `git worktree add /tmp/before REV`, copy the
built extension (kgqa_kernels/_C*.so) in, and pass --code /tmp/before. --threads N passes
`--threads N` to train (the default: torch's). Prints a Markdown table: test Hits@1, per question
kind (1hop, 2hop, 2entity), the epoch kept of those run, and the training time; the models and
logs go under runs/experiments/small-kbs/ (or OUT=dir).

--check: recomputes every answer set of train.txt and test.txt from its question type (the
relation path from the bracketed entities: `r` forward, `r~inv` backward, `>` the next hop, `+`
one path per entity, intersected; the topic entities are never answers) and fails on a mismatch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "experiments" / "data" / "small-kbs"
MENTION = re.compile(r"\[([^\]]+)\]")
KINDS = ("1hop", "2hop", "2entity")


def facts(kb_dir: Path):
    return [tuple(line.split("|")) for line in (kb_dir / "kb.txt").read_text(encoding="utf-8").splitlines() if line]


def follow(kb, start: str, path: str) -> set:
    here = {start}
    for step in path.split(">"):
        inverse = step.endswith("~inv")
        rel = step[: -len("~inv")] if inverse else step
        here = {s if inverse else o for s, r, o in kb if r == rel and (o if inverse else s) in here}
    return here


def check(kb_dir: Path) -> int:
    """The questions of kb_dir checked against its KB (see the module's docstring); their count."""
    kb = facts(kb_dir)
    entities = {x for s, _, o in kb for x in (s, o)}
    n = 0
    for part in ("train", "test"):
        lines = (kb_dir / f"{part}.txt").read_text(encoding="utf-8").splitlines()
        qtypes = (kb_dir / f"{part}_qtype.txt").read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(qtypes), f"{kb_dir.name}/{part}: {len(lines)} questions, {len(qtypes)} types"
        for i, (line, qtype) in enumerate(zip(lines, qtypes), 1):
            text, answers = line.split("\t")
            kind, path = qtype.split(":", 1)
            topics = MENTION.findall(text)
            paths = path.split("+")
            where = f"{kb_dir.name}/{part}.txt:{i}"
            assert kind in KINDS and len(topics) == len(paths), f"{where}: {qtype} for {len(topics)} entities"
            assert set(topics) <= entities, f"{where}: {set(topics) - entities} not in the KB"
            want = set.intersection(*(follow(kb, t, p) for t, p in zip(topics, paths))) - set(topics)
            assert want and want == set(answers.split("|")), f"{where}: {sorted(want)} != {answers}"
            n += 1
    return n


def run(cmd, cwd, log):
    with open(log, "a", encoding="utf-8") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        done = subprocess.run(list(map(str, cmd)), cwd=cwd, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(done.stdout)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}; see {log}")
    return done.stdout


def measure(kb_dir: Path, code: Path, out: Path, threads, extra=()) -> dict:
    model, log = out / kb_dir.name, out / f"{kb_dir.name}.log"
    log.unlink(missing_ok=True)
    train = [sys.executable, "-m", "kgqa", "train", "--kb", kb_dir / "kb.txt", "--train", kb_dir / "train.txt",
             "--hops", "2", "--out", model, "--no-progress"] + (["--threads", threads] if threads else []) + list(extra)
    t0 = time.perf_counter()
    run(train, code, log)
    seconds = time.perf_counter() - t0
    ev = run([sys.executable, "-m", "kgqa", "eval", "--model", model, "--questions", kb_dir / "test.txt", "--qtype",
              kb_dir / "test_qtype.txt", "--json"], code, log)
    result = json.loads(ev.strip().splitlines()[-1])
    config = json.loads((model / "config.json").read_text())
    history = config["train"]["history"]
    kept = config.get("best_epoch") or max(history, key=lambda r: (r["valid_hits@1"], -r["epoch"]))["epoch"]
    kinds = {}
    for qtype, m in result.get("per_qtype", {}).items():
        k = kinds.setdefault(qtype.split(":")[0], [0.0, 0])
        k[0] += m["hits@1"] * m["n"]
        k[1] += m["n"]
    return {"kb": kb_dir.name, "hits@1": result["hits@1"], "n": result["n"], "f1": result["f1"],
            "answered": result.get("answered", 1.0),  # checkouts before abstention answer every question
            "kinds": {k: (h / n, n) for k, (h, n) in kinds.items()}, "kept": kept, "epochs": len(history),
            "seconds": seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose kgqa trains (default: this one)")
    ap.add_argument("--threads", help="passed to `kgqa train --threads`")
    ap.add_argument("--kbs", help="comma-separated folder names (default: all)")
    ap.add_argument("--check", action="store_true", help="only check the answer sets against the KBs")
    ap.add_argument("--no-word-check", action="store_true", help="passed to `kgqa train` (default: off)")
    args = ap.parse_args()
    dirs = sorted(p for p in DATA.iterdir() if p.is_dir() and (not args.kbs or p.name in args.kbs.split(",")))
    if args.check:
        for d in dirs:
            print(f"{d.name}: {check(d)} questions, every answer set as its path gives")
        return
    out = Path(os.environ.get("OUT", ROOT / "runs" / "experiments" / "small-kbs")) / args.code.resolve().name
    out.mkdir(parents=True, exist_ok=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.code, capture_output=True, text=True)
    print(f"code: {args.code.resolve()} ({rev.stdout.strip() or 'not a git checkout'}); outputs in {out}")
    print("| KB | test Hits@1 | " + " | ".join(KINDS) + " | answer-set F1 | answered | kept epoch / run | training (s) |")
    print("|---|---|" + "---|" * len(KINDS) + "---|---|---|---|")
    rows = []
    for d in dirs:
        r = measure(d, args.code, out, args.threads, ["--no-word-check"] if args.no_word_check else [])
        rows.append(r)
        kinds = " | ".join(f"{r['kinds'][k][0]:.2f} ({r['kinds'][k][1]})" if k in r["kinds"] else "-" for k in KINDS)
        print(f"| {r['kb']} | {r['hits@1']:.3f} ({r['n']}) | {kinds} | {r['f1']:.3f} | {100 * r['answered']:.0f}% | "
              f"{r['kept']} / {r['epochs']} | "
              f"{r['seconds']:.0f} |", flush=True)
    total = sum(r["n"] for r in rows)
    mean = {k: sum(r[k] * r["n"] for r in rows) / total for k in ("hits@1", "f1", "answered")}
    print(f"| all | {mean['hits@1']:.3f} ({total}) |" + " |" * len(KINDS) + f" {mean['f1']:.3f} | "
          f"{100 * mean['answered']:.0f}% | | |")
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
