"""A TransferNet-style multi-hop step on kgqa_kernels, against TransferNet's own formulation (the
MetaQA-KB model's torch.sparse incidence matrices: e = min(1, ((x M_subj^T) * (r M_rel^T)) M_obj)),
with per-fact weights scored by a model, as TransferNet's MetaQA-Text model scores each fact's text
against the question: here a learned score per fact times the relation probability.

    python examples/transfernet_style.py --check     # tiny KB: answers and all gradients agree
    python examples/transfernet_style.py --bench     # a 1M-fact KB: time of forward + backward

Each step t turns the question state into a distribution over relations r_t; the entity scores
e_t = min(1, follow(e_{t-1}, r_t, kb)), the fact weights sigmoid(score) trained with the rest.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kgqa_kernels as kk  # noqa: E402
from kgqa_kernels.reference.follow import incidence_matrices  # noqa: E402


class Steps(torch.nn.Module):
    """steps hops; relation distributions from a question vector q [B, dim]; learned fact scores."""

    def __init__(self, kb: kk.SparseKB, dim: int, steps: int):
        super().__init__()
        self.steps = steps
        self.to_rel = torch.nn.ModuleList(torch.nn.Linear(dim, kb.num_relations) for _ in range(steps))
        self.fact_score = torch.nn.Parameter(torch.zeros(kb.num_input_facts))
        self.structure = kb

    def forward(self, e, q, hop):
        kb = self.structure.with_weight(torch.sigmoid(self.fact_score))  # three gathers, no build
        for t in range(self.steps):
            r = torch.softmax(self.to_rel[t](q), 1)
            e = torch.clamp(hop(e, r, kb), max=1.0)
        return e


def follow_kernels(e, r, kb):
    return kk.follow(e, r, kb)


_MATRICES = {}  # TransferNet builds its incidence matrices once: per KB structure (the shared subj)


def follow_transfernet(e, r, kb):
    """TransferNet's MetaQA-KB step, ((e M_subj^T) * (r M_rel^T)) M_obj with the fact weights."""
    key = (kb.subj.data_ptr(), e.dtype)
    if key not in _MATRICES:
        _MATRICES[key] = incidence_matrices(kb, dtype=e.dtype)
    m_subj, m_rel, m_obj = _MATRICES[key]
    facts = torch.sparse.mm(m_subj, e.t()).t() * torch.sparse.mm(m_rel, r.t()).t() * kb.weight.to(e.dtype)
    return torch.sparse.mm(m_obj.t(), facts.t()).t()


def problem(entities, relations, facts, batch, dim, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s, p, o = (torch.randint(0, n, (facts,), generator=g) for n in (entities, relations, entities))
    kb = kk.SparseKB(s, p, o, entities, relations)
    e = torch.zeros(batch, entities, dtype=dtype)
    e[torch.arange(batch), torch.randint(0, entities, (batch,), generator=g)] = 1  # one topic entity each
    q = torch.randn(batch, dim, generator=g, dtype=dtype)
    return kb, e, q


def run(model, e, q, hop, target):
    loss = ((model(e, q, hop) - target) ** 2).sum()
    return loss, torch.autograd.grad(loss, [model.fact_score] + [p for lin in model.to_rel for p in lin.parameters()])


def check() -> int:
    kb, e, q = problem(30, 4, 200, 5, 6, dtype=torch.float64)
    torch.manual_seed(0)
    model = Steps(kb, 6, 2).double()
    with torch.no_grad():
        model.fact_score.normal_()
    target = torch.rand(5, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (la, ga), (lb, gb) = (run(model, e, q, hop, target) for hop in (follow_kernels, follow_transfernet))
    worst = max([(la - lb).abs().item()] + [(a - b).abs().max().item() for a, b in zip(ga, gb)])
    print(f"max difference over the loss and the gradients of the fact scores and relation layers: {worst:.2e}")
    # The KB keeps its weights in float32, so the fact scores' gradients pass through float32.
    return 0 if worst < 1e-6 else 1


def bench(entities, facts, batch, repeats):
    kb, e, q = problem(entities, 200, facts, batch, 64)
    model = Steps(kb, 64, 2)
    target = torch.rand(batch, entities)
    for name, hop in (("kgqa_kernels", follow_kernels), ("TransferNet's torch.sparse", follow_transfernet)):
        run(model, e, q, hop, target)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(model, e, q, hop, target)
            times.append(time.perf_counter() - t0)
        print(f"{name}: 2 steps forward + backward {1e3 * sorted(times)[len(times) // 2]:,.1f} ms "
              f"({entities:,} entities, {kb.num_facts:,} facts, B = {batch}, median of {repeats})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--facts", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    status = check() if args.check or not args.bench else 0
    if args.bench:
        bench(args.entities, args.facts, args.batch, args.repeats)
    sys.exit(status)
