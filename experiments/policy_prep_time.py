"""Time (and optionally profile) the input preparation of ``--retrieval policy``: the candidate
policy's ``find_mentions`` over N plain MetaQA questions (the n-gram probes of every generator, the
contexts, the draws), with a policy whose bandit has played the gold mentions of the next
--learn questions (as ``kgqa.retrieval_policy.fit`` does). Backs docs/results.md, "End to end with --retrieval policy".

    PYTHONPATH=. python experiments/policy_prep_time.py METAQA_DIR/kb.txt QUESTIONS [--n 500] [--profile OUT.prof]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

from kgqa.encoder import TransformerEncoder
from kgqa.kb import KnowledgeBase
from kgqa.linking import strip_brackets
from kgqa.retrieval import Retrieval
from kgqa.retrieval_policy import LEARN_CHUNK, CandidatePolicy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kb")
    ap.add_argument("questions", help="a MetaQA qa file (question TAB answers)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--learn", type=int, default=1000,
                    help="the bandit first plays the gold [bracketed] mentions of the next LEARN lines (as training does)")
    ap.add_argument("--profile", help="write cProfile stats here and print the top functions")
    ap.add_argument("--dump", help="write the mentions found (JSON) here, to compare runs")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    kb = KnowledgeBase.load(a.kb)
    lines = open(a.questions, encoding="utf-8").read().splitlines()
    plains = [strip_brackets(line.split("\t")[0])[0] for line in lines[: a.n]]
    gold = [(m, {kb.entity_ids[m]}) for line in lines[a.n : a.n + a.learn]
            for m in strip_brackets(line.split("\t")[0])[1] if m in kb.entity_ids]
    t = time.perf_counter()
    retrieval = Retrieval.build(kb.entities, encoder=TransformerEncoder(), aliases=kb.aliases)
    policy = CandidatePolicy(retrieval, kb.entities)
    print(f"built the generators in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    for i in range(0, len(gold), LEARN_CHUNK):
        policy.learn([m for m, _ in gold[i : i + LEARN_CHUNK]], [g for _, g in gold[i : i + LEARN_CHUNK]])
    print(f"played {len(gold)} gold mentions in {time.perf_counter() - t:.1f} s")
    prof = cProfile.Profile() if a.profile else None
    t = time.perf_counter()
    if prof:
        prof.enable()
    found = policy.find_mentions(plains)
    if prof:
        prof.disable()
    took = time.perf_counter() - t
    print(f"find_mentions: {len(plains)} questions in {took:.1f} s: {1000 * took / len(plains):.1f} s per 1,000 "
          f"questions; {sum(map(len, found)) / len(plains):.2f} mentions a question")
    if prof:
        prof.dump_stats(a.profile)
        pstats.Stats(a.profile).sort_stats("cumulative").print_stats(30)
        pstats.Stats(a.profile).sort_stats("tottime").print_stats(20)
    if a.dump:
        json.dump([[[m.start, m.end, m.text, m.entities, m.how, m.similarity] for m in ms] for ms in found],
                  open(a.dump, "w"))


if __name__ == "__main__":
    main()
