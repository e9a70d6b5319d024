"""Where a saved model with operations misses count questions over paths of one or two hops (issue
20: the 2- and 3-hop models' counts, docs/results.md "MetaQA 1, 2 and 3-hop with the operations").
Per path length (from make-questions' _paths.txt: "count:r1>r2"): Hits@1 (exact match), how
often the chosen operation is count, how often the hop attention's largest hop is the path's
length, and, of the misses, how far the answer is from the truth and whether the count at the
path's own hop (``OpOutput.hop_counts``, which the model mixes by the hop attention) is right.

    python experiments/count_hops_diag.py MODEL_DIR --kb METAQA/kb.txt --test ops-2hop/test.txt \\
        --qtype ops-2hop/test_qtype.txt --paths ops-2hop/test_paths.txt [--whole-members]

--whole-members: each hop's count is its number of members (the entities over the gate,
``kgqa.operations.members``), not the sum of their weights (``OperationHead.whole_members``).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgqa import KnowledgeBase, read_questions  # noqa: E402
from kgqa.operations import COUNT, OPERATIONS  # noqa: E402
from kgqa.qa import QA  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--kb", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--qtype", required=True)
    ap.add_argument("--paths", required=True)
    ap.add_argument("--whole-members", action="store_true", help="count members as whole entities (see the doc)")
    ap.add_argument("--restrict-hops", choices=("on", "off"), default=None,
                    help="each hop only over the relations its input set has facts of, or not "
                         "(RigelModel.restrict_hops; default: as the model was trained)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    kb = KnowledgeBase.load(args.kb)
    qa = QA.load(args.model, kb)
    qa.model.operation_head.whole_members = args.whole_members
    if args.restrict_hops is not None:
        qa.model.restrict_hops = args.restrict_hops == "on"
    qs, _ = read_questions(args.test, kb, args.qtype)
    paths = [line.strip() for line in open(args.paths, encoding="utf-8")]
    assert len(paths) == len(qs), "the paths file must align with the questions"
    picked = [(q, p) for q, p in zip(qs, paths) if q.qtype == COUNT]
    rows = defaultdict(Counter)
    off = defaultdict(list)
    with torch.no_grad():
        for at in range(0, len(picked), 256):
            batch = [q for q, _ in picked[at : at + 256]]
            lengths = [p.split(":", 1)[1].count(">") + 1 for _, p in picked[at : at + 256]]
            _, out = qa.predict(batch, calibrated=False)
            numbers = out.ops.number.tolist()
            chosen = out.ops.chosen.tolist()
            hops = out.hop_attention.argmax(1).tolist()
            per_hop = out.ops.hop_counts.tolist()
            top = out.relations[:, :, 0].argmax(-1).tolist()  # [B, hops]: each hop's most probable relation
            for b, ((q, path), length) in enumerate(zip(picked[at : at + 256], lengths)):
                r = rows[length]
                r["n"] += 1
                right = numbers[b] == q.count
                own_hop_right = round(per_hop[b][length - 1]) == q.count
                hop_right = hops[b] + 1 == length
                r["right"] += right
                r["op_count"] += OPERATIONS[chosen[b]] == COUNT
                r["hop_is_length"] += hop_right
                r["own_hop_count_right"] += own_hop_right
                for t, name in enumerate(path.split(":", 1)[1].split(">")):
                    r[f"hop {t + 1}'s relation right"] += kb.relations[top[b][t]] == name
                if not right:
                    off[length].append(numbers[b] - q.count)
                    r["miss_own_hop_right"] += own_hop_right
                    r["miss_hop_is_length"] += hop_right
    report = {}
    for length, r in sorted(rows.items()):
        n, misses = r["n"], r["n"] - r["right"]
        report[f"{length}-hop paths"] = {
            "n": n, "hits@1": round(100 * r["right"] / n, 2),
            "chose count": round(100 * r["op_count"] / n, 2),
            "attention's largest hop is the path's length": round(100 * r["hop_is_length"] / n, 2),
            "count at the path's own hop right": round(100 * r["own_hop_count_right"] / n, 2),
            **{f"hop {t}'s relation right": round(100 * r[f"hop {t}'s relation right"] / n, 2)
               for t in range(1, length + 1)},
            "misses": misses,
            "misses whose own-hop count is right": r["miss_own_hop_right"],
            "misses whose attention's largest hop is the path's length": r["miss_hop_is_length"],
            "misses: answer - truth": dict(sorted(Counter(off[length]).items())),
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
