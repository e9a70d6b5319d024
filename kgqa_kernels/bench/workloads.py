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
    # Subjects' and objects' own exponents (None: `exponent`; 0: uniform), as power_law_kb takes them.
    subject_exponent: Optional[float] = None
    object_exponent: Optional[float] = None

    def build(self) -> SparseKB:
        if self.path:
            s, p, o, e, r = load_triples(self.path)
            s, p, o, r = with_inverses(s, p, o, r)
            return SparseKB(s, p, o, e, r)
        return power_law_kb(self.num_entities, self.num_relations, self.num_facts, exponent=self.exponent,
                            subject_exponent=self.subject_exponent, object_exponent=self.object_exponent, seed=0)


# The KB-shape family: (key, subject exponent, object exponent; 0 = uniform). Relations keep the
# default skew in every member, so members differ only in how facts spread over entities: subject
# skew decides how scattered a pull's reads of x are, object skew how uneven its output rows are.
FAMILY_SHAPES = [
    ("zipf-0.8", 0.8, 0.8),
    ("zipf-1.0", 1.0, 1.0),
    ("zipf-1.2", 1.2, 1.2),
    ("zipf-s1.2-o0.8", 1.2, 0.8),
    ("zipf-s0.8-o1.2", 0.8, 1.2),
    ("zipf-s1.2-uniform", 1.2, 0.0),
]
# (key suffix, entities, relations, facts): the size the targets are judged at, and a tenth of it
# for smoke runs.
FAMILY_SIZES = [("", 1_000_000, 1000, 10_000_000), ("-small", 100_000, 1000, 1_000_000)]
# Names for sets of keys that --kbs accepts; MetaQA's shape belongs to both sizes of the family.
KB_GROUPS = {
    "family": [key for key, _, _ in FAMILY_SHAPES] + ["metaqa"],
    "family-small": [key + "-small" for key, _, _ in FAMILY_SHAPES] + ["metaqa"],
}


def expand_kb_keys(keys) -> list:
    """KB keys with group names (KB_GROUPS) replaced by their members, first occurrence kept."""
    out = []
    for key in keys:
        for k in KB_GROUPS.get(key, [key]):
            if k not in out:
                out.append(k)
    return out


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
    for key, s_exp, o_exp in FAMILY_SHAPES:
        for suffix, e, r, t in FAMILY_SIZES:
            name = f"{key}-{t // 1_000_000}M"
            specs[key + suffix] = KBSpec(name, e, r, t, subject_exponent=s_exp, object_exponent=o_exp)
    if metaqa_path:
        if not os.path.isfile(metaqa_path):
            raise FileNotFoundError(f"--metaqa-kb: no file {metaqa_path}")
        specs["metaqa"] = KBSpec("metaqa-kb.txt", 0, 0, 0, path=metaqa_path)
    return specs


@dataclass(frozen=True)
class XKind:
    dense: bool  # weights on many entities (a later hop) rather than one seed per example
    row_major: bool  # [B, E] with E innermost, as users build x; else batch-innermost ([E, B] transposed)
    requires_grad: bool  # whether the backward modes differentiate into x too
    same_forward_as: Optional[str] = None  # the x kind that differs only in requires_grad


X_KINDS = {
    # A later hop as follow returns it: batch-innermost, so chained hops pay no transpose.
    "dense": XKind(dense=True, row_major=False, requires_grad=True),
    # A later hop as users pass it: a row-major [B, E] tensor, about half zeros.
    "dense-rowmajor": XKind(dense=True, row_major=True, requires_grad=True),
    "dense-rowmajor-nograd": XKind(dense=True, row_major=True, requires_grad=False, same_forward_as="dense-rowmajor"),
    # A first hop: one topic entity per example, built row-major as users build seeds; seeds are constants.
    "one-hot": XKind(dense=False, row_major=True, requires_grad=False),
}


def make_inputs(kb: SparseKB, batch: int, x_kind: str, device, seed: int = 0, k: int = 1, hops: int = 1):
    """k branches of (x [B, E], r [B, R]), and for chained hops (hops > 1, k = 1) one r per hop.
    x_kind: a key of X_KINDS."""
    if x_kind not in X_KINDS:
        raise ValueError(f"x_kind must be one of {', '.join(X_KINDS)}, got {x_kind!r}")
    # Offset from the KB generator's seed: the same seed would make the first topic entity the KB's
    # largest hub (its id is the first draw of the same random stream).
    g = torch.Generator().manual_seed(seed + 1_000_003)
    xk = X_KINDS[x_kind]
    xs, rs = [], []
    for _ in range(k):
        if xk.dense and not xk.row_major:
            x = torch.rand(kb.num_entities, batch, generator=g).t()
        elif xk.dense:
            x = torch.rand(batch, kb.num_entities, generator=g)
            x[x < 0.5] = 0.0
        else:
            x = torch.zeros(batch, kb.num_entities)
            x[torch.arange(batch), torch.randint(0, kb.num_entities, (batch,), generator=g)] = 1.0
        xs.append(x.to(device))
        rs.append(torch.softmax(torch.randn(batch, kb.num_relations, generator=g), -1).to(device))
    # Later hops' relations are drawn after the branches, so the first hop's inputs do not depend on hops.
    for _ in range(hops - k):
        rs.append(torch.softmax(torch.randn(batch, kb.num_relations, generator=g), -1).to(device))
    return xs, rs


def make_upstream_grad(kb: SparseKB, batch: int, device, seed: int = 0) -> torch.Tensor:
    """The gradient of a loss with respect to follow's output, as a model hands it back: a
    materialised row-major [B, E] tensor (not the expanded ones of sum())."""
    g = torch.Generator().manual_seed(seed + 2_000_003)
    return torch.randn(batch, kb.num_entities, generator=g).to(device)
