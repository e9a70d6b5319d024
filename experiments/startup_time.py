"""How long `kgqa` takes to start: `kgqa --help`, `kgqa --version`, `kgqa train --help`, and a
one-question `kgqa ask` from start to exit (so to its first and only answer) on a model with the
default encoder (all-MiniLM-L6-v2, frozen) and on one with a scratch encoder, both trained here
for one epoch on the demo KB. Each command is a fresh `python -m kgqa` process run from a checkout's
root (so that checkout's `kgqa` is the one imported), with the KB cache already filled.

These machines are shared and their speed drifts within minutes, so with --before the two
checkouts run alternately, command by command, which one goes first alternating too. --before is
a checkout with its compiled extension (kgqa_kernels/_C*.so), e.g. the commit before a change:

    git archive a96b912 | tar -x -C /tmp/before && cp kgqa_kernels/_C*.so /tmp/before/kgqa_kernels/
    python experiments/startup_time.py --before /tmp/before [--runs 7]

Prints a table: per command and checkout, the median wall-clock seconds and the median CPU seconds
(user + system: what the process itself computed, less sensitive to a busy machine than the wall
clock). A command a checkout does not have (`--version` before it existed) is "n/a". The models
are trained by this checkout, once, under --work (default: a temporary folder).

Then, for this checkout, where a one-question `ask` on the default-encoder model spends its CPU
time: the same steps as `kgqa ask` in one process, each timed by process_time (medians of --runs
processes): importing torch, the model layer (kgqa, kgqa_kernels), transformers, transformers'
BERT model code; loading the checkpoint; answering the question."""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
DEMO = HERE / "kgqa" / "data" / "demo"
QUESTION = "who directed [The Golden Storm]"


def run(root: Path, args, env) -> tuple:
    """(wall-clock seconds, CPU seconds, exit status) of `python -m kgqa ARGS` in ``root``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kgqa", *args], cwd=root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


PHASES = """
import sys, time
T = time.process_time
t = [T()]
import torch
t.append(T())
from kgqa import cli
cli._import_model_layer()
t.append(T())
import transformers
t.append(T())
import transformers.models.bert.modeling_bert
from transformers import AutoModel, AutoTokenizer
t.append(T())
qa = cli.checkpoint.load(sys.argv[1])
t.append(T())
cli.explain(qa, sys.argv[2])
t.append(T())
print(" ".join(f"{b - a:.3f}" for a, b in zip(t, t[1:])))
"""
PHASE_NAMES = ("import torch", "import the model layer (kgqa, kgqa_kernels)", "import transformers",
               "import transformers' BERT model (and through it torch._dynamo, sympy, scipy, triton)",
               "load the checkpoint (the encoder's weights, the KB from its cache)", "answer the question")


def phases(model: Path, runs: int, env) -> None:
    rows = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", PHASES, str(model), QUESTION], cwd=HERE, env=env, check=True,
                              capture_output=True, text=True)
        rows.append([float(x) for x in done.stdout.split()])
    print(f"\none-question `kgqa ask` on the all-MiniLM-L6-v2 model, this checkout: CPU seconds, median of {runs}")
    print("| step | CPU s |\n|---|---|")
    for i, name in enumerate(PHASE_NAMES):
        print(f"| {name} | {statistics.median(r[i] for r in rows):.2f} |")
    print(f"| total | {statistics.median(sum(r) for r in rows):.2f} |")


def train(work: Path, name: str, encoder: str, env) -> Path:
    out = work / name
    if not (out / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "kgqa", "train", "--kb", str(DEMO / "kb.txt"), "--train",
                        str(DEMO / "qa_train.txt"), "--hops", "2", "--out", str(out), "--encoder", encoder,
                        "--epochs", "1", "--no-progress"], cwd=HERE, env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, help="a checkout (with its built extension) to compare with")
    ap.add_argument("--runs", type=int, default=7, help="runs of each command per checkout (default: 7)")
    ap.add_argument("--work", type=Path, help="where the models and the KB cache go (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kgqa-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KGQA_CACHE": str(work / "cache")}
    env.pop("PYTHONPATH", None)  # each checkout imports its own kgqa, from its root
    minilm = train(work, "minilm", "all-MiniLM-L6-v2", env)
    scratch = train(work, "scratch", "scratch", env)
    commands = {
        "kgqa --help": ["--help"],
        "kgqa --version": ["--version"],
        "kgqa train --help": ["train", "--help"],
        "kgqa ask (all-MiniLM-L6-v2)": ["ask", "--model", str(minilm), QUESTION],
        "kgqa ask (scratch encoder)": ["ask", "--model", str(scratch), QUESTION],
    }
    roots = {"this checkout": HERE}
    if args.before:
        roots = {"before": args.before.resolve(), **roots}
    for root in roots.values():  # a first run of each: fills the KB cache, warms the file cache
        for command in commands.values():
            run(root, command, env)
    times = {(c, r): [] for c in commands for r in roots}
    for i in range(args.runs):
        for name, command in commands.items():
            order = list(roots) if i % 2 == 0 else list(reversed(roots))
            for label in order:
                times[(name, label)].append(run(roots[label], command, env))
    print(f"median of {args.runs} runs, seconds (wall clock / CPU); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"| command | " + " | ".join(roots) + " |")
    print("|---|" + "---|" * len(roots))
    for name in commands:
        cells = []
        for label in roots:
            runs = times[(name, label)]
            if any(rc != 0 for _, _, rc in runs):
                cells.append("n/a")
            else:
                cells.append(f"{statistics.median(w for w, _, _ in runs):.2f} / "
                             f"{statistics.median(c for _, c, _ in runs):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    phases(minilm, args.runs, env)


if __name__ == "__main__":
    main()
