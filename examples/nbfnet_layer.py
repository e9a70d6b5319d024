"""An NBFNet / ULTRA-style relational message-passing layer on kgqa_kernels, against the original
pure-torch formulation (TorchDrug's generalized_rspmm with sum="add", mul="mul", restated with
index_add as those projects' fallback does), with trainable edge weights (edge dropout as weights,
or learned per-edge weights).

    python examples/nbfnet_layer.py --check          # tiny graph: outputs and all gradients agree
    python examples/nbfnet_layer.py --bench          # a larger graph: time of forward + backward

The layer: h' = relu(linear(h + sum over edges (h, t) of w * rel[type] * h[t])), with the
relation embeddings a parameter, as in ULTRA's GeneralizedRelationalConv (no PNA).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kgqa_kernels import compat  # noqa: E402


def rspmm_torch(edge_index, edge_type, edge_weight, relation, input):
    """The original: out[h] = sum over edges (h, t, r) of edge_weight * relation[r] * input[t]."""
    h, t = edge_index
    return torch.zeros_like(input).index_add(0, h, edge_weight[:, None] * relation[edge_type] * input[t])


class RelationalConv(torch.nn.Module):
    def __init__(self, num_relations: int, dim: int, rspmm=compat.generalized_rspmm):
        super().__init__()
        self.relation = torch.nn.Parameter(torch.randn(num_relations, dim) / dim ** 0.5)
        self.linear = torch.nn.Linear(dim, dim)
        self.rspmm = rspmm

    def forward(self, edge_index, edge_type, edge_weight, h):
        return torch.relu(self.linear(h + self.rspmm(edge_index, edge_type, edge_weight, self.relation, h)))


def graph(nodes: int, edges: int, relations: int, dim: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, nodes, (2, edges), generator=g)
    edge_type = torch.randint(0, relations, (edges,), generator=g)
    # Weights the KB stores exactly (it keeps float32): edge dropout's 0/1 mask times a learned scale.
    keep = (torch.rand(edges, generator=g) > 0.1).to(dtype)
    edge_weight = (keep * (torch.rand(edges, generator=g) + 0.5)).float().to(dtype).requires_grad_()
    h = torch.randn(nodes, dim, generator=g, dtype=dtype).requires_grad_()
    return edge_index, edge_type, edge_weight, h


def run(layer, edge_index, edge_type, edge_weight, h, upstream):
    out = layer(edge_index, edge_type, edge_weight, h)
    grads = torch.autograd.grad(out, (h, edge_weight, layer.relation, layer.linear.weight), upstream)
    return out, grads


def check() -> int:
    torch.manual_seed(0)
    edge_index, edge_type, edge_weight, h = graph(40, 300, 5, 8, dtype=torch.float64)
    ours = RelationalConv(5, 8).double()
    theirs = RelationalConv(5, 8, rspmm=rspmm_torch).double()
    theirs.load_state_dict(ours.state_dict())
    upstream = torch.randn(40, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (a, ga), (b, gb) = (run(m, edge_index, edge_type, edge_weight, h, upstream) for m in (ours, theirs))
    worst = max([(a - b).abs().max().item()] + [(x - y).abs().max().item() for x, y in zip(ga, gb)])
    print(f"max difference over the output and the gradients of h, edge_weight, relation, linear: {worst:.2e}")
    # The KB keeps its weights in float32, so edge_weight's gradient passes through float32 (the
    # rest is float64 throughout).
    return 0 if worst < 1e-6 else 1


def bench(nodes: int, edges: int, dim: int, repeats: int) -> None:
    edge_index, edge_type, edge_weight, h = graph(nodes, edges, 100, dim)
    upstream = torch.randn(nodes, dim)
    for name, rspmm in (("kgqa_kernels", compat.generalized_rspmm), ("pure torch (index_add)", rspmm_torch)):
        layer = RelationalConv(100, dim, rspmm)
        run(layer, edge_index, edge_type, edge_weight, h, upstream)  # warm-up (and the KB's one build)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(layer, edge_index, edge_type, edge_weight, h, upstream)
            times.append(time.perf_counter() - t0)
        print(f"{name}: forward + backward {1e3 * sorted(times)[len(times) // 2]:,.1f} ms "
              f"({nodes:,} nodes, {edges:,} edges, dim {dim}, median of {repeats})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    status = check() if args.check or not args.bench else 0
    if args.bench:
        bench(args.nodes, args.edges, args.dim, args.repeats)
    sys.exit(status)
