"""Lines per source module of a checkout: count, largest, mean and median per folder.

    python experiments/lines_per_module.py [ROOT] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

EXTS = (".py", ".h", ".cpp", ".cu", ".cuh")
FOLDERS = ("csrc", "kgqa_kernels", "kgqa", "tests", "benchmarks")


def count(root: Path) -> dict:
    files = subprocess.run(["git", "-C", str(root), "ls-files"], capture_output=True, text=True, check=True).stdout.split()
    per = defaultdict(dict)
    for f in files:
        if not f.endswith(EXTS) or f.split("/")[0] not in FOLDERS:
            continue
        with open(root / f, encoding="utf-8") as fh:
            per[f.split("/")[0]][f] = sum(1 for _ in fh)
    return per


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default=".")
    ap.add_argument("--json")
    args = ap.parse_args()
    per = count(Path(args.root))
    print("| folder | modules | lines | largest | mean | median |")
    print("|---|---|---|---|---|---|")
    for folder in FOLDERS:
        lines = per.get(folder, {})
        if not lines:
            continue
        big = max(lines, key=lines.get)
        print(f"| {folder} | {len(lines)} | {sum(lines.values())} | {big} ({lines[big]}) | "
              f"{statistics.mean(lines.values()):.0f} | {statistics.median(lines.values()):.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(per, f, indent=1)


if __name__ == "__main__":
    main()
