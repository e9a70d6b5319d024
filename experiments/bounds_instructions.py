"""What the CPU kernels' id checks cost, counted rather than timed (issue: no benchmark may slow by
more than 3%). Timings on these machines cannot isolate a few percent: the same pull code moved by
about 10% when an unrelated function was added beside it (code placement; docs/results.md, "Bounds
checks cost"). Counts do not move with placement.

Each pass of experiments/bounds_cost.py (the raw CPU ops: follow, its dx, dr, follow_intersect k=2,
a one-hot push from 64 hubs) runs once under valgrind's callgrind with its cache simulation, one
thread, B = 64 fp32, in two builds of the package: this checkout's (with its checks, as shipped) and
--before's (a copy built with `#define KGQA_BOUNDS_CHECKS 0` in csrc/cpu/pull_row.h, say). Only the
pass is counted (callgrind client requests around it: experiments/callgrind_marks.cpp). Reported per
KB and pass: instructions executed (Ir), data reads and writes (Dr + Dw) and simulated last-level
data misses (DLmr + DLmw), this build / --before's.

The checks read nothing the loops do not read anyway, so the memory columns should be about 1; the
instruction ratio is then the checks' whole cost in work, and bounds their cost in time from above
for loops that wait on memory (the pulls gather rows at random). But the compiler may make other
code of the loops without checks (it does: their pulls execute about twice the instructions), so
the last column isolates the checks within this build alone: the share of the pass's instructions
that the build's debug information puts on the lines of csrc/ that check an id, a row pointer or a
chunk (CHECK_TOKENS), a placement-independent count of what the checks execute.

Usage: python experiments/bounds_instructions.py --before CHECKOUT [--kbs metaqa,zipf-1.2-small]
(needs valgrind; kbs: keys of kgqa_kernels.bench.workloads.kb_specs; a few minutes per 1M facts)
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# A source line of csrc/ whose text holds one of these checks a value it reads (csrc/bounds.h).
CHECK_TOKENS = ("id_ok(", "in_range(", "bad_fact", "bad_segment", "check_segment", "check_row", "bad_chunk_ids",
                "any_out_of_range", ">= limit", "low |= ids", "return low < 0", "return bad != 0", "chunk_facts",
                "bad_relation", "flag.report")
PASSES = ["follow", "follow dx", "follow dr", "follow_intersect-2", "push one-hot (hubs)"]  # bounds_cost.workloads


def marks():
    from torch.utils.cpp_extension import load

    return load("kgqa_callgrind_marks", [os.path.join(HERE, "callgrind_marks.cpp")], extra_cflags=["-O2"])


def child(root: str, kbs: str) -> None:
    """Under valgrind, with the package of ``root``: each pass once uncounted (warm-up), once counted."""
    sys.path.insert(0, root)
    import torch

    import kgqa_kernels
    assert os.path.dirname(os.path.dirname(os.path.abspath(kgqa_kernels.__file__))) == os.path.abspath(root)
    sys.path.insert(0, HERE)
    from bounds_cost import workloads
    from kgqa_kernels.bench.workloads import kb_specs

    torch.set_num_threads(1)  # one thread: no OpenMP waiting in the counts
    m = marks()
    for key in kbs.split(","):
        kb = kb_specs()[key].build()
        for name, fn in workloads(kb.tensors(), kb.subj, 64).items():
            fn()
            m.count_start()
            fn()
            m.count_stop(f"{key}|{name}")


def parse(path: str):
    """(label, {event: count}) of one callgrind dump, or (None, None); with "check_Ir", the
    instructions on check lines of csrc/ (CHECK_TOKENS; the dump written with uncompressed names
    and positions)."""
    label = events = totals = None
    source = fl_source = None
    check_ir, texts, after_call = 0, {}, False
    with open(path) as f:
        for line in f:
            if after_call:  # a call's cost line: the callee's inclusive cost, counted in the callee
                after_call = False
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line.startswith("desc: Trigger: Client Request: "):
                label = line.split("Client Request: ", 1)[1].strip()
            elif line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("totals:") or (totals is None and line.startswith("summary:")):
                totals = [int(v) for v in line.split()[1:]]
            elif line.startswith(("fl=", "fi=", "fe=")):  # the source file of the cost lines that follow
                name = line.split("=", 1)[1].strip()
                source = name if "/csrc/" in name and os.path.exists(name) else None
                if line.startswith("fl="):
                    fl_source = source
                if source and source not in texts:
                    with open(source) as src:
                        texts[source] = src.read().split("\n")
            elif line.startswith("fn="):  # a new function's lines are in its fl= file again
                source = fl_source
            elif source and line[:1].isdigit():
                fields = line.split()
                n = int(fields[0])
                if 0 < n <= len(texts[source]) and any(t in texts[source][n - 1] for t in CHECK_TOKENS):
                    check_ir += int(fields[1])
    if not (label and events and totals):
        return None, None
    return label, dict(zip(events, totals), check_Ir=check_ir)


def count(root: str, kbs: str, out_dir: str, tag: str) -> dict:
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", "--compress-strings=no",
           "--compress-pos=no",
           f"--callgrind-out-file={out_dir}/cg.{tag}", sys.executable, os.path.abspath(__file__),
           "--child", root, "--kbs", kbs]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"valgrind run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    counts = {}
    for path in glob.glob(f"{out_dir}/cg.{tag}*"):
        label, totals = parse(path)
        if label:
            counts[label] = totals
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", help="a checkout with its extension built (the package without checks, say)")
    ap.add_argument("--kbs", default="metaqa,zipf-1.2-small")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.kbs)
    if not args.before:
        ap.error("--before CHECKOUT is required")
    marks()  # compiled outside valgrind (torch's extension loader caches it)
    with tempfile.TemporaryDirectory() as d:
        now, before = count(ROOT, args.kbs, d, "now"), count(os.path.abspath(args.before), args.kbs, d, "before")
    print("| KB | pass | instructions, this build (M) | --before (M) | instructions, ratio | data accesses, ratio "
          "| last-level data misses, ratio | this build: share of instructions on check lines |")
    print("|---|---|---|---|---|---|---|---|")
    for key in args.kbs.split(","):
        for label in sorted((k for k in now if k.startswith(key + "|")), key=lambda k: PASSES.index(k.split("|")[1])):
            a, b = now[label], before.get(label)
            if b is None:
                continue
            acc = (a["Dr"] + a["Dw"]) / (b["Dr"] + b["Dw"])
            miss = (a["DLmr"] + a["DLmw"]) / max(1, b["DLmr"] + b["DLmw"])
            print(f"| {key} | {label.split('|')[1]} | {a['Ir'] / 1e6:,.1f} | {b['Ir'] / 1e6:,.1f} | "
                  f"{a['Ir'] / b['Ir']:.3f} | {acc:.3f} | {miss:.3f} | {a['check_Ir'] / a['Ir']:.2%} |", flush=True)


if __name__ == "__main__":
    main()
