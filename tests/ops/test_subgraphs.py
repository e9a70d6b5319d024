"""SubgraphBatch (kgqa_kernels/subgraphs.py): one follow over per-example subgraphs with local ids,
against each example's own SparseKB and the reference, forward and gradients, on every backend."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from kgqa_kernels import reference

R = 4


def _subgraphs(weighted, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for b, (n, t) in enumerate([(5, 12), (3, 0), (12, 30), (1, 2), (8, 8)]):  # example 1 has no facts
        s, p, o = (torch.randint(0, n, (t,), generator=g), torch.randint(0, R, (t,), generator=g),
                   torch.randint(0, n, (t,), generator=g))
        out.append((s, p, o, n) + ((torch.rand(t, generator=g) + 0.5,) if weighted else ()))
    return out


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
def test_each_example_follows_its_own_subgraph(backend, device, weighted, inverse):
    graphs = _subgraphs(weighted)
    batch = kk.SubgraphBatch([tuple(t.to(device) if torch.is_tensor(t) else t for t in g) for g in graphs], R)
    B, n_max = len(graphs), batch.max_entities
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, n_max, generator=g, dtype=torch.float64).to(device).requires_grad_()
    r = torch.rand(B, R, generator=g, dtype=torch.float64).to(device).requires_grad_()
    y = batch.follow(x, r, inverse=inverse, backend=backend)
    assert y.shape == (B, n_max)
    upstream = torch.rand(B, n_max, generator=g, dtype=torch.float64).to(device)
    dx, dr = torch.autograd.grad(y, (x, r), upstream)
    for b, graph in enumerate(graphs):
        n = graph[3]
        xb = x[b:b + 1, :n].detach().cpu().requires_grad_()
        rb = r[b:b + 1].detach().cpu().requires_grad_()
        assert torch.equal(y[b, n:].cpu(), torch.zeros(n_max - n, dtype=y.dtype))  # padding stays zero
        if graph[0].numel() == 0:
            want = torch.zeros(1, n, dtype=torch.float64)
            assert torch.equal(y[b, :n].cpu(), want[0]) and torch.equal(dr[b].cpu(), torch.zeros(R, dtype=torch.float64))
            continue
        own = kk.SparseKB(*graph[:3], n, R, graph[4] if weighted else None)
        want = reference.follow_dense(xb, rb, own, inverse=inverse)
        cases.assert_close(y[b:b + 1, :n], want)
        want_dx, want_dr = torch.autograd.grad(want, (xb, rb), upstream[b:b + 1, :n].cpu())
        cases.assert_close(dx[b:b + 1, :n], want_dx)
        cases.assert_close(dr[b:b + 1], want_dr)
        assert torch.equal(dx[b, n:].cpu(), torch.zeros(n_max - n, dtype=dx.dtype))  # padding gets no gradient


def test_per_example_fact_weights_train(backend, device):
    """Edge weights computed per batch (edge dropout, learned per-example weights): each subgraph's
    weight that requires grad gets the gradient its own SparseKB would give it."""
    graphs = _subgraphs(True)
    ws = [g[4].double().float().double().to(device).requires_grad_() for g in graphs]  # float32 values
    batch = kk.SubgraphBatch([tuple(t.to(device) for t in g[:3]) + (g[3], w) for g, w in zip(graphs, ws)], R)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(len(graphs), batch.max_entities, generator=g, dtype=torch.float64).to(device)
    r = torch.rand(len(graphs), R, generator=g, dtype=torch.float64).to(device)
    grads = torch.autograd.grad(batch.follow(x, r, backend=backend).sum(), ws)
    for b, (graph, w) in enumerate(zip(graphs, ws)):
        if graph[0].numel() == 0:
            assert grads[b].shape == (0,)
            continue
        n = graph[3]
        leaf = w.detach().cpu().requires_grad_()
        own = kk.SparseKB(*graph[:3], n, R, leaf)
        (want,) = torch.autograd.grad(kk.follow(x[b:b + 1, :n].cpu(), r[b:b + 1].cpu(), own, backend="reference").sum(),
                                      (leaf,))
        cases.assert_close(grads[b], want)


def test_padding_is_ignored_and_bad_input_is_named():
    graphs = _subgraphs(False)
    batch = kk.SubgraphBatch(graphs, R)
    x = torch.rand(len(graphs), batch.max_entities)
    noisy = x.clone()
    for b, graph in enumerate(graphs):
        noisy[b, graph[3]:] = 1e6
    r = torch.rand(len(graphs), R)
    assert torch.equal(batch.follow(x, r), batch.follow(noisy, r))
    assert torch.equal(batch.unpack(batch.pack(noisy)), batch.unpack(batch.pack(x)))
    with pytest.raises(ValueError, match=r"r must be \[B=5, num_relations=4\]"):
        batch.follow(x, r[:, :2])
    with pytest.raises(ValueError, match=r"x must be \[B=5, max_entities=12\]"):
        batch.follow(x[:, :3], r)
    with pytest.raises(ValueError, match=r"subgraphs\[1\].*obj\[0\] = 3 is out of range"):
        kk.SubgraphBatch([graphs[0], ([0], [0], [3], 3)], R)
    with pytest.raises(ValueError, match="give a weight to every subgraph or to none"):
        kk.SubgraphBatch([graphs[0], ([0], [0], [1], 3, [1.0])], R)
    with pytest.raises(ValueError, match="hold no facts"):
        kk.SubgraphBatch([([], [], [], 2)], R)
