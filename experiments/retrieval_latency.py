"""Lookup latency per mention of each kgqa.retrieval generator at N entity names (default
1,000,000 synthetic names made of a KB's words: ``kgqa.aliases.synthetic_names``), with each one's
build time and the memory it adds (the process' resident set, before and after):

- alias, fuzzy, lexical over the synthetic names, and bm25s over the same words (the library the
  lexical generator was measured against);
- memory holding every synthetic name as a remembered mention (its fuzzy lookup's worst case);
- dense: faiss over random unit vectors of the encoder's dimension (the names' vectors would cost
  an hour of encoding on a CPU): exact inner product and IVF, at several sizes, with IVF's recall
  of a vector's own row from a noisy copy of it; and, separately, the time to encode one mention.

Mentions: synthetic names with their last letter dropped (the fuzzy path: no exact match), one
search call each, k = 20. Usage:

    PYTHONPATH=. python experiments/retrieval_latency.py METAQA_DIR/kb.txt --names 1000000
    PYTHONPATH=. python experiments/retrieval_latency.py METAQA_DIR/kb.txt --names 1000 --skip bm25s memory encoder \
        --vectors ~/.cache/kgqa/names-HASH.npy --noise 0.02   # IVF against exact on MetaQA's name vectors
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time

import numpy as np

from kgqa.aliases import AliasIndex, synthetic_names
from kgqa.kb import KnowledgeBase
from kgqa.retrieval import AliasGenerator, FuzzyGenerator, LexicalGenerator, MemoryIndex
from kgqa.retrieval.dense import build_index

K = 20


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def built(label, make):
    gc.collect()
    before, t0 = rss_mb(), time.perf_counter()
    obj = make()
    secs = time.perf_counter() - t0
    print(f"{label}: built in {secs:.1f} s, +{rss_mb() - before:.0f} MB resident", flush=True)
    return obj


def per_call(fn, queries) -> str:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    times.sort()
    return (f"median {1000 * statistics.median(times):.2f} ms, mean {1000 * statistics.fmean(times):.2f} ms, "
            f"p95 {1000 * times[int(0.95 * (len(times) - 1))]:.2f} ms")


def synthetic_setup(kb_path: str, n: int, threads: int):
    """(the seeded random.Random, n synthetic names made of the KB's names' words), with torch and
    faiss on ``threads`` threads: what every latency measurement here starts from."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    rng = random.Random(0)
    return rng, synthetic_names(KnowledgeBase.load(kb_path).entities, n, rng)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kb", help="a KB file whose entity names' words make the synthetic names")
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dense-sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2", help="the query encoder timed ('none': skipped)")
    ap.add_argument("--skip", nargs="*", default=[], help="parts to leave out: bm25s memory dense encoder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.05, help="per-dimension noise of the dense queries (before "
                    "normalising): a query is a vector's own row plus this")
    ap.add_argument("--vectors", help="a .npy of real name vectors (the dense generator's cache) to measure the "
                    "dense indexes on instead of random ones; --dense-sizes is then ignored")
    args = ap.parse_args(argv)
    rng, names = synthetic_setup(args.kb, args.names, args.threads)
    queries = [q[:-1] for q in rng.sample(names, args.queries)]
    print(f"{args.names} synthetic names, {len(queries)} mentions (a name less its last letter), k={K}, "
          f"{args.threads} thread(s)", flush=True)

    index = built("alias index (kgqa.aliases, shared by alias, fuzzy, lexical)", lambda: AliasIndex(names))
    for label, make in [("alias", lambda: AliasGenerator(index)), ("fuzzy", lambda: FuzzyGenerator(index)),
                        ("lexical", lambda: LexicalGenerator(index))]:
        gen = built(label, make)
        print(f"  {label} per mention: {per_call(lambda q: gen.search([q], K), queries)}", flush=True)
        del gen
    if "bm25s" not in args.skip:
        import bm25s

        from kgqa.aliases import normalise

        def make_bm25s():
            r = bm25s.BM25()
            r.index([normalise(n).split() for n in names], show_progress=False)
            return r

        r = built("bm25s (the lexical generator's alternative)", make_bm25s)
        def one(q):
            r.retrieve([normalise(q).split()], k=K, show_progress=False, n_threads=1)

        print(f"  bm25s per mention: {per_call(one, queries[:50])}", flush=True)
        del r
    if "memory" not in args.skip:
        def make_memory():
            m = MemoryIndex()
            for e, n in enumerate(names):
                if any(c.isalnum() for c in n):
                    m.add(n, e)
            m.search(["qqzzqqzz"], 1)  # no such mention: builds the trigram index of the fuzzy lookup
            return m

        mem = built(f"memory ({args.names} remembered mentions)", make_memory)
        print(f"  memory per mention: {per_call(lambda q: mem.search([q], K), queries[:50])}", flush=True)
        del mem
    del index
    if "dense" not in args.skip:
        dim = 384  # all-MiniLM-L6-v2's
        gen_rng = np.random.default_rng(0)
        real = np.load(args.vectors, allow_pickle=False) if args.vectors else None
        for n in ([len(real)] if real is not None else args.dense_sizes):
            if real is not None:
                vecs, dim = real, real.shape[1]
                print(f"dense: real vectors, {args.vectors}", flush=True)
            else:
                vecs = gen_rng.standard_normal((n, dim), dtype=np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            rows = gen_rng.choice(n, size=args.queries, replace=False)
            noisy = vecs[rows] + args.noise * gen_rng.standard_normal((args.queries, dim), dtype=np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            for kind, above in (("exact", n), ("IVF", 0)):
                idx = built(f"dense {kind}, {n} vectors of {dim}", lambda: build_index(vecs, approx_above=above))
                found = idx.search(noisy, K)[1]
                recall = float(np.mean([r in f for r, f in zip(rows, found)]))
                print(f"  dense {kind} at {n}: per mention {per_call(lambda q: idx.search(q[None], K), noisy)}; "
                      f"a batch of {len(noisy)}: {1000 * timed(lambda: idx.search(noisy, K)) / len(noisy):.3f} ms "
                      f"a mention; "
                      f"own row in the top {K}: {recall:.3f}", flush=True)
                del idx
            del vecs
    if "encoder" not in args.skip and args.encoder != "none":
        from kgqa.encoder import TransformerEncoder

        enc = TransformerEncoder(args.encoder)
        with torch.no_grad():
            enc(["warm up"])
            print(f"encoding one mention ({args.encoder}): {per_call(lambda q: enc([q]), queries[:50])}", flush=True)
    return 0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
