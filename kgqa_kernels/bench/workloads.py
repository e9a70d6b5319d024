"""The KBs and inputs the suite runs on."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..kb import SparseKB
from ..kb_file import read_triples
from ..synthetic import power_law_kb

# MetaQA's movie KB: 43,234 entities, 134,741 facts, 9 relations (18 with inverses).
METAQA_SHAPE = dict(num_entities=43_234, num_relations=9, num_facts=134_741)


def load_triples(path: str):
    """`subject|relation|object` (MetaQA kb.txt) or tab-separated lines -> (subj, rel, obj,
    num_entities, num_relations), read by the package's one KB file reader (``kb_file``). A
    malformed line raises ValueError (``kb_file.KBFormatError``) naming the file and line."""
    f = read_triples(path)
    s, p, o = (c.contiguous() for c in f.triples.unbind(1))
    return s, p, o, len(f.entities), len(f.relations)


def with_inverses(s, p, o, num_relations):
    """Relation r's inverse is relation r + num_relations, as KGQA models use them."""
    return torch.cat([s, o]), torch.cat([p, p + num_relations]), torch.cat([o, s]), 2 * num_relations


@dataclass(frozen=True)
class KBSpec:
    name: str
    num_entities: int
    num_relations: int
    num_facts: int
    path: Optional[str] = None
    exponent: float = 1.1  # the Zipf exponent of a generated KB (power_law_kb's skew)

    def build(self) -> SparseKB:
        if self.path:
            s, p, o, e, r = load_triples(self.path)
            s, p, o, r = with_inverses(s, p, o, r)
            return SparseKB(s, p, o, e, r)
        return power_law_kb(self.num_entities, self.num_relations, self.num_facts, exponent=self.exponent, seed=0)


def kb_specs(metaqa_path: Optional[str] = None) -> dict:
    m = METAQA_SHAPE
    specs = {
        # MetaQA's shape with inverses: 18 relations, every fact in both directions.
        "small": KBSpec("powerlaw-20k", 2_000, 18, 20_000),  # where a dense [R, E, E] einsum fits
        "metaqa": KBSpec("metaqa-shape", m["num_entities"], 2 * m["num_relations"], 2 * m["num_facts"]),
        "pl-1m": KBSpec("powerlaw-1M", 1_000_000, 1000, 1_000_000),
        "pl-10m": KBSpec("powerlaw-10M", 1_000_000, 1000, 10_000_000),
        "pl-30m": KBSpec("powerlaw-30M", 3_000_000, 1000, 30_000_000),
    }
    if metaqa_path:
        if not os.path.isfile(metaqa_path):
            raise FileNotFoundError(f"--metaqa-kb: no file {metaqa_path}")
        specs["metaqa"] = KBSpec("metaqa-kb.txt", 0, 0, 0, path=metaqa_path)
    return specs


def make_inputs(kb: SparseKB, batch: int, x_kind: str, device, seed: int = 0, k: int = 1):
    """k branches of (x [B, E], r [B, R]). x_kind: "dense" (a later hop: softmax-like weights on
    every entity) or "one-hot" (a first hop: one topic entity per example). x comes in the
    batch-innermost layout that follow returns, so chained hops pay no transpose; a one-hot x is
    built row-major, as a user builds seeds."""
    # Offset from the KB generator's seed: the same seed would make the first topic entity the KB's
    # largest hub (its id is the first draw of the same random stream).
    g = torch.Generator().manual_seed(seed + 1_000_003)
    xs, rs = [], []
    for _ in range(k):
        if x_kind == "dense":
            x = torch.rand(kb.num_entities, batch, generator=g).t()
        elif x_kind == "one-hot":
            x = torch.zeros(batch, kb.num_entities)
            x[torch.arange(batch), torch.randint(0, kb.num_entities, (batch,), generator=g)] = 1.0
        else:
            raise ValueError(f"x_kind must be 'dense' or 'one-hot', got {x_kind!r}")
        xs.append(x.to(device))
        rs.append(torch.softmax(torch.randn(batch, kb.num_relations, generator=g), -1).to(device))
    return xs, rs
