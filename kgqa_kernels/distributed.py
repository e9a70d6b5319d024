"""A KB sharded across the ranks of a torch.distributed process group (issue 8).

Freebase-scale KBs do not fit one device. ``ShardedSparseKB`` splits the entity ids into N
contiguous ranges, one per rank (sizes differ by at most 1), and rank ``q`` keeps only the facts
whose *object* lies in its range: the facts that point into its slice of the entities. Entity
vectors are sharded the same way: rank ``q`` holds ``x[:, lo_q:hi_q]`` and computes
``y[:, lo_q:hi_q]``; relation weights ``r`` are replicated (every rank processes the same batch).

Rank q's facts are stored as N block SparseKBs, ``blocks[s]`` holding the facts whose subject lies
in the slice of rank s, with both ids made slice-local (every block is a square SparseKB over
S = ceil(E / N) ids, the padded slice width). So a hop is

    y_q = sum over s of follow(x_s, r, blocks[s])

and the frontier can be consumed one slice at a time as it arrives, instead of materialising the
whole [B, E] frontier: the slices travel around a ring (rank q sends to q + 1 and receives from
q - 1, N - 1 steps, the next slice arriving while the current one is pulled). Each rank sends and
receives (N - 1) / N of [B, E], as an all_gather would, but holds at most two [B, S] slices
instead of the gathered [B, E] (why a ring and not all_gather or N broadcasts: the same traffic as
the bandwidth-optimal all_gather, every link busy at every step, communication overlapped with
the pull of the previous slice, and only point-to-point ops, which gloo and NCCL both have).

Backward, per hop: dx_s = sum over q of follow(gy_q, r, blocks_q[s], inverse=True) is the mirror
image: partial sums of each slice's gradient travel the same ring (a reduce-scatter done one [B, S]
slice at a time) and end at the slice's owner; dr needs every x slice again, so x takes a second
trip around the ring (the forward saves only the local slice: saving the gathered slices would cost
[B, E] per hop, the memory the sharding is meant to remove); the replicated r's gradient is
all-reduced (summed) once. ``inverse=True`` runs the same two rings the other way round (a
reduce ring forward, a gather ring backward) over the same blocks, so it needs no second copy of
the facts. A sparse frontier (few nonzeros per example, first hops) is exchanged as its nonzeros
only (one all_gather of the counts, one of the padded (row * S + id, value) pairs) and pushed
locally; its backward is one all_reduce of the value gradients and dr.

Gradient convention (Megatron's): the gradient that arrives at each rank's output slice is that
slice of dL/dy for one global loss L. A per-rank loss on the local slice (L = sum of the ranks'
losses) satisfies it, and so does a loss computed identically on every rank from ``gather(y)``
(gather's backward keeps the rank's own slice). Gradients of replicated tensors (r, the input of
``scatter``) come out complete and identical on every rank.

Every collective method first exchanges a few integers (batch size, dtype, direction, whether
gradients are needed, the local argument check passed): bad input on one rank raises on every
rank, instead of leaving the others waiting in a collective, and ranks that disagree about the
batch or the direction get a ValueError. Every rank must call every sharded op in the same order,
and if one rank calls backward through a hop, all must.

The local work goes to the backend kernels (cpu, cuda, triton: the same ops ``kgqa_kernels.follow``
calls, so every backend works; ``backend="reference"`` runs the pure-torch definitions). Two costs
do not shrink with N, both because a SparseKB is square and a kernel returns a fresh output: every
non-empty block keeps two int64 row pointers over S ids, 16 bytes per entity per rank in all; and
every block's pull writes a whole [S, B] output that is then added up, B x E elements of memory
traffic per rank per hop (a kernel that accumulated into an existing output would make it B x S).
docs/DISTRIBUTED.md puts numbers on both.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple

import torch
import torch.distributed as dist

from . import backends, layout, reference
from .checks import (
    DIRECTIONS, check_count, check_dense, check_direction, check_facts, check_float, check_same_dtype, check_weights,
)
from .kb import SparseKB, TensorLike
from .numerics import FLOAT_DTYPES, acc_dtype
from .ops import follow as _ops_follow
from .ops.follow_push import PUSH_MAX_DENSITY, bounded_frontier, check_push_allowed, frontier

__all__ = ["ShardedSparseKB", "sharded_follow", "shard_bounds"]

_TAG_REDUCE, _TAG_GATHER = 1, 2  # gloo matches messages by tag; NCCL matches in posting order


def shard_bounds(num_entities: int, world_size: int) -> List[int]:
    """[lo_0, lo_1, ..., lo_N = num_entities]: rank q owns entity ids [lo_q, lo_{q+1}); the first
    ``num_entities % world_size`` ranks own one more id than the others."""
    q, rem = divmod(num_entities, world_size)
    bounds = [0]
    for k in range(world_size):
        bounds.append(bounds[-1] + q + (1 if k < rem else 0))
    return bounds


def _group_state(group, who: str):
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{who}: torch.distributed is not initialised: call torch.distributed.init_process_group() "
            f"first (or pass group=, a process group of the ranks that share the KB)"
        )
    try:
        return dist.get_world_size(group), dist.get_rank(group)
    except Exception as e:  # noqa: BLE001  (torch raises several types here)
        raise ValueError(f"{who}: group is not a usable process group: {e}") from None


# ---- the local kernels: one block at a time ---------------------------------------------------

def _impl(backend: Optional[str], device: torch.device):
    """(the resolved backend, the torch.ops namespace of its kernels or None for the reference)."""
    chosen = backends.resolve(backend, device, "ShardedSparseKB.follow")
    return chosen, (None if chosen == "reference" else backends.op_namespace(chosen))


def _pull(impl, x: torch.Tensor, r: torch.Tensor, blk: SparseKB, inverse: bool) -> torch.Tensor:
    """[S, B]: follow(x [B, S], r, blk) with the output in the kernels' batch-innermost layout."""
    if impl is None:
        return reference.follow(x, r, blk, inverse=inverse).t()
    return impl.follow(x.t(), r.t(), blk.tensors(), inverse)


