"""Counting and superlative questions over MetaQA's KB (`kgqa make-questions --ops count,argmax,argmin`'s
generator, kgqa.generate), split into training, validation and held-out sets by topic entity, and
mixed with MetaQA's own questions so that one model trains on both. Backs docs/results.md
"Counting and superlative questions: the data" and docs/model-layer.md's section of that name.

    python experiments/metaqa_ops.py METAQA_DIR --out DIR [--seed 0]

Writes, under DIR:
- ops-1hop/ and ops-2hop/: {train,valid,test}.txt, each with _qtype.txt (the kind a line: count,
  count-2entity, argmax, argmin) and _paths.txt (the full qtype: "count:directed_by~inv",
  "argmax:starred_actors~inv@release_year"). ops-1hop counts and ranks what one hop reaches (for a
  model trained with --hops 1), ops-2hop what one or two hops reach.
- mixed/N-hop/{train,valid}.txt (+ _qtype.txt), N = 1, 2, 3: MetaQA's N-hop qa_dev.txt cut as
  `kgqa train` cuts it by default (kgqa.policy.hold_out: 90% training, 10% validation, seed 0:
  the same questions experiments/metaqa.sh's models were scored on), with the training and
  validation ops questions added (ops-1hop for N = 1, ops-2hop for N = 2, 3).
- summary.json: sizes, the count distributions, ties, baselines that need no model, and the result
  of the check below.

Held out by topic: every entity is drawn into the held-out topics with probability --test-share
(seed --seed); a question is held out when all its topics are held-out ones, trains (or validates)
when none is, and is dropped otherwise, so no held-out topic is the topic of any training or
validation ops question. (MetaQA's own questions are not filtered: summary.json counts how many
held-out ops topics are topics of MetaQA training questions too.)

Counts: MetaQA's counts are mostly 1 (a film has one director; 60-70% of drawn count questions, see
summary.json "pool"), so a model answering 1 always would score well. The sets draw count
questions evenly from the buckets 1, 2, ..., 10 and "11 or more" (up to make-questions'
--max-answers default, 20), as far as the drawn pool allows. A question asked twice in other words
(the generator keeps distinct texts) is kept once.

The check: every written ops question is recomputed by a second implementation that shares no code
with kgqa (it reads kb.txt with str.split and the written files, and follows each question's
_paths.txt line); any difference fails the script."""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kgqa import KnowledgeBase, TrainConfig, read_questions  # noqa: E402
from kgqa.generate import generate, kind_of, write_generated  # noqa: E402
from kgqa.config import QUESTIONS_MAX_ANSWERS  # noqa: E402
from kgqa.op_questions import COUNT, COUNT_2ENTITY, OP_KINDS, intersection_counts  # noqa: E402
from kgqa.policy import hold_out  # noqa: E402

COUNT_KINDS = (COUNT, COUNT_2ENTITY)
TOP_BUCKET = 11  # counts of 11 or more share one bucket


def held_out_entities(num_entities: int, share: float, seed: int) -> set:
    rng = random.Random(seed)
    return {e for e in range(num_entities) if rng.random() < share}


def balanced(qs, n: int):
    """Up to n of qs, drawn in turn from each count bucket (1, ..., 10, 11+), each in qs' order."""
    buckets = defaultdict(list)
    for q in qs:
        buckets[min(q.count, TOP_BUCKET)].append(q)
    queues = [buckets[b][::-1] for b in sorted(buckets)]
    out = []
    while len(out) < n and any(queues):
        for queue in queues:
            if queue and len(out) < n:
                out.append(queue.pop())
    return out


def distinct(qs):
    """qs without a second phrasing of the same question (its kind, path and topics): a held-out
    set of n questions asks n different things."""
    seen, out = set(), []
    for q in qs:
        key = (q.qtype, tuple(q.topics))
        if key not in seen:
            seen.add(key)
            out.append(q)
    return out


