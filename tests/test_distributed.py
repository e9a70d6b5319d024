"""ShardedSparseKB on 2 and 3 gloo processes (CPU): the sharded hop, its gradients, the sparse
frontier, inverse hops, a two-hop chain with a local intersection and the helpers all equal the
single-process ops, in float64.

Starting processes is the slow part (each imports torch), so each world size is spawned once and
its processes run every scenario below in turn; each scenario is reported as its own test, with
the traceback of every rank where it failed. The processes get a collective timeout and the
parent a deadline, so a hang fails the tests instead of stalling them."""
import datetime
import os
import warnings

import pytest
import torch
import torch.distributed as dist

import kgqa_kernels as kk
from kgqa_kernels.distributed import functions as kd_functions
from kgqa_kernels import reference
from kbgen import edge_case_kb, power_law_kb, random_facts, random_kb
from ranks import record_scenarios, spawn_ranks

WORLD_SIZES = (2, 3)
COLLECTIVE_TIMEOUT_S = 30  # a collective that waits longer raises in the worker
DEADLINE_S = 240  # the whole world size, processes included
SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def close(a, b):
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def shard(kb, **kw):
    return kk.ShardedSparseKB(kb.subj, kb.rel, kb.obj, kb.num_entities, kb.num_relations, weight=kb.weight, **kw)