def _pull_dr(impl, x: torch.Tensor, gy: torch.Tensor, r: torch.Tensor, blk: SparseKB, inverse: bool) -> torch.Tensor:
    """[R, B]: the gradient of r of follow(x, r, blk) for output gradient gy [B, S]."""
    if impl is None:
        with torch.enable_grad():
            rr = r.detach().requires_grad_()
            (dr,) = torch.autograd.grad(reference.follow(x, rr, blk, inverse=inverse), rr, gy)
        return dr.t()
    return impl.follow_backward_r(x.t(), gy.t(), blk.tensors(), inverse)


def _dense_from_frontier(front, batch: int, width: int) -> torch.Tensor:
    ptr, ids, vals = front
    rows = torch.repeat_interleave(torch.arange(batch, device=ids.device), ptr.diff())
    return vals.new_zeros(batch, width).index_put((rows, ids), vals)


def _push(impl, front, r: torch.Tensor, blk: SparseKB, batch: int) -> torch.Tensor:
    """[S, B]: follow from the frontier (ptr [B+1], slice-local ids, vals) along blk."""
    if impl is None:
        return reference.follow(_dense_from_frontier(front, batch, blk.num_entities), r, blk).t()
    ptr, ids, vals = front
    return impl.follow_push(ptr, ids, vals, r.t(), blk.tensors(), False)


def _push_backward(impl, gy: torch.Tensor, front, r: torch.Tensor, blk: SparseKB, batch: int):
    """(dvals [nnz], dr [R, B]) of _push for output gradient gy [B, S]."""
    ptr, ids, vals = front
    if impl is None:
        with torch.enable_grad():
            v, rr = vals.detach().requires_grad_(), r.detach().requires_grad_()
            y = reference.follow(_dense_from_frontier((ptr, ids, v), batch, blk.num_entities), rr, blk)
            dvals, dr = torch.autograd.grad(y, (v, rr), gy)
        return dvals, dr.t()
    dvals, dr = impl.follow_push_backward(gy.t(), ptr, ids, vals, r.t(), blk.tensors(), False)
    return dvals, dr


class _Sum:
    """Sum of fresh [S, B] kernel outputs: the first one becomes the accumulator (no zero-fill
    and no extra pass over it), converted to float32 for 16-bit dtypes."""

    def __init__(self, dtype: torch.dtype):
        self.dtype, self.acc = acc_dtype(dtype), None

    def add(self, out: torch.Tensor) -> None:
        if self.acc is None:
            self.acc = out.to(self.dtype)  # no copy when the dtype is already right: out is fresh
        else:
            self.acc.add_(out)

    def result(self, rows: int, batch: int, like: torch.Tensor) -> torch.Tensor:
        if self.acc is None:
            return like.new_zeros((rows, batch), dtype=self.dtype)
        return self.acc


def _touched_rows(blk: SparseKB, ids: torch.Tensor) -> torch.Tensor:
    """The (slice-local) objects of the facts of blk that leave the entities ``ids``: the only
    rows a push from them writes."""
    subj_ptr, obj = blk.tensor("SUBJ_PTR"), blk.tensor("SUBJ_OBJ")  # the facts grouped by subject
    u = torch.unique(ids)
    start, count = subj_ptr[u], subj_ptr[u + 1] - subj_ptr[u]
    total = int(count.sum())
    offset = torch.repeat_interleave(start - (torch.cumsum(count, 0) - count), count)
    return torch.unique(obj[offset + torch.arange(total, device=ids.device)].long())


# ---- the sharded KB --------------------------------------------------------------------------

