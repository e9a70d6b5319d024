"""The adapters for other libraries' graph formats and functions (SparseKB.from_edge_index,
SparseKB.from_incidence, kgqa_kernels.compat.generalized_rspmm), each against a pure-torch
re-statement of the original formulation (the libraries themselves are not installed here),
direction included."""
from collections import Counter

import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import compat

N, R, T, D = 9, 3, 40, 5


def _edges(seed=0, repeats=True):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, N, (2, T), generator=g)
    edge_type = torch.randint(0, R, (T,), generator=g)
    if repeats:  # a repeated edge sends its message once per copy
        edge_index[:, 1], edge_type[1] = edge_index[:, 0], edge_type[0]
    weight = torch.rand(T, generator=g, dtype=torch.float64) + 0.5
    return edge_index, edge_type, weight


def _features(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(R, D, generator=g, dtype=torch.float64, requires_grad=True))


def _distinct(edge_index, edge_type):
    return len(set(zip(edge_index[0].tolist(), edge_type.tolist(), edge_index[1].tolist())))


def pyg_propagate(x, edge_index, edge_type, relation, weight, flow):
    """PyG MessagePassing with aggr="add" and message x_j * relation[type] * w: edge_index[0] is j
    and edge_index[1] is i for flow="source_to_target", the other way for "target_to_source"."""
    j, i = (edge_index[0], edge_index[1]) if flow == "source_to_target" else (edge_index[1], edge_index[0])
    return torch.zeros_like(x).index_add(0, i, x[j] * relation[edge_type] * weight[:, None])


def torchdrug_rspmm(edge_index, edge_type, edge_weight, relation, input):
    """TorchDrug's generalized_rspmm(sum="add", mul="mul"): out[h] sums over edges (h, t, r) of
    edge_weight * relation[r] * input[t]."""
    h, t = edge_index
    return torch.zeros_like(input).index_add(0, h, edge_weight[:, None] * relation[edge_type] * input[t])


