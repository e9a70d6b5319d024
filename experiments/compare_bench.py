"""Compares two kgqa-bench results.json files case by case (same KB, op, x, batch, mode and
provider): the median time after / before, and the geometric mean of those ratios.

    python experiments/compare_bench.py BEFORE.json AFTER.json
"""
from __future__ import annotations

import json
import math
import sys


def cases(path):
    with open(path) as f:
        result = json.load(f)
    return {(r["kb"], r["op"], r["x"], r["batch"], r["mode"], r["provider"]): r for r in result["records"]
            if "median_ms" in r}


def main() -> None:
    before, after = cases(sys.argv[1]), cases(sys.argv[2])
    ratios = []
    print("| KB | op | x | B | mode | provider | before (ms) | after (ms) | after / before |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(before.keys() & after.keys(), key=str):
        b, a = before[key]["median_ms"], after[key]["median_ms"]
        ratios.append(a / b)
        print("| " + " | ".join(str(k) for k in key) + f" | {b:.2f} | {a:.2f} | {a / b:.3f} |")
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"\n{len(ratios)} cases; geometric mean of after / before: {geo:.3f}; "
              f"range {min(ratios):.3f} .. {max(ratios):.3f}")


if __name__ == "__main__":
    main()
