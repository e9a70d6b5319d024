"""Memory and build time of the entity resolver's per-entity relations (kgqa.resolver.EntityFacts,
kept sparse) on a generated KB, against the dense [entities, relations] float32 table it replaced;
and the time a batch's candidates take to find their (candidate, relation) pairs.

    python benchmarks/entity_facts.py --entities 2000000 --facts 20000000 --relations 1000

Subjects are heavy-tailed (hubs), objects and relations uniform. Peak memory: run it under
``/usr/bin/time -v``.
"""
from __future__ import annotations

import argparse
import time

import torch

from kgqa.kb import KnowledgeBase
from kgqa.resolver import EntityFacts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=2_000_000)
    ap.add_argument("--facts", type=int, default=20_000_000)
    ap.add_argument("--relations", type=int, default=1000, help="without inverses")
    ap.add_argument("--candidates", type=int, default=5120, help="a batch's candidates (64 x 8 spans x 10)")
    a = ap.parse_args(argv)
    E, T, R = a.entities, a.facts, a.relations
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(T, generator=g) ** 3 * E).long()
    o = torch.randint(0, E, (T,), generator=g)
    p = torch.randint(0, R, (T,), generator=g)
    kb = KnowledgeBase.__new__(KnowledgeBase)  # only what EntityFacts reads: no SparseKB to build
    kb.triples, kb.base_relations = torch.stack([s, p, o], 1), [str(i) for i in range(R)]
    kb.relations, kb.entities = kb.base_relations * 2, [""] * E
    t = time.perf_counter()
    facts = EntityFacts(kb)
    built = time.perf_counter() - t
    sparse = (facts.rel_ids.nbytes + facts.rel_ptr.nbytes) / 2**20
    print(f"{E:,} entities, {T:,} facts, {2 * R:,} relations with inverses: {len(facts.rel_ids):,} (entity, relation) "
          f"pairs in {sparse:.0f} MiB, built in {built:.1f} s; a dense float32 table: {E * 2 * R * 4 / 2**30:.1f} GiB")
    ent = torch.randint(0, E, (a.candidates,), generator=g)
    t = time.perf_counter()
    at, _ = facts.relations_of(ent, torch.ones_like(ent, dtype=torch.bool))
    print(f"a batch of {a.candidates:,} candidates: {len(at):,} pairs in {(time.perf_counter() - t) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
