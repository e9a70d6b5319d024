"""The whole candidate policy's lookup latency per question (``--retrieval policy``:
``CandidatePolicy.find_mentions``: the question's n-grams probed by every generator, the spans
kept, each span's allocation, the draws) at N entity names, beside each generator's latency per
mention (experiments/retrieval_latency.py). Issue 21: "lookup latency per question at 1M entity
names, for each generator and the whole policy".

Names: N synthetic names made of a KB's words (``kgqa.aliases.synthetic_names``, as
retrieval_latency.py). Generators: alias, fuzzy and lexical over them; memory holding --memory
remembered (mention, entity) pairs (training remembers at most one per training question); dense
over N random unit vectors (the names' real vectors would cost an hour of encoding on a CPU) with
the real default encoder for the spans, so the encoding is timed. The bandit is untrained (its
allocation costs the same as a trained one's). Questions: MetaQA-style question texts (a question
file, brackets stripped) with the bracketed mention replaced by a synthetic name less its last
letter (no exact match: the fuzzy path). Each question is one ``find_mentions`` call, with the
dense generator's query cache cleared first (every span encoded: the worst case; a server's cache
keeps the n-grams questions share). Usage:

    PYTHONPATH=. python experiments/policy_latency.py METAQA_DIR/kb.txt METAQA_DIR/1-hop/qa_dev.txt --names 1000000
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kgqa.aliases import AliasIndex  # noqa: E402
from kgqa.retrieval import AliasGenerator, FuzzyGenerator, LexicalGenerator, MemoryIndex, Retrieval  # noqa: E402
from kgqa.retrieval.dense import DenseGenerator  # noqa: E402
from kgqa.retrieval_policy import CandidatePolicy  # noqa: E402
from retrieval_latency import synthetic_setup  # noqa: E402  (this folder: a script's is on the path)

BRACKET = re.compile(r"\[[^\]]*\]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb", help="a KB file whose entity names' words make the synthetic names")
    ap.add_argument("questions", help="a question file (MetaQA format) whose texts are asked")
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--memory", type=int, default=100_000, help="remembered (mention, entity) pairs")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    from kgqa.encoder import build_encoder

    rng, names = synthetic_setup(args.kb, args.names, args.threads)
    texts = [line.split("\t")[0] for line in open(args.questions, encoding="utf-8") if "[" in line]
    asked = []
    for text in rng.sample(texts, args.queries):
        name = rng.choice(names)
        asked.append(BRACKET.sub(lambda _: name[:-1], text, count=1))
    t0 = time.perf_counter()
    index = AliasIndex(names)
    memory = MemoryIndex()
    for e in rng.sample(range(len(names)), min(args.memory, len(names))):
        if any(c.isalnum() for c in names[e]):  # the memory refuses a mention with nothing to look up by
            memory.add(names[e], e)
    encoder = build_encoder(args.encoder, [])
    vecs = np.random.default_rng(0).standard_normal((len(names), encoder.out_dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    dense = DenseGenerator(encoder, vecs)
    retrieval = Retrieval({"alias": AliasGenerator(index), "fuzzy": FuzzyGenerator(index),
                           "lexical": LexicalGenerator(index), "dense": dense, "memory": memory}, {})
    policy = CandidatePolicy(retrieval, names, seed=0)
    policy.find_mentions(["warm up the indexes"])
    print(f"{len(names)} synthetic names, memory of {len(memory)}, built in {time.perf_counter() - t0:.0f} s; "
          f"{len(asked)} questions, {args.threads} thread(s)", flush=True)
    times, spans = [], []
    for q in asked:
        dense.queries.clear()
        t = time.perf_counter()
        found = policy.find_mentions([q])[0]
        times.append(time.perf_counter() - t)
        spans.append(len(found))
    times.sort()
    print(f"whole policy per question: median {1000 * statistics.median(times):.1f} ms, "
          f"mean {1000 * statistics.fmean(times):.1f} ms, p95 {1000 * times[int(0.95 * (len(times) - 1))]:.1f} ms; "
          f"spans with candidates: median {statistics.median(spans)}", flush=True)
    print(f"example: {asked[0]!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