class ShardedSparseKB:
    """The facts of a KB spread over the ranks of a process group, by ranges of object ids.

    ``ShardedSparseKB(subj, rel, obj, num_entities, num_relations, weight=None, group=None,
    device=None)`` is called on every rank with the same full fact list (simple; every rank reads
    all facts once); each rank keeps the facts whose object is in its range. At Freebase scale use
    ``ShardedSparseKB.from_local_facts``, where each rank passes any part of the facts (its share
    of the files) and one all_to_all sends each fact to its owner. Ids are checked, duplicates
    merged (weighted duplicates sum), as in ``SparseKB``. ``device``: where the blocks and the
    communication buffers live (default: the device of ``subj``); with NCCL, this rank's GPU.

    Rank q owns entity ids ``[lo, hi) = shard_range()``; its entity tensors are ``[B, hi - lo]``
    slices (``scatter``/``gather`` convert; ``topk`` finds answers without gathering).
    """

    def __init__(
        self,
        subj: TensorLike,
        rel: TensorLike,
        obj: TensorLike,
        num_entities: int,
        num_relations: int,
        weight: Optional[TensorLike] = None,
        *,
        group=None,
        device=None,
        index_dtype: Optional[torch.dtype] = None,
    ):
        self._setup(group, num_entities, num_relations, device, "ShardedSparseKB")
        err, facts = self._setup_err, None
        try:
            if err is None:
                facts = self._check_facts(subj, rel, obj, weight)
        except (TypeError, ValueError) as e:
            err = e
        n = -1 if facts is None else facts[0].numel()
        self._agree(  # every rank must be given the same facts (a cheap check: their number)
            "ShardedSparseKB",
            err,
            num_entities=self.num_entities, num_relations=self.num_relations,
            weighted=-1 if facts is None else int(facts[3] is not None), num_facts=n,
            _must_agree={"num_entities", "num_relations", "weighted", "num_facts"},
        )
        s, p, o, w = facts
        keep = (o >= self.lo) & (o < self.hi)
        self._build_local(s[keep], p[keep], o[keep], None if w is None else w[keep], index_dtype)

    @classmethod
    def from_local_facts(
        cls,
        subj: TensorLike,
        rel: TensorLike,
        obj: TensorLike,
        num_entities: int,
        num_relations: int,
        weight: Optional[TensorLike] = None,
        *,
        group=None,
        device=None,
        index_dtype: Optional[torch.dtype] = None,
    ) -> "ShardedSparseKB":
        """Every rank passes any part of the facts (any split; a fact may appear on several ranks,
        duplicates are merged); one all_to_all sends each fact to the rank that owns its object.
        No rank ever holds more than its own part plus the facts it keeps."""
        self = cls.__new__(cls)
        self._setup(group, num_entities, num_relations, device, "ShardedSparseKB.from_local_facts")
        err, facts = self._setup_err, None
        try:
            if err is None:
                facts = self._check_facts(subj, rel, obj, weight, allow_empty=True)
        except (TypeError, ValueError) as e:
            err = e
        table = self._agree(
            "ShardedSparseKB.from_local_facts",
            err,
            num_entities=self.num_entities, num_relations=self.num_relations,
            weighted=-1 if facts is None else int(facts[3] is not None),
            num_facts=-1 if facts is None else facts[0].numel(),
            _must_agree={"num_entities", "num_relations", "weighted"},
        )
        if int(table[:, 4].sum()) == 0:
            raise ValueError("ShardedSparseKB.from_local_facts: the KB has no facts (every rank passed none)")
        s, p, o, w = facts
        owner = torch.searchsorted(self._bounds_t[1:], o, right=True)
        order = torch.argsort(owner, stable=True)
        send_counts = torch.bincount(owner, minlength=self.world_size)
        recv_counts = torch.empty_like(send_counts)
        dist.all_to_all_single(recv_counts, send_counts, group=self.group)
        sends, recvs = send_counts.tolist(), recv_counts.tolist()
        spo = torch.stack([s, p, o], 1)[order].contiguous()
        got = spo.new_empty(sum(recvs), 3)
        dist.all_to_all_single(got, spo, recvs, sends, group=self.group)
        got_w = None
        if w is not None:
            got_w = w.new_empty(sum(recvs))
            dist.all_to_all_single(got_w, w[order].contiguous(), recvs, sends, group=self.group)
        got = got.t().contiguous()
        self._build_local(got[0], got[1], got[2], got_w, index_dtype)
        return self

    # -- construction ------------------------------------------------------------------------

    def _setup(self, group, num_entities, num_relations, device, who):
        """Everything but the facts. A bad count is kept in ``_setup_err`` and raised after the
        first exchange, on every rank."""
        self.world_size, self.rank = _group_state(group, who)
        self._setup_err = None
        for name, n in (("num_entities", num_entities), ("num_relations", num_relations)):
            try:
                check_count(who, name, n)
            except ValueError as e:
                self._setup_err = e
        if self._setup_err is not None:
            num_entities = num_relations = 1
        self.group = group
        self.num_entities, self.num_relations = num_entities, num_relations
        self.bounds = shard_bounds(num_entities, self.world_size)
        self.lo, self.hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        self.slice_width = math.ceil(num_entities / self.world_size)  # S: every buffer is padded to it
        self._device = None if device is None else torch.device(device)
        self._bounds_t = torch.tensor(self.bounds, dtype=torch.int64, device=self._device)
        # Global ranks of the ring neighbours (point-to-point ops take global ranks).
        self._peer = lambda q: q if group is None else dist.get_global_rank(group, q)

    def _check_facts(self, subj, rel, obj, weight, allow_empty=False):
        dev = self._device if self._device is not None else (
            subj.device if isinstance(subj, torch.Tensor) else torch.device("cpu")
        )
        s, p, o, w = check_facts("ShardedSparseKB", subj, rel, obj, weight, self.num_entities, self.num_relations,
                                 device=dev, allow_empty=allow_empty)
        self._device = dev
        self._bounds_t = self._bounds_t.to(dev)
        return s, p, o, w

    def _build_local(self, s, p, o, w, index_dtype):
        """blocks[t]: this rank's facts whose subject is in rank t's slice, ids slice-local."""
        N, S = self.world_size, self.slice_width
        src = torch.searchsorted(self._bounds_t[1:], s, right=True)
        order = torch.argsort(src, stable=True)
        s, p, o, src = s[order], p[order], o[order], src[order]
        w = None if w is None else w[order]
        counts = torch.bincount(src, minlength=N).tolist()
        self.blocks: List[Optional[SparseKB]] = []
        self.num_duplicates_removed = 0
        start = 0
        for t in range(N):
            end = start + counts[t]
            if end == start:
                self.blocks.append(None)  # SparseKB needs at least one fact; an empty block is skipped
            else:
                blk = SparseKB(
                    s[start:end] - self.bounds[t], p[start:end], o[start:end] - self.lo, S, self.num_relations,
                    None if w is None else w[start:end], index_dtype=index_dtype,
                )
                self.num_duplicates_removed += blk.num_duplicates_removed
                self.blocks.append(blk)
            start = end
        self.weighted = w is not None
        self.num_local_facts = sum(b.num_facts for b in self.blocks if b is not None)
        counts_t = torch.tensor([self.num_local_facts], dtype=torch.int64, device=self._device)
        gathered = [torch.empty_like(counts_t) for _ in range(N)]
        dist.all_gather(gathered, counts_t, group=self.group)
        self.facts_per_rank = [int(c) for c in torch.cat(gathered).cpu()]
        self.num_facts = sum(self.facts_per_rank)
        if self.num_facts == 0:
            raise ValueError("ShardedSparseKB: the KB has no facts")

    # -- small helpers ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def num_local_entities(self) -> int:
        return self.hi - self.lo

    def shard_range(self, rank: Optional[int] = None) -> Tuple[int, int]:
        """(lo, hi): the entity ids rank ``rank`` (default: this one) owns."""
        rank = self.rank if rank is None else rank
        if not 0 <= rank < self.world_size:
            raise ValueError(f"ShardedSparseKB.shard_range(): rank must be in [0, {self.world_size}), got {rank}")
        return self.bounds[rank], self.bounds[rank + 1]

    def local_memory(self) -> dict:
        """Bytes this rank's blocks hold: ``index`` (what the kernels read: the three orders of
        int32 ids and the weights), ``pointers`` (the int64 row pointers of each block: 2 (S + 1)
        per non-empty block, so up to 16 E bytes per rank whatever N), ``canonical`` (the int64
        (subj, rel, obj) copy SparseKB keeps, read only by the reference backend and ``.to``)."""
        index = pointers = canonical = 0
        for blk in self.blocks:
            if blk is None:
                continue
            for name, t in zip(layout.SLOT_NAMES, blk.tensors()):
                nbytes = t.numel() * t.element_size()
                if name in ("OBJ_PTR", "SUBJ_PTR"):
                    pointers += nbytes
                else:
                    index += nbytes
            canonical += sum(t.numel() * t.element_size() for t in (blk.subj, blk.rel, blk.obj))
            if blk.weight is not None:
                canonical += blk.weight.numel() * blk.weight.element_size()
        return {"index": index, "pointers": pointers, "canonical": canonical, "total": index + pointers + canonical}

    def __repr__(self) -> str:
        return (
            f"ShardedSparseKB(num_entities={self.num_entities}, num_relations={self.num_relations}, "
            f"num_facts={self.num_facts}, rank={self.rank}/{self.world_size}, entities=[{self.lo}, {self.hi}), "
            f"local_facts={self.num_local_facts}, weighted={self.weighted}, device={self.device})"
        )

    def _agree(self, op: str, err: Optional[Exception], _must_agree=(), **fields) -> torch.Tensor:
        """All-gather ``ok`` and the integer ``fields`` of every rank; raise on every rank if one
        rank's arguments were bad or a field in ``_must_agree`` differs. Returns [N, 1 + fields]."""
        names = list(fields)
        mine = torch.tensor([int(err is None)] + [int(fields[k]) for k in names], dtype=torch.int64)
        mine = mine.to(self._device if self._device is not None else "cpu")
        out = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(out, mine, group=self.group)
        table = torch.stack(out).cpu()
        bad = [q for q in range(self.world_size) if int(table[q, 0]) == 0]
        if bad:
            if err is not None:
                raise err
            raise RuntimeError(
                f"{op}: rank(s) {bad} were given bad arguments and raise the details; every rank "
                f"raises so that none waits in a collective"
            )
        for j, name in enumerate(names, start=1):
            if name in _must_agree and not bool((table[:, j] == table[0, j]).all()):
                raise ValueError(
                    f"{op}: {name} differs across ranks ({table[:, j].tolist()}, by rank); every rank "
                    f"must make the same call"
                )
        return table

    def _check_slice(self, op: str, name: str, x, sparse_ok: bool) -> None:
        """x is a float [B, hi - lo] tensor on the KB's device (dense unless ``sparse_ok``)."""
        check_float(op, name, x)
        if not sparse_ok:
            check_dense(op, name, x)
        n = self.num_local_entities
        if x.dim() != 2 or x.shape[1] != n:  # said here: the message names this rank's slice
            raise ValueError(
                f"{op}: {name} must be this rank's slice [B, {n}] of the entities "
                f"(ids [{self.lo}, {self.hi}), rank {self.rank} of {self.world_size}), got shape {tuple(x.shape)}"
            )
        check_weights(op, name, x, n, "hi - lo", self.device, device_name="the sharded KB")  # the device

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """[S, B] contiguous (batch innermost, as the kernels read it) holding x [B, n] and zeros."""
        n, S = x.shape[1], self.slice_width
        xt = x.t()
        if n == S and xt.is_contiguous():
            return xt  # a chained hop's output already has this layout: no copy
        buf = x.new_empty(S, x.shape[0])
        buf[:n].copy_(xt)
        buf[n:].zero_()
        return buf

    # -- the ring --------------------------------------------------------------------------------

    def _ring(
        self,
        send: Optional[torch.Tensor] = None,
        consume: Optional[Callable[[int, torch.Tensor], None]] = None,
        contribute: Optional[Callable[[int], Optional[torch.Tensor]]] = None,
        reduce_like: Optional[torch.Tensor] = None,
    ) -> Optional[torch.Tensor]:
        """N steps around the ring q -> q + 1.

        Gather ring (``send``, this rank's [S, B] slice): at step k, ``consume(s, slice_s)`` gets
        the slice of rank s = q - k while slice q - k - 1 arrives. Reduce ring (``contribute``):
        at step k this rank adds ``contribute(t)`` (its [S, B] part of slice t = q - 1 - k, or None)
        to the partial sum received from q - 1 and passes it on; after N steps it holds the sum for
        its own slice (t = q), which is returned. Sums run in a fixed order: deterministic.

        Each step posts its sends and receives in one batch, in the same order on every rank
        (reduce ring, then gather ring), so both gloo (tags) and NCCL (posting order) match them.
        """
        N, q = self.world_size, self.rank
        nxt, prv = self._peer((q + 1) % N), self._peer((q - 1) % N)
        cur = send
        spare = [torch.empty_like(send), torch.empty_like(send)] if send is not None and N > 1 else None
        partial = rbuf = None
        if contribute is not None and N > 1:
            rbuf = torch.empty_like(reduce_like)
        for k in range(N):
            ops, incoming = [], None
            if contribute is not None and k > 0:
                ops += [
                    dist.P2POp(dist.isend, partial, nxt, self.group, _TAG_REDUCE),
                    dist.P2POp(dist.irecv, rbuf, prv, self.group, _TAG_REDUCE),
                ]
            if send is not None and k < N - 1:
                incoming = spare[k % 2]
                ops += [
                    dist.P2POp(dist.isend, cur, nxt, self.group, _TAG_GATHER),
                    dist.P2POp(dist.irecv, incoming, prv, self.group, _TAG_GATHER),
                ]
            reqs = dist.batch_isend_irecv(ops) if ops else []
            if consume is not None:
                consume((q - k) % N, cur)
            mine = None
            if contribute is not None:
                part = contribute((q - 1 - k) % N)
                # part is a fresh tensor: it becomes the partial sum (sent, so contiguous)
                mine = torch.zeros_like(reduce_like) if part is None else part.to(reduce_like.dtype).contiguous()
            for req in reqs:
                req.wait()
            if contribute is not None:
                if k > 0:
                    mine.add_(rbuf)
                partial = mine
            if incoming is not None:
                cur = incoming
        return partial

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(t, group=self.group)
        return t

    # -- the public ops --------------------------------------------------------------------------

    def follow(
        self,
        x: torch.Tensor,
        r: torch.Tensor,
        *,
        inverse: bool = False,
        direction: str = "auto",
        backend: Optional[str] = None,
    ) -> torch.Tensor:
        """One hop, sharded: this rank's slice ``[B, hi - lo]`` of ``kgqa_kernels.follow(x_full, r,
        kb)``, from this rank's slice ``x`` ([B, hi - lo], dense or torch sparse COO/CSR) and the
        replicated ``r`` [B, num_relations]. Every rank calls it with the same batch.

        ``direction``: "pull" exchanges the dense slices around the ring; "push" exchanges only
        the nonzeros of x (a sparse x, or a dense x without gradient) and pushes them locally;
        "auto" pushes a sparse x, or a dense x without gradient whose nonzeros over all ranks are
        at most ``PUSH_MAX_DENSITY`` of [B, num_entities], and pulls otherwise. With
        ``inverse=True`` the local work follows ``direction`` but the exchange is always dense
        (the partial sums for every subject slice travel the reduce ring); a sparse x is made
        dense first. Same result either way; gradients as ``kgqa_kernels.follow`` (a sparse x gets
        gradients for its stored values), with r's gradient summed over the ranks.
        """
        op = "ShardedSparseKB.follow()"
        err = None
        need_x = need_r = sparse = False
        nnz = batch = 0
        dtype_code = -1
        front = None
        try:
            self._check_slice(op, "x", x, sparse_ok=True)
            check_float(op, "r", r)
            check_dense(op, "r", r)
            check_weights(op, "r", r, self.num_relations, "num_relations", self.device, batch=x.shape[0],
                          device_name="the sharded KB")
            check_same_dtype(op, (("r", r),), x.dtype, like="x")
            check_direction(op, direction)
            if not isinstance(inverse, bool):
                raise TypeError(f"{op}: inverse must be a bool, got {type(inverse).__name__}")
            backends.resolve(backend, x.device, "ShardedSparseKB.follow")
            sparse = x.layout != torch.strided
            grad = torch.is_grad_enabled()
            need_x, need_r = grad and x.requires_grad, grad and r.requires_grad
            check_push_allowed(op, direction, sparse, need_x)
            batch, dtype_code = x.shape[0], FLOAT_DTYPES.index(x.dtype)
            if direction == "auto" and not inverse and not sparse and not need_x:
                # One read of x: its nonzeros if there are few enough for a push (more than the
                # global limit here means a pull whatever the other ranks hold).
                limit = int(PUSH_MAX_DENSITY * batch * self.num_entities)
                front = bounded_frontier(x, limit)
                nnz = limit + 1 if front is None else front[1].numel()
        except Exception as e:  # noqa: BLE001  (any local failure is reported to every rank)
            err = e
        table = self._agree(
            op, err,
            batch=batch, dtype=dtype_code, inverse=int(bool(inverse)) if isinstance(inverse, bool) else -1,
            direction=DIRECTIONS.index(direction) if direction in DIRECTIONS else -1,
            need_x=need_x, need_r=need_r, sparse=sparse, nnz=nnz,
            _must_agree={"batch", "dtype", "inverse", "direction", "need_x", "need_r", "sparse"},
        )
        name, impl = _impl(backend, self.device)
        if inverse:
            if sparse:
                x = x.to_dense()  # gradients come back as the sparse x's stored values
            return _ReducePull.apply(x, r, self, impl, name, direction)
        if direction == "auto":
            dense_limit = int(PUSH_MAX_DENSITY * batch * self.num_entities)
            push = sparse or (not need_x and int(table[:, 8].sum()) <= dense_limit and batch > 0)
        else:
            push = direction == "push"
        if not push:
            return _GatherPull.apply(x.to_dense() if sparse else x, r, self, impl)
        ptr, ids, vals = front if front is not None else frontier(x)
        return _GatherPush.apply(vals, r, ptr, ids, self, impl, batch)

    def scatter(self, x_full: torch.Tensor) -> torch.Tensor:
        """This rank's slice ``x_full[:, lo:hi]`` of a replicated [B, num_entities] tensor. Its
        gradient is all-gathered, so a replicated leaf gets the whole gradient on every rank."""
        op = "ShardedSparseKB.scatter()"
        err, batch, dtype_code = None, 0, -1
        try:
            check_float(op, "x_full", x_full)
            check_dense(op, "x_full", x_full)
            check_weights(op, "x_full", x_full, self.num_entities, "num_entities", self.device,
                          device_name="the sharded KB")
            batch, dtype_code = x_full.shape[0], FLOAT_DTYPES.index(x_full.dtype)
        except (TypeError, ValueError) as e:
            err = e
        self._agree(op, err, batch=batch, dtype=dtype_code, _must_agree={"batch", "dtype"})
        return _Scatter.apply(x_full, self)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """The whole [B, num_entities] tensor from every rank's slice, on every rank (answer
        extraction, tests). Its backward keeps this rank's slice of the gradient: a loss computed
        from it must be the same on every rank."""
        op = "ShardedSparseKB.gather()"
        err, batch, dtype_code = None, 0, -1
        try:
            self._check_slice(op, "x", x, sparse_ok=False)
            batch, dtype_code = x.shape[0], FLOAT_DTYPES.index(x.dtype)
        except (TypeError, ValueError) as e:
            err = e
        self._agree(op, err, batch=batch, dtype=dtype_code, _must_agree={"batch", "dtype"})
        return _AllGather.apply(x, self)

    def topk(self, x: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(values [B, k], global entity ids [B, k]) of the k largest entries of each row of the
        sharded x, the same on every rank: each rank's top k, all-gathered ([B, N k]) and merged,
        so only B N k values move. No gradient (answer extraction); ties go to either id."""
        op = "ShardedSparseKB.topk()"
        err, batch, dtype_code = None, 0, -1
        try:
            self._check_slice(op, "x", x, sparse_ok=False)
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_entities:
                raise ValueError(f"{op}: k must be an int in [1, num_entities={self.num_entities}], got {k!r}")
            batch, dtype_code = x.shape[0], FLOAT_DTYPES.index(x.dtype)
        except (TypeError, ValueError) as e:
            err = e
        self._agree(op, err, batch=batch, dtype=dtype_code, k=k if isinstance(k, int) else -1,
                    _must_agree={"batch", "dtype", "k"})
        with torch.no_grad():
            x = x.detach()
            kk_local = min(k, self.num_local_entities)
            vals = torch.full((batch, k), -math.inf, dtype=x.dtype, device=x.device)
            ids = torch.full((batch, k), -1, dtype=torch.int64, device=x.device)
            if kk_local > 0:
                v, i = torch.topk(x, kk_local, dim=1)
                vals[:, :kk_local], ids[:, :kk_local] = v, i + self.lo
            all_vals = [torch.empty_like(vals) for _ in range(self.world_size)]
            all_ids = [torch.empty_like(ids) for _ in range(self.world_size)]
            dist.all_gather(all_vals, vals.contiguous(), group=self.group)
            dist.all_gather(all_ids, ids.contiguous(), group=self.group)
            v, pos = torch.topk(torch.cat(all_vals, 1), k, dim=1)
            return v, torch.cat(all_ids, 1).gather(1, pos)


def sharded_follow(x: torch.Tensor, r: torch.Tensor, skb: ShardedSparseKB, **kwargs) -> torch.Tensor:
    """``skb.follow(x, r, **kwargs)``, spelled like ``kgqa_kernels.follow(x, r, kb)``."""
    if not isinstance(skb, ShardedSparseKB):
        raise TypeError(f"sharded_follow(): skb must be a kgqa_kernels.ShardedSparseKB, got {type(skb).__name__}")
    return skb.follow(x, r, **kwargs)


# ---- autograd --------------------------------------------------------------------------------

class _GatherPull(torch.autograd.Function):
    """y_q = sum over s of follow(x_s, r, blocks[s]); x slices around the gather ring."""

    @staticmethod
    def forward(ctx, x, r, skb: ShardedSparseKB, impl):
        ctx.skb, ctx.impl = skb, impl
        ctx.save_for_backward(x, r)
        acc = _Sum(x.dtype)

        def consume(s, xs):
            if skb.blocks[s] is not None:
                acc.add(_pull(impl, xs.t(), r, skb.blocks[s], False))

        skb._ring(send=skb._pad(x), consume=consume)
        y = acc.result(skb.slice_width, x.shape[0], x)
        return y[: skb.num_local_entities].to(x.dtype).t()

    @staticmethod
    def backward(ctx, gy):
        skb, impl = ctx.skb, ctx.impl
        x, r = ctx.saved_tensors
        need_x, need_r = ctx.needs_input_grad[:2]
        g = skb._pad(gy)  # [S, B]
        gv = g.t()
        dr = torch.zeros(skb.num_relations, x.shape[0], dtype=acc_dtype(r.dtype), device=r.device) if need_r else None

        def consume(s, xs):  # dr: every x slice again, against this rank's output gradient
            if skb.blocks[s] is not None:
                dr.add_(_pull_dr(impl, xs.t(), gv, r, skb.blocks[s], False))

        def contribute(t):  # dx of slice t: this rank's facts out of slice t, pulled backwards
            blk = skb.blocks[t]
            return None if blk is None else _pull(impl, gv, r, blk, True)

        dx_buf = skb._ring(
            send=skb._pad(x) if need_r else None, consume=consume if need_r else None,
            contribute=contribute if need_x else None, reduce_like=g.new_empty(g.shape, dtype=acc_dtype(g.dtype)),
        )
        dx = dx_buf[: skb.num_local_entities].to(x.dtype).t() if need_x else None
        if need_r:
            dr = skb._all_reduce(dr).to(r.dtype).t()
        return dx, dr, None, None


class _ReducePull(torch.autograd.Function):
    """inverse=True: y_t (subjects of slice t) = sum over ranks q of follow(x_q, r, blocks_q[t],
    inverse=True); partial sums around the reduce ring."""

    @staticmethod
    def forward(ctx, x, r, skb: ShardedSparseKB, impl, backend: str, direction: str):
        ctx.skb, ctx.impl = skb, impl
        ctx.save_for_backward(x, r)
        xv = skb._pad(x).t()  # [B, S]

        def contribute(t):
            blk = skb.blocks[t]
            if blk is None:
                return None
            # The public op, which pushes from a sparse enough x when asked (it finds the frontier
            # again for each block: a read of the local slice, cheap next to a pull).
            return _ops_follow(xv, r, blk, inverse=True, direction=direction, backend=backend).t()

        like = x.new_empty((skb.slice_width, x.shape[0]), dtype=acc_dtype(x.dtype))
        y = skb._ring(contribute=contribute, reduce_like=like)
        return y[: skb.num_local_entities].to(x.dtype).t()

    @staticmethod
    def backward(ctx, gy):
        skb, impl = ctx.skb, ctx.impl
        x, r = ctx.saved_tensors
        need_x, need_r = ctx.needs_input_grad[:2]
        xv = skb._pad(x).t()
        dx = _Sum(x.dtype)
        dr = torch.zeros(skb.num_relations, x.shape[0], dtype=acc_dtype(r.dtype), device=r.device) if need_r else None

        def consume(t, gt):  # the output gradient of slice t, from its owner
            blk = skb.blocks[t]
            if blk is None:
                return
            if need_x:
                dx.add(_pull(impl, gt.t(), r, blk, False))
            if need_r:
                dr.add_(_pull_dr(impl, xv, gt.t(), r, blk, True))

        skb._ring(send=skb._pad(gy), consume=consume)
        dx = dx.result(skb.slice_width, x.shape[0], x)[: skb.num_local_entities].to(x.dtype).t() if need_x else None
        if need_r:
            dr = skb._all_reduce(dr).to(r.dtype).t()
        return dx, dr, None, None, None, None


class _GatherPush(torch.autograd.Function):
    """A sparse frontier: every rank's nonzeros to every rank (all_gather), pushed locally."""

    @staticmethod
    def forward(ctx, vals, r, ptr, ids, skb: ShardedSparseKB, impl, batch: int):
        N, S = skb.world_size, skb.slice_width
        rows = torch.repeat_interleave(torch.arange(batch, device=ids.device), ptr.diff())
        keys = rows * S + ids  # sorted by (row, id) like the frontier
        count = torch.tensor([keys.numel()], dtype=torch.int64, device=ids.device)
        counts = [torch.empty_like(count) for _ in range(N)]
        dist.all_gather(counts, count, group=skb.group)
        counts = [int(c) for c in torch.cat(counts).cpu()]
        width = max(counts)
        fronts, outs = [None] * N, []
        if width > 0:
            pk = keys.new_full((width,), -1)
            pk[: keys.numel()] = keys
            pv = vals.new_zeros(width)
            pv[: vals.numel()] = vals
            all_k = [torch.empty_like(pk) for _ in range(N)]
            all_v = [torch.empty_like(pv) for _ in range(N)]
            dist.all_gather(all_k, pk, group=skb.group)
            dist.all_gather(all_v, pv, group=skb.group)
            for s in range(N):
                if skb.blocks[s] is None or counts[s] == 0:
                    continue
                k_s, v_s = all_k[s][: counts[s]], all_v[s][: counts[s]]
                row = torch.div(k_s, S, rounding_mode="floor")
                sptr = torch.zeros(batch + 1, dtype=torch.int64, device=k_s.device)
                torch.cumsum(torch.bincount(row, minlength=batch), 0, out=sptr[1:])
                fronts[s] = (sptr, k_s - row * S, v_s)
                outs.append((s, _push(impl, fronts[s], r, skb.blocks[s], batch)))
        ctx.skb, ctx.impl, ctx.fronts, ctx.counts, ctx.width, ctx.batch = skb, impl, fronts, counts, width, batch
        ctx.save_for_backward(r)
        dt = acc_dtype(vals.dtype)
        if not outs:
            y = vals.new_zeros((S, batch))
        elif len(outs) == 1:
            y = outs[0][1]
        else:
            # The push outputs are mostly untouched zero pages (the CPU kernel allocates them
            # lazily): add up only the rows some block reached, in float32 for 16-bit dtypes, and
            # write them into the first output, instead of a dense pass over every output.
            y = outs[0][1]
            rows = torch.unique(torch.cat([_touched_rows(skb.blocks[s], fronts[s][1]) for s, _ in outs]))
            total = y[rows].to(dt)
            for _, out in outs[1:]:
                total += out[rows]
            y[rows] = total.to(y.dtype)
        return y[: skb.num_local_entities].t()

    @staticmethod
    def backward(ctx, gy):
        skb, impl, N = ctx.skb, ctx.impl, ctx.skb.world_size
        (r,) = ctx.saved_tensors
        need_v, need_r = ctx.needs_input_grad[:2]
        width, batch, R = ctx.width, ctx.batch, skb.num_relations
        gv = skb._pad(gy).t()
        dt = acc_dtype(r.dtype)
        # One all_reduce: the value gradients of every rank's nonzeros, then dr.
        flat = torch.zeros(N * width + R * batch, dtype=dt, device=r.device)
        dr = flat[N * width:].view(R, batch)
        for s in range(N):
            if ctx.fronts[s] is None:
                continue
            dvals, dr_s = _push_backward(impl, gv, ctx.fronts[s], r, skb.blocks[s], batch)
            flat[s * width : s * width + ctx.counts[s]] += dvals.to(dt)
            dr += dr_s.to(dt)
        skb._all_reduce(flat if need_v else flat[N * width:])  # need_v agrees on every rank
        mine = flat[skb.rank * width : skb.rank * width + ctx.counts[skb.rank]]
        dvals = mine.to(r.dtype) if need_v else None
        return dvals, dr.to(r.dtype).t() if need_r else None, None, None, None, None, None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_full, skb: ShardedSparseKB):
        ctx.skb = skb
        return x_full[:, skb.lo : skb.hi].clone()

    @staticmethod
    def backward(ctx, g):
        return _all_gather_slices(ctx.skb, g), None


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, skb: ShardedSparseKB):
        ctx.skb = skb
        return _all_gather_slices(skb, x)

    @staticmethod
    def backward(ctx, g):
        skb = ctx.skb
        return g[:, skb.lo : skb.hi], None


def _all_gather_slices(skb: ShardedSparseKB, x: torch.Tensor) -> torch.Tensor:
    """[B, num_entities] from every rank's [B, hi - lo] slice (padded to S for the collective)."""
    buf = skb._pad(x).contiguous()
    out = [torch.empty_like(buf) for _ in range(skb.world_size)]
    dist.all_gather(out, buf, group=skb.group)
    sizes = [skb.bounds[q + 1] - skb.bounds[q] for q in range(skb.world_size)]
    return torch.cat([o[:n] for o, n in zip(out, sizes)]).t()