def inputs(kb, B, seed=0, density=None):
    """Replicated float64 x [B, E], r [B, R] (the same on every rank: the same seed)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, kb.num_entities, generator=g, dtype=torch.float64)
    if density is not None:
        x = x * (torch.rand(B, kb.num_entities, generator=g, dtype=torch.float64) < density)
    r = torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64)
    return x, r


def grads_single(kb, x, r, g, inverse=False, sparse=False):
    """(y, dx, dr) of the single-process op for the loss (y * g).sum()."""
    xs = (x.to_sparse() if sparse else x.clone()).requires_grad_()
    rs = r.clone().requires_grad_()
    y = kk.follow(xs, rs, kb, inverse=inverse)
    (y * g).sum().backward()
    return y.detach(), xs.grad.to_dense() if sparse else xs.grad, rs.grad


def grads_sharded(skb, x, r, g, inverse=False, direction="auto", sparse=False):
    """(y_local, dx_local, dr) of the sharded op for the per-rank loss (y_local * g_local).sum()."""
    lo, hi = skb.shard_range()
    xl = x[:, lo:hi].clone()
    xl = (xl.to_sparse() if sparse else xl).requires_grad_()
    rl = r.clone().requires_grad_()
    y = skb.follow(xl, rl, inverse=inverse, direction=direction)
    (y * g[:, lo:hi]).sum().backward()
    return y.detach(), xl.grad.to_dense() if sparse else xl.grad, rl.grad


def check_grads(skb, kb, x, r, g, **kw):
    """The sharded hop's output slice and gradients equal the single-process op's; returns the
    sharded (y, dx, dr)."""
    lo, hi = skb.shard_range()
    y1, dx1, dr1 = grads_single(kb, x, r, g, **kw)
    y, dx, dr = grads_sharded(skb, x, r, g, **kw)
    close(y, y1[:, lo:hi])
    close(dx, dx1[:, lo:hi])
    close(dr, dr1)
    return y, dx, dr


class count_calls:
    """Counts the uses of one of the sharded autograd functions (which path a hop took)."""

    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __enter__(self):
        orig = self.fn.apply

        def apply(*args):
            self.n += 1
            return orig(*args)

        self.fn.apply = apply
        return self

    def __exit__(self, *exc):
        del self.fn.apply  # back to torch.autograd.Function.apply


# ---- the scenarios: each runs on every rank ---------------------------------------------------

@scenario
def forward_matches_single_process(rank, world):
    kbs = [random_kb(23, 4, 120, weighted=True, seed=1), edge_case_kb(), edge_case_kb(weighted=True, index_dtype=torch.int64)]
    for kb in kbs:
        skb = shard(kb)
        lo, hi = skb.shard_range()
        assert (lo, hi) == tuple(kk.shard_bounds(kb.num_entities, world)[rank : rank + 2])
        assert skb.num_facts == kb.num_facts and sum(skb.facts_per_rank) == kb.num_facts
        for B in (1, 5):
            x, r = inputs(kb, B, seed=B)
            full = kk.follow(x, r, kb)
            close(full, reference.follow_dense(x, r, kb))
            for direction in ("auto", "pull", "push"):
                y = skb.follow(x[:, lo:hi], r, direction=direction)
                assert y.shape == (B, hi - lo) and y.dtype == torch.float64
                close(y, full[:, lo:hi])
            close(skb.gather(y), full)
            close(kk.sharded_follow(skb.scatter(x), r, skb), full[:, lo:hi])


@scenario
def gradients_match_single_process(rank, world):
    kb = random_kb(23, 4, 120, weighted=True, seed=2)
    x, r = inputs(kb, 5, seed=3)
    g = torch.randn(5, 23, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y1, dx1, dr1 = grads_single(kb, x, r, g)
    lo, hi = kk.shard_bounds(23, world)[rank : rank + 2]
    skb = shard(kb)
    y, dx, dr = grads_sharded(skb, x, r, g)
    close(y, y1[:, lo:hi])
    close(dx, dx1[:, lo:hi])
    close(dr, dr1)
    # Only one of the two needs a gradient.
    xl = x[:, lo:hi].clone().requires_grad_()
    (skb.follow(xl, r) * g[:, lo:hi]).sum().backward()
    close(xl.grad, dx1[:, lo:hi])
    rl = r.clone().requires_grad_()
    (skb.follow(x[:, lo:hi], rl, direction="pull") * g[:, lo:hi]).sum().backward()
    close(rl.grad, dr1)
    # Replicated leaves through scatter / gather: complete gradients on every rank.
    xf, rf = x.clone().requires_grad_(), r.clone().requires_grad_()
    (skb.gather(skb.follow(skb.scatter(xf), rf)) * g).sum().backward()
    close(xf.grad, dx1)
    close(rf.grad, dr1)


@scenario
def sparse_frontier_equals_dense(rank, world):
    kb = random_kb(23, 4, 150, weighted=True, seed=5)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    x, r = inputs(kb, 6, seed=6, density=0.08)
    bounds = kk.shard_bounds(23, world)
    x[2] = 0  # an example with no seed at all
    x[3, bounds[0] : bounds[1]] = 0  # none in rank 0's slice
    full = kk.follow(x, r, kb)
    few = torch.zeros(6, 23, dtype=torch.float64)
    few[0, 1], few[1, 12], few[4, 7], few[5, 22] = 0.5, 1.0, 0.25, 2.0  # 4 <= 6 * 23 / 32 nonzeros
    with count_calls(kd_functions.GatherPush) as push, count_calls(kd_functions.GatherPull) as pull:
        close(skb.follow(few[:, lo:hi], r), kk.follow(few, r, kb)[:, lo:hi])  # auto: few nonzeros, no gradient
        assert (push.n, pull.n) == (1, 0)
        close(skb.follow(x[:, lo:hi], r), full[:, lo:hi])  # auto: too many nonzeros
        assert (push.n, pull.n) == (1, 1)
        close(skb.follow(x[:, lo:hi], r, direction="push"), full[:, lo:hi])
        close(skb.follow(x[:, lo:hi].to_sparse_csr(), r), full[:, lo:hi])
        assert (push.n, pull.n) == (3, 1)
        close(skb.follow(x[:, lo:hi], r, direction="pull"), full[:, lo:hi])
        assert pull.n == 2
    # A sparse x with gradients for its stored values, and r's gradient.
    g = torch.randn(6, 23, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    _, dx, dr = check_grads(skb, kb, x, r, g, sparse=True)
    # ... which are the dense gradients at the stored entries.
    _, dxd, drd = grads_single(kb, x, r, g)
    close(dx, (dxd * (x != 0))[:, lo:hi])
    close(dr, drd)
    # One rank with no nonzeros, then none anywhere.
    xz = x.clone()
    xz[:, bounds[-2] :] = 0  # the last rank has no nonzeros
    close(skb.follow(xz[:, lo:hi], r, direction="push"), kk.follow(xz, r, kb)[:, lo:hi])
    close(skb.follow(torch.zeros(6, hi - lo, dtype=torch.float64), r, direction="push"),
          torch.zeros(6, hi - lo, dtype=torch.float64))


@scenario
def two_hop_chain_and_local_intersect(rank, world):
    kb = power_law_kb(60, 5, 400, seed=8)
    B = 4
    g = torch.Generator().manual_seed(9)
    seeds = torch.zeros(B, 60, dtype=torch.float64)
    seeds[torch.arange(B), torch.randint(0, 60, (B,), generator=g)] = 1.0  # one topic entity each
    x2, _ = inputs(kb, B, seed=10)
    rs = [torch.rand(B, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    gout = torch.randn(B, 60, generator=g, dtype=torch.float64)

    def run(follow, x1, x2, r1, r2, r3):
        y2 = follow(follow(x1, r1), r2)  # first hop pushes (one-hot, no gradient), second pulls
        return kk.intersect(y2, follow(x2, r3))

    leaves = [t.clone().requires_grad_() for t in rs]
    a1 = run(lambda x, r: kk.follow(x, r, kb), seeds, x2, *leaves)
    (a1 * gout).sum().backward()
    skb = shard(kb)
    lo, hi = skb.shard_range()
    sleaves = [t.clone().requires_grad_() for t in rs]
    a = run(skb.follow, seeds[:, lo:hi], x2[:, lo:hi], *sleaves)
    (a * gout[:, lo:hi]).sum().backward()
    close(a, a1[:, lo:hi])
    for s, ref in zip(sleaves, leaves):
        close(s.grad, ref.grad)
    close(skb.gather(a), a1.detach())


@scenario
def inverse_matches_single_process(rank, world):
    kb = random_kb(23, 4, 120, weighted=True, seed=11)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    x, r = inputs(kb, 5, seed=12)
    g = torch.randn(5, 23, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    check_grads(skb, kb, x, r, g, inverse=True)
    xs, _ = inputs(kb, 5, seed=14, density=0.1)
    full = kk.follow(xs, r, kb, inverse=True)
    for direction in ("push", "pull", "auto"):
        close(skb.follow(xs[:, lo:hi], r, inverse=True, direction=direction), full[:, lo:hi])
    check_grads(skb, kb, xs, r, g, inverse=True, sparse=True)


@scenario
def rank_owning_entities_without_incoming_facts(rank, world):
    E, R = 13, 3
    first_hi = kk.shard_bounds(E, world)[1]
    g = torch.Generator().manual_seed(15)
    s = torch.randint(0, E, (40,), generator=g)
    o = torch.randint(0, first_hi, (40,), generator=g)  # every object in rank 0's slice
    p = torch.randint(0, R, (40,), generator=g)
    kb = kk.SparseKB(s, p, o, E, R)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    if rank > 0:
        assert skb.num_local_facts == 0 and all(b is None for b in skb.blocks)
    x, r = inputs(kb, 3, seed=16)
    gout = torch.randn(3, E, generator=g, dtype=torch.float64)
    for inverse in (False, True):
        check_grads(skb, kb, x, r, gout, inverse=inverse)
    xs, _ = inputs(kb, 3, seed=17, density=0.2)
    close(skb.follow(xs[:, lo:hi], r, direction="push"), kk.follow(xs, r, kb)[:, lo:hi])


@scenario
def uneven_facts_and_entities(rank, world):
    kb = power_law_kb(301, 6, 2500, seed=18)  # hubs: some ranks hold far more facts than others
    skb = shard(kb)
    lo, hi = skb.shard_range()
    assert max(skb.facts_per_rank) > 1.1 * min(skb.facts_per_rank), skb.facts_per_rank
    assert skb.num_local_entities in (301 // world, 301 // world + 1)
    x, r = inputs(kb, 7, seed=19)
    gout = torch.randn(7, 301, generator=torch.Generator().manual_seed(20), dtype=torch.float64)
    y1, dx1, dr1 = grads_single(kb, x, r, gout)
    y, dx, dr = grads_sharded(skb, x, r, gout)
    close(y, y1[:, lo:hi])
    close(dx, dx1[:, lo:hi])
    torch.testing.assert_close(dr, dr1, atol=1e-11, rtol=1e-12)  # sums of ~2500 terms, other order


@scenario
def fewer_entities_than_ranks(rank, world):
    E = world - 1  # the last rank owns no entity: its slices are [B, 0]
    kb = kk.SparseKB([0, E - 1, 0], [0, 1, 1], [E - 1, 0, 0], E, 2)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    assert (hi - lo) == (0 if rank == world - 1 else 1)
    x, r = inputs(kb, 3, seed=21)
    gout = torch.randn(3, E, generator=torch.Generator().manual_seed(22), dtype=torch.float64)
    for inverse in (False, True):
        check_grads(skb, kb, x, r, gout, inverse=inverse)
    vals, ids = skb.topk(x[:, lo:hi], 1)
    ref = torch.topk(x, 1)
    close(vals, ref.values)
    assert torch.equal(ids, ref.indices)


@scenario
def from_local_facts_equals_full_facts(rank, world):
    s, p, o = random_facts(23, 4, 200, seed=23)
    w = torch.rand(200, generator=torch.Generator().manual_seed(24)) + 0.5
    full = kk.ShardedSparseKB(s, p, o, 23, 4, weight=w)
    mine = torch.arange(200) % world == rank  # a disjoint split
    local = kk.ShardedSparseKB.from_local_facts(s[mine], p[mine], o[mine], 23, 4, weight=w[mine])
    # Unweighted, every rank also passes the first 50 facts: the copies are merged.
    extra = torch.arange(200) < 50
    keep = mine | extra
    local_dup = kk.ShardedSparseKB.from_local_facts(s[keep], p[keep], o[keep], 23, 4)
    full_unw = kk.ShardedSparseKB(s, p, o, 23, 4)
    assert local.num_facts == full.num_facts and local.facts_per_rank == full.facts_per_rank
    assert local_dup.num_facts == full_unw.num_facts
    x, r = inputs(full_unw, 4, seed=25)
    lo, hi = full.shard_range()
    close(local.follow(x[:, lo:hi], r), full.follow(x[:, lo:hi], r))
    close(local_dup.follow(x[:, lo:hi], r), full_unw.follow(x[:, lo:hi], r))
    # One rank passing nothing is fine.
    none = kk.ShardedSparseKB.from_local_facts(
        s if rank == 0 else s[:0], p if rank == 0 else p[:0], o if rank == 0 else o[:0], 23, 4)
    close(none.follow(x[:, lo:hi], r), full_unw.follow(x[:, lo:hi], r))


@scenario
def topk_returns_global_ids(rank, world):
    kb = random_kb(23, 4, 120, seed=26)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    x = torch.randperm(5 * 23, generator=torch.Generator().manual_seed(27)).view(5, 23).double()  # distinct
    for k in (1, 3, 23):
        vals, ids = skb.topk(x[:, lo:hi], k)
        ref = torch.topk(x, k)
        close(vals, ref.values)
        assert torch.equal(ids, ref.indices)


@scenario
def gradcheck_through_scatter_and_gather(rank, world):
    # gradcheck perturbs the replicated inputs identically on every rank and every rank makes the
    # same sequence of calls (same shapes everywhere), so the collectives inside stay matched.
    kb = random_kb(7, 3, 20, weighted=True, seed=28)
    skb = shard(kb)
    x, r = inputs(kb, 2, seed=29)
    x.requires_grad_()
    r.requires_grad_()
    for inverse in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, r: skb.gather(skb.follow(skb.scatter(x), r, inverse=inverse)), (x, r))


@scenario
def sixteen_bit_and_float32(rank, world):
    kb = random_kb(23, 4, 120, weighted=True, seed=30)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    x, r = inputs(kb, 5, seed=31)
    g = torch.randn(5, 23, generator=torch.Generator().manual_seed(32), dtype=torch.float64)
    y64, dx64, dr64 = grads_single(kb, x, r, g)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)):
        xd, rd = x.to(dtype), r.to(dtype)  # the truth: float64 on the same rounded inputs
        y64, dx64, dr64 = grads_single(kb, xd.double(), rd.double(), g.to(dtype).double())
        y, dx, dr = grads_sharded(skb, xd, rd, g.to(dtype))
        assert y.dtype == dx.dtype == dr.dtype == dtype
        for a, b in ((y, y64[:, lo:hi]), (dx, dx64[:, lo:hi]), (dr, dr64)):
            torch.testing.assert_close(a.double(), b, atol=tol * 4, rtol=tol)


@scenario
def reference_backend_and_batch_of_zero(rank, world):
    kb = random_kb(23, 4, 120, weighted=True, seed=33)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    x, r = inputs(kb, 4, seed=34, density=0.1)
    g = torch.randn(4, 23, generator=torch.Generator().manual_seed(35), dtype=torch.float64)
    for inverse in (False, True):
        y1, dx1, dr1 = grads_single(kb, x, r, g, inverse=inverse)
        for direction in ("pull", "push"):
            xl = x[:, lo:hi].clone().requires_grad_(direction == "pull")
            rl = r.clone().requires_grad_()
            y = skb.follow(xl, rl, inverse=inverse, direction=direction, backend="reference")
            (y * g[:, lo:hi]).sum().backward()
            close(y, y1[:, lo:hi])
            close(rl.grad, dr1)
            if direction == "pull":
                close(xl.grad, dx1[:, lo:hi])
    xs = x[:, lo:hi].to_sparse().requires_grad_()
    (skb.follow(xs, r, backend="reference") * g[:, lo:hi]).sum().backward()
    _, dxs, _ = grads_single(kb, x, r, g, sparse=True)
    close(xs.grad.to_dense(), dxs[:, lo:hi])
    # B = 0
    x0 = torch.zeros(0, hi - lo, dtype=torch.float64, requires_grad=True)
    r0 = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    for inverse in (False, True):
        y = skb.follow(x0, r0, inverse=inverse)
        assert y.shape == (0, hi - lo)
        y.sum().backward()
        assert x0.grad.shape == x0.shape and r0.grad.shape == r0.shape


@scenario
def bad_input_raises_on_every_rank(rank, world):
    kb = random_kb(23, 4, 120, seed=36)
    skb = shard(kb)
    lo, hi = skb.shard_range()
    n = hi - lo
    x, r = inputs(kb, 3, seed=37)
    xl = x[:, lo:hi]
    # Wrong slice width on rank 0 only: rank 0 says why, the others say who; nobody hangs.
    bad = torch.rand(3, n + 1, dtype=torch.float64) if rank == 0 else xl
    if rank == 0:
        with pytest.raises(ValueError, match=rf"x must be this rank's slice \[B, {n}\] of the entities \(ids \[0, {hi}\)"):
            skb.follow(bad, r)
    else:
        with pytest.raises(RuntimeError, match=r"rank\(s\) \[0\] were given bad arguments"):
            skb.follow(bad, r)
    # The same bad input everywhere.
    cases = [
        (lambda: skb.follow(xl, r.float()), TypeError, "r has dtype torch.float32, expected torch.float64"),
        (lambda: skb.follow(xl.long(), r), TypeError, "x must be float32, float64"),
        (lambda: skb.follow(xl.numpy(), r), TypeError, "x must be a torch.Tensor"),
        (lambda: skb.follow(xl, r[:, :3]), ValueError, r"r must be \[B, num_relations=4\]"),
        (lambda: skb.follow(xl, r[:2]), ValueError, "r has batch size 2, expected 3"),
        (lambda: skb.follow(xl[0], r), ValueError, "x must be this rank's slice"),
        (lambda: skb.follow(xl, r, direction="sideways"), ValueError, "direction must be one of"),
        (lambda: skb.follow(xl.clone().requires_grad_(), r, direction="push"), ValueError, "direction='push' needs an x without gradient"),
        (lambda: skb.follow(xl, r, backend="nope"), ValueError, "backend must be one of"),
        (lambda: skb.follow(xl, r, inverse=1), TypeError, "inverse must be a bool"),
        (lambda: skb.follow(xl, r, inverse="no"), TypeError, "inverse must be a bool, got str 'no'"),
        (lambda: skb.follow(xl.to_sparse_csc(), r), ValueError, "x has layout torch.sparse_csc; x must be a dense"),
        (lambda: skb.follow(xl.to_sparse(1), r), ValueError, "x is a hybrid sparse COO tensor"),
        (lambda: skb.follow(xl.to("meta"), r), ValueError, "x is on meta but the sharded KB is on cpu"),
        (lambda: skb.gather(xl[:, :0] if n else xl[:, :1]), ValueError, "x must be this rank's slice"),
        (lambda: skb.scatter(xl), ValueError, r"x_full must be \[B, num_entities=23\]"),
        (lambda: skb.topk(xl, 24), ValueError, r"k must be an int in \[1, num_entities=23\]"),
        (lambda: kk.sharded_follow(xl, r, kb), TypeError, "skb must be a kgqa_kernels.ShardedSparseKB"),
        (lambda: kk.ShardedSparseKB([0, 1], [0, 0], [1, 23], 23, 4), ValueError, r"ShardedSparseKB: obj\[1\] = 23 is out of range"),
        (lambda: kk.ShardedSparseKB([0], [0], [1], 23, 0), ValueError, "num_relations must be a positive int"),
        (lambda: kk.ShardedSparseKB([], [], [], 23, 4), ValueError, "the KB has no facts"),
        (lambda: kk.ShardedSparseKB([0], [0], [1], 23, 4, weight=torch.ones(1, requires_grad=True)), ValueError,
         r"weight requires grad.*weight\.detach\(\)"),
    ]
    for call, err, match in cases:
        with pytest.raises(err, match=match):
            call()
    # Ranks that disagree.
    with pytest.raises(ValueError, match=r"batch differs across ranks"):
        skb.follow(torch.rand(2 + rank, n, dtype=torch.float64), torch.rand(2 + rank, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"direction differs across ranks"):
        skb.follow(xl, r, direction="pull" if rank == 0 else "push")
    with pytest.raises(ValueError, match=r"need_r differs across ranks"):
        skb.follow(xl, r.clone().requires_grad_(rank == 0))
    with pytest.raises(ValueError, match=r"num_entities differs across ranks"):
        kk.ShardedSparseKB([0], [0], [1], 23 + rank, 4)
    if rank == 0:
        with pytest.raises(ValueError, match="num_entities must be a positive int, got 0"):
            kk.ShardedSparseKB.from_local_facts([0], [0], [1], 0, 4)
    else:
        with pytest.raises(RuntimeError, match=r"rank\(s\) \[0\] were given bad arguments"):
            kk.ShardedSparseKB.from_local_facts([0], [0], [1], 23, 4)
    # Still in step afterwards.
    close(skb.follow(xl, r), kk.follow(x, r, kb)[:, lo:hi])


@scenario
def subgroup_of_the_ranks(rank, world):
    # Ranks 1.. form the group (one rank when world = 2): group ranks differ from global ranks,
    # and rank 0, outside it, takes no part.
    members = list(range(1, world))
    group = dist.new_group(members)  # every rank calls new_group
    if rank == 0:
        return
    kb = random_kb(23, 4, 120, weighted=True, seed=38)
    skb = shard(kb, group=group)
    assert skb.world_size == world - 1 and skb.rank == rank - 1
    lo, hi = skb.shard_range()
    x, r = inputs(kb, 4, seed=39)
    g = torch.randn(4, 23, generator=torch.Generator().manual_seed(40), dtype=torch.float64)
    for inverse in (False, True):
        check_grads(skb, kb, x, r, g, inverse=inverse)
    xs, _ = inputs(kb, 4, seed=41, density=0.05)
    close(skb.follow(xs[:, lo:hi], r, direction="push"), kk.follow(xs, r, kb)[:, lo:hi])
    close(skb.gather(skb.scatter(x)), x)


# ---- the processes ------------------------------------------------------------------------------

def _worker(rank, world, port, out_dir, names):
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta state")
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S),
    )

    def seeded(name):
        def run():
            torch.manual_seed(0)
            SCENARIOS[name](rank, world)
        return run

    try:
        record_scenarios(rank, out_dir, [(name, seeded(name)) for name in names])
    finally:
        dist.destroy_process_group()


_RESULTS = {}


def _run_world(world):
    """{scenario: {rank: status}} for one world size, run once per session."""
    if world not in _RESULTS:
        with spawn_ranks(_worker, world, list(SCENARIOS), DEADLINE_S, list(SCENARIOS)) as (results, _):
            _RESULTS[world] = results
    return _RESULTS[world]


@pytest.mark.parametrize("world", WORLD_SIZES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sharded(name, world):
    results = _run_world(world)
    failed = {rank: s for rank, s in results[name].items() if s != "ok"}
    if failed:
        report = "\n".join(f"--- rank {rank} of {world}:\n{s}" for rank, s in sorted(failed.items()))
        first = next(n for n in SCENARIOS if any(s != "ok" for s in results[n].values()))
        if first != name:
            report += (f"\n(the scenarios share the processes: a rank that fails {first!r}, which ran first, "
                       f"can leave the ranks out of step, so look at it first)")
        pytest.fail(report, pytrace=False)


# ---- without processes --------------------------------------------------------------------------

def test_needs_an_initialised_process_group():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match=r"torch.distributed is not initialised: call torch.distributed.init_process_group\(\)"):
        kk.ShardedSparseKB([0], [0], [1], 2, 1)


@pytest.mark.parametrize("E, N", [(10, 4), (2, 3), (1, 1), (23, 3), (12, 3), (50_000_000, 64)])
def test_shard_bounds(E, N):
    b = kk.shard_bounds(E, N)
    sizes = [hi - lo for lo, hi in zip(b, b[1:])]
    assert b[0] == 0 and b[-1] == E and len(sizes) == N
    assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes


def test_the_torchrun_example_runs_and_checks_itself():
    """docs/DISTRIBUTED.md's launch, on 2 CPU processes: torchrun, gloo, the --check comparison."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(root, "examples", "sharded_follow.py"), "--entities", "3000", "--facts", "20000", "--check"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check: the sharded answers and gradients equal the single-process ones" in done.stdout
