"""What a trained model with operations does on 2-entity count questions (issue 20; docs/results.md
"Operations"): per question the relation each branch chooses (against the path the question was
made from), the intersection's weights on the true films and off them, the soft count against the
true count, and P(count); Hits@1 (exact match) per pair of relations.

Usage: python experiments/count2entity_diag.py MODEL_DIR --kb KB --test FILE:QTYPE:PATHS [--kind K] [--no-restrict]
(FILE_paths.txt: experiments/metaqa_ops.py's "kind:rel1+rel2" line per question.)
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kgqa import KnowledgeBase, QA, read_questions  # noqa: E402
from kgqa import model as kgqa_model  # noqa: E402
from kgqa.operations import COUNT, OPERATIONS, members  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--kb", required=True)
    ap.add_argument("--test", required=True, help="FILE:QTYPE:PATHS")
    ap.add_argument("--kind", default="count-2entity")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", type=int, default=8, help="print this many wrong questions")
    ap.add_argument("--no-restrict", action="store_true",
                    help="branches over every relation at every hop (the model before the first hop of two topics was "
                         "restricted, commit 946d946); only for a model without topic types, which read the same "
                         "relations")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kb = KnowledgeBase.load(args.kb)
    qa = QA.load(args.model, kb)
    if args.no_restrict:
        if qa.model.topic_types is not None:
            ap.error("--no-restrict: this model reads its topics' relations (topic types); it needs them")
        kgqa_model.set_relations = lambda kb, x: torch.ones(x.shape[0], kb.num_relations, dtype=torch.bool,
                                                            device=x.device)
    f, qt, pf = args.test.split(":")
    qs, _ = read_questions(f, kb, qt)
    paths = [line.strip() for line in open(pf, encoding="utf-8")]
    assert len(paths) == len(qs), "every question of the file is read (the paths file is aligned with it)"
    pairs = [(q, p.split(":", 1)[1].split("+")) for q, p in zip(qs, paths) if q.qtype == args.kind]
    s, p, o = kb.triples.unbind(1)
    rows, by_pair = [], defaultdict(list)
    with torch.no_grad():
        for i in range(0, len(pairs), 128):
            chunk = pairs[i : i + 128]
            batch = [q for q, _ in chunk]
            out = qa.forward(batch)
            ops = out.ops
            excl = qa.excluded(batch, out)
            x = out.scores.clamp(min=0).masked_fill(excl, 0.0)
            m = members(x)
            for b, (q, rels) in enumerate(chunk):
                true = None
                for t, rel in zip(q.topics, rels):  # the films each topic reaches through its relation
                    films = set(s[(p == kb.base_relations.index(rel)) & (o == t)].tolist())
                    true = films if true is None else true & films
                true -= set(q.topics)
                want = [kb.relations.index(r + "~inv") for r in rels]
                chosen = [out.relations[b, 0, j].argmax().item() for j in range(len(rels))]
                on = x[b, sorted(true)] if true else x.new_zeros(0)
                off = x[b].clone()
                off[sorted(true)] = 0
                n_chosen = ops.number[b].item() if ops.chosen[b].item() == OPERATIONS.index(COUNT) else None
                row = dict(text=q.text, count=q.count, true_films=len(true), soft_count=round(ops.count[b].item(), 3),
                           number=n_chosen, p_count=round(ops.p[b, OPERATIONS.index(COUNT)].item(), 3),
                           right=n_chosen is not None and qa.count_correct(q, n_chosen),
                           want=[kb.relations[r] for r in want], chosen=[kb.relations[r] for r in chosen],
                           p_want=[round(out.relations[b, 0, j, w].item(), 3) for j, w in enumerate(want)],
                           on_min=round(on.min().item(), 3) if len(on) else None,
                           on_mean=round(on.mean().item(), 3) if len(on) else None,
                           off_max=round(off.max().item(), 3), off_sum=round(off.sum().item(), 3),
                           members=int((m[b] > 0).sum().item()),
                           members_true=int((m[b, sorted(true)] > 0).sum().item()) if true else 0)
                rows.append(row)
                by_pair["+".join(sorted(rels))].append(row)
    n = len(rows)

    def mean(key, rs):
        return round(sum(r[key] for r in rs) / max(1, len(rs)), 3)

    branch_right = [sum(r["chosen"][j] == r["want"][j] for r in rows) / n for j in range(2)]
    summary = dict(n=n, hits1=mean("right", rows), count_matches_true_films=sum(r["count"] == r["true_films"] for r in rows) / n,
                   chose_count=sum(r["number"] is not None for r in rows) / n, branch_relation_right=branch_right,
                   p_want_mean=[round(sum(r["p_want"][j] for r in rows) / n, 3) for j in range(2)],
                   on_min_mean=round(sum(r["on_min"] or 0 for r in rows) / n, 3),
                   abs_error_mean=round(sum(abs(r["soft_count"] - r["count"]) for r in rows) / n, 3),
                   soft_under=sum(r["soft_count"] < r["count"] - 0.5 for r in rows) / n,
                   soft_over=sum(r["soft_count"] > r["count"] + 0.5 for r in rows) / n)
    print(json.dumps(summary))
    for pair, rs in sorted(by_pair.items(), key=lambda kv: -len(kv[1])):
        print(json.dumps(dict(pair=pair, n=len(rs), hits1=mean("right", rs),
                              branch_right=[round(sum(r["chosen"][j] == r["want"][j] for r in rs) / len(rs), 3)
                                            for j in range(2)],
                              on_min=mean("on_min", [r for r in rs if r["on_min"] is not None]),
                              soft=mean("soft_count", rs), true=mean("count", rs))))
    for r in [r for r in rows if not r["right"]][: args.show]:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