def _check_grads(ours, theirs, leaves):
    torch.testing.assert_close(ours, theirs)
    g = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(theirs, leaves, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("flow", ["source_to_target", "target_to_source"])
def test_from_edge_index_follows_pyg_flow(flow):
    edge_index, edge_type, weight = _edges()
    x, relation = _features()
    kb = kk.SparseKB.from_edge_index(edge_index, edge_type, N, R, weight, flow=flow)
    assert kb.num_facts == _distinct(edge_index, edge_type) < T
    ours = kk.follow(x.t(), relation.t(), kb).t()
    _check_grads(ours, pyg_propagate(x, edge_index, edge_type, relation, weight.float().double(), flow), (x, relation))


def test_from_edge_index_defaults_and_errors():
    edge_index, edge_type, _ = _edges(repeats=False)
    key = torch.unique((edge_index[0] * R + edge_type) * N + edge_index[1])  # distinct edges only
    edge_index, edge_type = torch.stack([key // (R * N), key % N]), (key // N) % R
    kb = kk.SparseKB.from_edge_index(edge_index, edge_type, N)
    assert kb.num_relations == int(edge_type.max()) + 1 and kb.weight is None
    one = kk.SparseKB.from_edge_index(edge_index, None, N)
    assert one.num_relations == 1 and torch.equal(one.subj.unique(), edge_index[0].unique())
    with pytest.raises(ValueError, match="flow must be one of"):
        kk.SparseKB.from_edge_index(edge_index, edge_type, N, flow="in")
    with pytest.raises(ValueError, match=r"edge_index must be \[2, num_edges\]"):
        kk.SparseKB.from_edge_index(edge_index.t(), edge_type, N)
    with pytest.raises(ValueError, match=r"edge_index\[1\]\[\d+\] = \d+ is out of range.*num_nodes=3"):
        kk.SparseKB.from_edge_index(torch.tensor([[0, 1], [2, 3]]), None, 3)


@pytest.mark.parametrize("layout", ["coo", "csr", "dense"])
def test_from_incidence_is_the_reifkb_matrix_product(layout):
    # ReifKB / TransferNet: ((x M_subj^T) * (r M_rel^T)) M_obj, fact rows [T, E], [T, R], [T, E],
    # with a repeated row (counted twice, as the product counts it) and non-unit values.
    edge_index, edge_type, weight = _edges()
    rows = torch.arange(T)
    m_subj = torch.sparse_coo_tensor(torch.stack([rows, edge_index[0]]), torch.ones(T, dtype=torch.float64), (T, N))
    m_rel = torch.sparse_coo_tensor(torch.stack([rows, edge_type]), torch.ones(T, dtype=torch.float64), (T, R))
    m_obj = torch.sparse_coo_tensor(torch.stack([rows, edge_index[1]]), weight, (T, N))
    g = torch.Generator().manual_seed(2)
    x = torch.rand(4, N, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.rand(4, R, generator=g, dtype=torch.float64, requires_grad=True)
    theirs = torch.sparse.mm(m_obj.t(), torch.sparse.mm(m_subj, x.t()) * torch.sparse.mm(m_rel, r.t())).t()
    convert = {"coo": lambda m: m, "csr": lambda m: m.to_sparse_csr(), "dense": lambda m: m.to_dense()}[layout]
    kb = kk.SparseKB.from_incidence(convert(m_subj), convert(m_rel), convert(m_obj))
    assert kb.num_facts == _distinct(edge_index, edge_type) < T and kb.weight is not None
    _check_grads(kk.follow(x, r, kb), theirs, (x, r))
    unweighted = kk.SparseKB.from_incidence(m_subj, m_rel, torch.sparse_coo_tensor(torch.stack([rows, edge_index[1]]), torch.ones(T), (T, N)))
    # Each fact's weight is how often it is listed, as the matrix product counts it.
    listed = Counter(zip(edge_index[0].tolist(), edge_type.tolist(), edge_index[1].tolist()))
    got = dict(zip(zip(unweighted.subj.tolist(), unweighted.rel.tolist(), unweighted.obj.tolist()),
                   unweighted.weight.tolist()))
    assert got == {fact: float(n) for fact, n in listed.items()} and max(listed.values()) >= 2


def test_from_incidence_refuses_rows_without_one_fact():
    m = torch.zeros(3, 4)
    m[0, 1] = m[1, 2] = m[2, 3] = 1
    two = m.clone()
    two[1, 0] = 1
    with pytest.raises(ValueError, match="each row of m_rel must hold exactly one nonzero.*row 1 holds 2"):
        kk.SparseKB.from_incidence(m, two, m)
    with pytest.raises(ValueError, match="each row of m_obj must hold exactly one nonzero.*row 2 holds 0"):
        kk.SparseKB.from_incidence(m, m, m * torch.tensor([[1.0], [1.0], [0.0]]))
    with pytest.raises(ValueError, match="one row per fact"):
        kk.SparseKB.from_incidence(m, m[:2], m)


def test_generalized_rspmm_is_torchdrugs():
    edge_index, edge_type, weight = _edges()
    input, relation = _features()
    ours = compat.generalized_rspmm(edge_index, edge_type, weight, relation, input)
    assert ours.shape == (N, D) and ours.is_contiguous()
    _check_grads(ours, torchdrug_rspmm(edge_index, edge_type, weight.float().double(), relation, input),
                 (input, relation))
    # It sums into edge_index[0]: PyG's default flow would be another answer.
    pyg = pyg_propagate(input, edge_index, edge_type, relation, weight.float().double(), "source_to_target")
    assert not torch.allclose(ours, pyg)
    with pytest.raises(ValueError, match="sum must be one of"):
        compat.generalized_rspmm(edge_index, edge_type, weight, relation, input, sum="mean")
    with pytest.raises(ValueError, match="must share d"):
        compat.generalized_rspmm(edge_index, edge_type, weight, relation[:, :2], input)


def test_generalized_rspmm_builds_the_kb_once_per_unchanged_graph():
    edge_index, edge_type, weight = _edges()
    input, relation = _features()
    compat.generalized_rspmm(edge_index, edge_type, weight, relation, input)
    kb = compat._last_kb[2]
    compat.generalized_rspmm(edge_index, edge_type, weight, relation, input)
    assert compat._last_kb[2] is kb  # the same graph: reused
    edge_index[0, 3] = (edge_index[0, 3] + 1) % N  # written in place: rebuilt, and the answer follows
    ours = compat.generalized_rspmm(edge_index, edge_type, weight, relation, input)
    assert compat._last_kb[2] is not kb
    torch.testing.assert_close(ours, torchdrug_rspmm(edge_index, edge_type, weight.float().double(), relation, input))
    copy = edge_index.clone()  # another tensor with the same values: rebuilt (identity, not address)
    compat.generalized_rspmm(copy, edge_type, weight, relation, input)
    assert compat._last_kb[0][0]() is copy


def test_generalized_rspmm_trains_edge_weights_and_maps_new_ones_onto_one_structure():
    """ULTRA's and NBFNet's edge_weight: a weight that requires grad gets TorchDrug's gradient, a
    repeated edge's copies each theirs; a new weight tensor on the same graph reuses its structure,
    and a weight changed in place is read anew."""
    edge_index, edge_type, weight = _edges()
    input, relation = _features()
    w = weight.float().double().requires_grad_()  # values the KB's float32 weights hold exactly
    ours = compat.generalized_rspmm(edge_index, edge_type, w, relation, input)
    structure = compat._last_kb[2]
    _check_grads(ours, torchdrug_rspmm(edge_index, edge_type, w, relation, input), (input, relation, w))
    w2 = (weight * 3).float().double().requires_grad_()
    ours = compat.generalized_rspmm(edge_index, edge_type, w2, relation, input)
    assert compat._last_kb[2] is structure
    _check_grads(ours, torchdrug_rspmm(edge_index, edge_type, w2, relation, input), (input, relation, w2))
    plain = weight.clone()
    compat.generalized_rspmm(edge_index, edge_type, plain, relation, input)
    plain.mul_(2)
    torch.testing.assert_close(compat.generalized_rspmm(edge_index, edge_type, plain, relation, input),
                               torchdrug_rspmm(edge_index, edge_type, plain.float().double(), relation, input))
    assert compat._last_kb[2] is structure


def torchdrug_rspmm_general(edge_index, edge_type, edge_weight, relation, input, sum, mul):
    """TorchDrug's generalized_rspmm: out[h] = (+)/max/min over edges (h, t, r) of edge_weight (x)
    relation[r] (x) input[t], (x) being * or +; nodes without edges get 0."""
    h, t = edge_index
    w = edge_weight[:, None]
    msg = w * relation[edge_type] * input[t] if mul == "mul" else w + relation[edge_type] + input[t]
    out = torch.zeros_like(input)
    if sum == "add":
        return out.index_add(0, h, msg)
    return out.scatter_reduce(0, h[:, None].expand_as(msg), msg, "amax" if sum == "max" else "amin",
                              include_self=False)


@pytest.mark.parametrize("sum_", ["add", "max", "min"])
@pytest.mark.parametrize("mul", ["mul", "add"])
def test_generalized_rspmm_other_reductions_and_messages(sum_, mul):
    edge_index, edge_type, weight = _edges(repeats=False)
    key = torch.unique((edge_index[0] * R + edge_type) * N + edge_index[1])  # distinct edges only
    edge_index, edge_type = torch.stack([key // (R * N), key % N]), (key // N) % R
    weight = weight[:key.numel()]
    input, relation = _features()
    w = weight.float().double()
    ours = compat.generalized_rspmm(edge_index, edge_type, w, relation, input, sum=sum_, mul=mul)
    _check_grads(ours, torchdrug_rspmm_general(edge_index, edge_type, w, relation, input, sum_, mul),
                 (input, relation))


def test_generalized_rspmm_refuses_repeated_edges_where_each_copy_is_its_own_message():
    edge_index, edge_type, weight = _edges()  # edge 1 repeats edge 0
    input, relation = _features()
    with pytest.raises(ValueError, match=r"the graph repeats \d+ edges; with sum='add', mul='add'"):
        compat.generalized_rspmm(edge_index, edge_type, weight, relation, input, mul="add")
