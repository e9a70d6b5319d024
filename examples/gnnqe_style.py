"""A GNN-QE-style fuzzy-set query traversal on kgqa_kernels (Zhu et al. 2022, "Neural-Symbolic
Models for Logical Queries on Knowledge Graphs"), against the original pure-torch formulation: the
relation projection as gather + scatter_reduce(..., "amax", include_self=False) over an edge list,
as GNN-QE's symbolic traversal and torch_scatter's scatter_max compute it, with trainable fact
weights (edge dropout as weights, or a learned confidence per fact).

    python examples/gnnqe_style.py --check                       # tiny KG: outputs and all gradients agree
    python examples/gnnqe_style.py --check --backend reference   # the same on the reference backend
    python examples/gnnqe_style.py --bench                       # a 1M-fact KG: time of forward + backward

Fuzzy sets of entities hold values in [0, 1]. The projection of x through relation weights r:
y[b, o] = max over facts (s, p, o) of x[b, s] * r[b, p] * w (max-product composition), 0 where no
fact reaches o: ``kgqa_kernels.follow(x, r, kb, reduce="max")``. Intersection is the product
t-norm, union the maximum (Goedel), negation 1 - x. The query, per example b:

    ((e1, r1, ?) AND (e2, r2, ?)) OR (e3, r3, ?)  -- then r4 --> ?  AND NOT (e5, r5, ?)

the four anchored projections run as one follow over a 4B batch. The relation weights r[b, :] =
sigmoid(relation_logits[query relation]) (a learned soft match of the query's relation against the
KG's), the fact weights sigmoid(fact_score); both train.

Max sends the gradient to the winning fact, ties split evenly (torch.scatter_reduce's rule; note
that torch_scatter's scatter_max gives a tie's whole gradient to one of them). scatter_reduce's
backward also counts the excluded initial 0 as a tie where a row's max is 0 (docs/ops.md); here such
rows' gradients reach no parameter, so the original still serves as the check. ``--backend``
(default: the package default) is passed to every kgqa_kernels call.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kgqa_kernels as kk  # noqa: E402


class Traversal(torch.nn.Module):
    """The query above on a KB; ``ops`` decides how each fuzzy-set operation is computed."""

    def __init__(self, kb: kk.SparseKB):
        super().__init__()
        r = kb.num_relations
        # Each query relation matches its own KG relation (logit 4) far more than the others (-4).
        self.relation_logits = torch.nn.Parameter(8 * torch.eye(r) - 4 + 0.5 * torch.randn(r, r))
        self.fact_score = torch.nn.Parameter(torch.randn(kb.num_input_facts) + 2)
        self.structure = kb

    def forward(self, anchors, relations, ops):
        """anchors [B, 4] entity ids (e1, e2, e3, e5), relations [B, 5] relation ids (r1..r5)."""
        E, B = self.structure.num_entities, anchors.shape[0]
        w = torch.sigmoid(self.fact_score)
        rel = torch.sigmoid(self.relation_logits)
        seeds = torch.zeros(4 * B, E, dtype=w.dtype, device=anchors.device)
        seeds[torch.arange(4 * B, device=anchors.device), anchors.t().reshape(-1)] = 1
        first = relations[:, [0, 1, 2, 4]].t().reshape(-1)  # r1, r2, r3, r5: branch-major like the seeds
        a, c, u3, n = ops.project(seeds, rel[first], w).split(B)
        union = ops.union(ops.intersect(a, c), u3)
        y = ops.project(union, rel[relations[:, 3]], w)
        return ops.intersect(y, ops.negate(n))


class Kernels:
    """kgqa_kernels: follow(reduce="max") over a KB re-weighted per call (three gathers, no build)."""

    def __init__(self, kb: kk.SparseKB, backend=None):
        self.kb, self.backend = kb, backend

    def project(self, x, r, w):
        return kk.follow(x, r, self.kb.with_weight(w), reduce="max", backend=self.backend)

    def intersect(self, a, b):
        return kk.intersect(a, b, tnorm="product", backend=self.backend)

    def union(self, a, b):
        return kk.union(a, b, tnorm="max", backend=self.backend)

    def negate(self, x):
        return 1 - x


class Original:
    """The pure-torch formulation: an edge list, gather the messages [B, T], scatter_reduce amax."""

    def __init__(self, subj, rel, obj, num_entities):
        self.subj, self.rel, self.obj, self.num_entities = subj, rel, obj, num_entities

    def project(self, x, r, w):
        msgs = x[:, self.subj] * r[:, self.rel] * w
        out = x.new_zeros(x.shape[0], self.num_entities)
        return out.scatter_reduce(1, self.obj.expand(x.shape[0], -1), msgs, "amax", include_self=False)

    def intersect(self, a, b):
        return a * b

    def union(self, a, b):
        return torch.maximum(a, b)

    def negate(self, x):
        return 1 - x


def problem(entities, relations, facts, batch, seed=0, device="cpu"):
    """A random KG without repeated facts (the KB would merge a repeat into one fact, the edge list
    keep both), and `batch` random queries."""
    g = torch.Generator().manual_seed(seed)
    s, p, o = (torch.randint(0, n, (facts,), generator=g) for n in (entities, relations, entities))
    key = torch.unique((s * relations + p) * entities + o)
    s, p, o = key // (relations * entities), key // entities % relations, key % entities
    anchors = torch.randint(0, entities, (batch, 4), generator=g)
    rels = torch.randint(0, relations, (batch, 5), generator=g)
    kb = kk.SparseKB(s, p, o, entities, relations).to(device)
    return kb, (s.to(device), p.to(device), o.to(device)), anchors.to(device), rels.to(device)


def run(model, anchors, rels, ops, upstream):
    out = model(anchors, rels, ops)
    return out, torch.autograd.grad(out, (model.relation_logits, model.fact_score), upstream)


def check(backend=None) -> int:
    kb, (s, p, o), anchors, rels = problem(30, 4, 200, 5)
    torch.manual_seed(0)
    model = Traversal(kb).double()
    upstream = torch.randn(5, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (a, ga), (b, gb) = (run(model, anchors, rels, ops, upstream)
                        for ops in (Kernels(kb, backend), Original(s, p, o, kb.num_entities)))
    worst = max([(a - b).abs().max().item()] + [(x - y).abs().max().item() for x, y in zip(ga, gb)])
    print(f"max difference over the answers and the gradients of the relation logits and fact scores "
          f"(backend {backend or kk.get_backend()}): {worst:.2e}")
    # The KB keeps its weights in float32, so the fact weights pass through float32 (the original
    # uses them unrounded): agreement to about float32's precision, the rest is float64.
    ok = worst < 1e-6 and a.abs().sum() > 0 and all(g.abs().sum() > 0 for g in ga)
    return 0 if ok else 1


def bench(entities, facts, batch, repeats, backend=None):
    kb, (s, p, o), anchors, rels = problem(entities, 200, facts, batch)
    torch.manual_seed(0)
    model = Traversal(kb)
    upstream = torch.randn(batch, entities)
    medians = []
    for name, ops in ((f"kgqa_kernels (backend {backend or kk.get_backend()})", Kernels(kb, backend)),
                      ("pure torch (gather + scatter_reduce amax)", Original(s, p, o, entities))):
        run(model, anchors, rels, ops, upstream)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(model, anchors, rels, ops, upstream)
            times.append(time.perf_counter() - t0)
        medians.append(sorted(times)[len(times) // 2])
        print(f"{name}: 2-hop query forward + backward {1e3 * medians[-1]:,.1f} ms "
              f"({entities:,} entities, {kb.num_facts:,} facts, B = {batch}, median of {repeats})")
    print(f"speed-up of kgqa_kernels over pure torch: {medians[1] / medians[0]:.2f}x")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--backend", default=None, help="passed to every kgqa_kernels call (default: the package default)")
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--facts", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    status = check(args.backend) if args.check or not args.bench else 0
    if args.bench:
        bench(args.entities, args.facts, args.batch, args.repeats, args.backend)
    sys.exit(status)