def split_sets(pool, test_topics: set, sizes: dict, train_counts: int):
    """{"train"|"valid"|"test": questions} of each kind: by topic (see the module's docstring).
    ``train_counts``: the training questions of each count kind (``sizes["train"]`` the others'). The
    sets of a larger one hold those of a smaller one (``balanced`` draws in a fixed order), and the
    same validation and held-out questions."""
    out = {name: [] for name in sizes}
    for kind in OP_KINDS:
        mine = [q for q in pool if kind_of(q) == kind]
        held = [q for q in mine if all(t in test_topics for t in q.topics)]
        rest = [q for q in mine if not any(t in test_topics for t in q.topics)]
        pick = balanced if kind in COUNT_KINDS else (lambda qs, n: qs[:n])
        out["test"] += pick(held, sizes["test"])
        chosen = pick(rest, (train_counts if kind in COUNT_KINDS else sizes["train"]) + sizes["valid"])
        out["valid"] += chosen[: sizes["valid"]]
        out["train"] += chosen[sizes["valid"]:]
    return out


def write_set(folder: Path, name: str, qs, kb):
    write_generated(folder / f"{name}.txt", qs, kb, folder / f"{name}_qtype.txt")
    (folder / f"{name}_paths.txt").write_text("".join(q.qtype + "\n" for q in qs), encoding="utf-8")


# ---- the second implementation (no kgqa code) -------------------------------------------------

NUMBER = re.compile(r"-?[0-9][0-9,]*(\.[0-9]+)?")


def number(name: str):
    if not NUMBER.fullmatch(name) or ",," in name or name.endswith(","):
        return None
    return float(name.replace(",", ""))


class Facts:
    def __init__(self, kb_path: Path):
        self.out = defaultdict(set)  # (entity name, relation or relation~inv) -> names
        for line in kb_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                s, r, o = line.split("|")
                self.out[(s, r)].add(o)
                self.out[(o, r + "~inv")].add(s)

    def walk(self, topic: str, path):
        here = {topic}
        for r in path:
            here = set().union(*(self.out.get((e, r), set()) for e in here)) - {topic}
        return here

    def values(self, entity: str, attribute: str):
        return {v for o in self.out.get((entity, attribute), ()) if (v := number(o)) is not None}


def check(folder: Path, name: str, facts: Facts, stats: dict) -> int:
    """The number of questions of folder/name.txt whose answers differ from the recomputed ones."""
    lines = (folder / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    paths = (folder / f"{name}_paths.txt").read_text(encoding="utf-8").splitlines()
    wrong = 0
    for line, qtype in zip(lines, paths, strict=True):
        text, answers = line.split("\t")
        topics = re.findall(r"\[([^\]]+)\]", text)
        kind, spec = qtype.split(":", 1)
        if kind == "count":
            expect = {str(len(facts.walk(topics[0], spec.split(">"))))}
        elif kind == "count-2entity":
            ra, rb = spec.split("+")
            both = facts.out.get((topics[0], ra + "~inv"), set()) & facts.out.get((topics[1], rb + "~inv"), set())
            expect = {str(len(both))}
        else:
            path, attribute = spec.split("@")
            members = facts.walk(topics[0], path.split(">"))
            found = {m: v for m in members if (v := facts.values(m, attribute))}
            values = {m: min(v) for m, v in found.items()}
            best = (max if kind == "argmax" else min)(values.values())
            expect = {m for m, v in values.items() if v == best}
            # a superlative: two members whose values differ, none of several values, most with one
            wrong += (len(set(values.values())) < 2 or any(len(v) > 1 for v in found.values())
                      or len(values) < len(members) / 2)
            stats["members"].append(len(values))
            stats["ties"] += len(expect) > 1
            stats["random_hits"] += len(expect) / len(values)  # a member drawn at random is an answer
        wrong += set(answers.split("|")) != expect
    return wrong


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("metaqa", type=Path, help="MetaQA's folder: kb.txt and N-hop/qa_dev.txt")
    ap.add_argument("--out", type=Path, required=True, help="the folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-per-kind", type=int, default=2000)
    ap.add_argument("--train-counts", type=int, default=None,
                    help="training questions of each count kind (default: --train-per-kind); more of them teach "
                         "the second hop of two-hop counts (docs/results.md \"More count questions\")")
    ap.add_argument("--valid-per-kind", type=int, default=250)
    ap.add_argument("--test-per-kind", type=int, default=500)
    ap.add_argument("--test-share", type=float, default=0.3, help="the share of entities held out as topics")
    ap.add_argument("--pool", type=int, default=30000,
                    help="count, argmax and argmin questions drawn each before the split")
    ap.add_argument("--pool-2entity", type=int, default=100000,
                    help="count-2entity questions drawn before the split (held out only when both topics are: "
                         "test-share squared of them)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    kb = KnowledgeBase.load(args.metaqa / "kb.txt")
    test_topics = held_out_entities(kb.num_entities, args.test_share, args.seed)
    sizes = {"train": args.train_per_kind, "valid": args.valid_per_kind, "test": args.test_per_kind}
    summary = {"command": "python experiments/metaqa_ops.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "held_out_entities": len(test_topics), "sets": {}}
    facts = Facts(args.metaqa / "kb.txt")
    ops_train = {}
    pairs = intersection_counts(kb, args.pool_2entity, args.seed, QUESTIONS_MAX_ANSWERS)
    for variant, hops in (("ops-1hop", 1), ("ops-2hop", 2)):
        pool = [q for q in generate(kb, hops, n=2 * args.pool, seed=args.seed, ops=["count"]) if kind_of(q) == "count"]
        pool += pairs + generate(kb, hops, n=2 * args.pool, seed=args.seed, ops=["argmax", "argmin"])
        pool = distinct(pool)
        sets = split_sets(pool, test_topics, sizes,
                          args.train_per_kind if args.train_counts is None else args.train_counts)
        folder = args.out / variant
        folder.mkdir(parents=True, exist_ok=True)
        info = {"pool": {k: dict(sorted(Counter(min(q.count, TOP_BUCKET) for q in pool if kind_of(q) == k).items()))
                         for k in COUNT_KINDS}}
        for name, qs in sets.items():
            write_set(folder, name, qs, kb)
            stats = {"members": [], "ties": 0, "random_hits": 0.0}
            wrong = check(folder, name, facts, stats)
            per_kind = Counter(kind_of(q) for q in qs)
            counts = {k: dict(sorted(Counter(q.count for q in qs if kind_of(q) == k).items())) for k in COUNT_KINDS}
            n_sup = len(stats["members"])
            info[name] = {
                "questions": dict(per_kind), "wrong": wrong, "counts": counts,
                "count_at_most_10": {k: sum(n for c, n in v.items() if c <= 10) / max(1, sum(v.values()))
                                     for k, v in counts.items()},
                "majority_count_hits1": {k: max(v.values()) / sum(v.values()) for k, v in counts.items() if v},
                "superlatives_with_ties": stats["ties"] / max(1, n_sup),
                "superlative_random_member_hits1": stats["random_hits"] / max(1, n_sup),
                "superlative_members_median": sorted(stats["members"])[n_sup // 2] if n_sup else None,
                "topics": len({t for q in qs for t in q.topics}),
            }
            if wrong:
                print(f"{variant}/{name}: {wrong} questions whose answers the second implementation does not give",
                      file=sys.stderr)
        train_topics = {t for name in ("train", "valid") for q in sets[name] for t in q.topics}
        assert not train_topics & {t for q in sets["test"] for t in q.topics}
        ops_train[hops] = sets
        summary["sets"][variant] = info
    for n in (1, 2, 3):
        dev, _ = read_questions(args.metaqa / f"{n}-hop" / "qa_dev.txt", kb,
                                args.metaqa / f"{n}-hop" / "qa_dev_qtype.txt")
        train_qs, valid_qs, _ = hold_out(dev, TrainConfig(hops=n))
        ops = ops_train[min(n, 2)]
        folder = args.out / "mixed" / f"{n}-hop"
        folder.mkdir(parents=True, exist_ok=True)
        write_generated(folder / "train.txt", train_qs + ops["train"], kb, folder / "train_qtype.txt")
        write_generated(folder / "valid.txt", valid_qs + ops["valid"], kb, folder / "valid_qtype.txt")
        test_topics_used = {t for q in ops["test"] for t in q.topics}
        summary["sets"][f"mixed/{n}-hop"] = {
            "train": {"metaqa": len(train_qs), "ops": len(ops["train"])},
            "valid": {"metaqa": len(valid_qs), "ops": len(ops["valid"])},
            "held_out_ops_topics_in_metaqa_training": len(test_topics_used & {t for q in train_qs for t in q.topics}),
            "held_out_ops_topics": len(test_topics_used),
        }
    summary["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=1))
    wrong = sum(s[name]["wrong"] for v, s in summary["sets"].items() if v.startswith("ops")
                for name in ("train", "valid", "test"))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
