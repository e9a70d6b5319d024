"""ShardedSparseKB: building the sharded KB (its blocks, from the full facts or from each rank's
part of them) and its public methods; each method checks its arguments, agrees with the other ranks
(``agree``) and runs an autograd Function of ``functions``."""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

from .. import backends, layout
from ..checks import (
    DIRECTIONS, check_count, check_dense, check_direction, check_facts, check_float, check_inverse, check_same_dtype,
    check_sparse_x, check_weights,
)
from ..kb import SparseKB, TensorLike
from ..numerics import FLOAT_DTYPES
from ..ops.follow_push import PUSH_MAX_DENSITY, bounded_frontier, check_push_allowed, frontier
from . import functions
from .agree import agree
from .blocks import kernels
from .ring import all_gather, group_state


def shard_bounds(num_entities: int, world_size: int) -> List[int]:
    """[lo_0, lo_1, ..., lo_N = num_entities]: rank q owns entity ids [lo_q, lo_{q+1}); the first
    ``num_entities % world_size`` ranks own one more id than the others."""
    q, rem = divmod(num_entities, world_size)
    bounds = [0]
    for k in range(world_size):
        bounds.append(bounds[-1] + q + (1 if k < rem else 0))
    return bounds


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
        agree(  # every rank must be given the same facts (a cheap check: their number)
            self, "ShardedSparseKB", err,
            dict(num_entities=self.num_entities, num_relations=self.num_relations,
                 weighted=-1 if facts is None else int(facts[3] is not None), num_facts=n),
            must_agree={"num_entities", "num_relations", "weighted", "num_facts"},
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
        agreed = agree(
            self, "ShardedSparseKB.from_local_facts", err,
            dict(num_entities=self.num_entities, num_relations=self.num_relations,
                 weighted=-1 if facts is None else int(facts[3] is not None),
                 num_facts=-1 if facts is None else facts[0].numel()),
            must_agree={"num_entities", "num_relations", "weighted"},
        )
        if agreed.total("num_facts") == 0:
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
        self.world_size, self.rank = group_state(group, who)
        self._setup_err = None
        counts = {"num_entities": num_entities, "num_relations": num_relations}
        for name, n in counts.items():
            try:
                counts[name] = check_count(who, name, n)
            except ValueError as e:
                self._setup_err = e
        num_entities, num_relations = counts["num_entities"], counts["num_relations"]
        if self._setup_err is not None:
            num_entities = num_relations = 1
        self.group = group
        self.num_entities, self.num_relations = num_entities, num_relations
        self.bounds = shard_bounds(num_entities, self.world_size)
        self.lo, self.hi = self.bounds[self.rank], self.bounds[self.rank + 1]
        self.slice_width = math.ceil(num_entities / self.world_size)  # S: every buffer is padded to it
        self._device = None if device is None else torch.device(device)
        self._bounds_t = torch.tensor(self.bounds, dtype=torch.int64, device=self._device)

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
                blk.forget_input_order()  # a block is never re-weighted: 4 bytes a fact saved
                self.blocks.append(blk)
            start = end
        self.weighted = w is not None
        self.num_local_facts = sum(b.num_facts for b in self.blocks if b is not None)
        counts_t = torch.tensor([self.num_local_facts], dtype=torch.int64, device=self._device)
        self.facts_per_rank = [int(c) for c in torch.cat(all_gather(self, counts_t)).cpu()]
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
        if x.layout != torch.strided:
            check_sparse_x(op, name, x, cols_name="hi - lo")

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
            inverse = check_inverse(op, inverse)
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
        agreed = agree(
            self, op, err,
            dict(batch=batch, dtype=dtype_code, inverse=int(bool(inverse)) if isinstance(inverse, bool) else -1,
                 direction=DIRECTIONS.index(direction) if direction in DIRECTIONS else -1,
                 need_x=need_x, need_r=need_r, sparse=sparse, nnz=nnz),
            must_agree={"batch", "dtype", "inverse", "direction", "need_x", "need_r", "sparse"},
        )
        name, impl = kernels(backend, self.device)
        if inverse:
            if sparse:
                x = x.to_dense()  # gradients come back as the sparse x's stored values
            return functions.ReducePull.apply(x, r, self, impl, name, direction)
        if direction == "auto":
            dense_limit = int(PUSH_MAX_DENSITY * batch * self.num_entities)
            push = sparse or (not need_x and agreed.total("nnz") <= dense_limit and batch > 0)
        else:
            push = direction == "push"
        if not push:
            return functions.GatherPull.apply(x.to_dense() if sparse else x, r, self, impl)
        ptr, ids, vals = front if front is not None else frontier(x)
        return functions.GatherPush.apply(vals, r, ptr, ids, self, impl, batch)

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
        agree(self, op, err, dict(batch=batch, dtype=dtype_code), must_agree={"batch", "dtype"})
        return functions.Scatter.apply(x_full, self)

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
        agree(self, op, err, dict(batch=batch, dtype=dtype_code), must_agree={"batch", "dtype"})
        return functions.AllGather.apply(x, self)

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
        agree(self, op, err, dict(batch=batch, dtype=dtype_code, k=k if isinstance(k, int) else -1),
              must_agree={"batch", "dtype", "k"})
        with torch.no_grad():
            x = x.detach()
            kk_local = min(k, self.num_local_entities)
            vals = torch.full((batch, k), -math.inf, dtype=x.dtype, device=x.device)
            ids = torch.full((batch, k), -1, dtype=torch.int64, device=x.device)
            if kk_local > 0:
                v, i = torch.topk(x, kk_local, dim=1)
                vals[:, :kk_local], ids[:, :kk_local] = v, i + self.lo
            all_vals, all_ids = all_gather(self, vals.contiguous()), all_gather(self, ids.contiguous())
            v, pos = torch.topk(torch.cat(all_vals, 1), k, dim=1)
            return v, torch.cat(all_ids, 1).gather(1, pos)


def sharded_follow(x: torch.Tensor, r: torch.Tensor, skb: ShardedSparseKB, **kwargs) -> torch.Tensor:
    """``skb.follow(x, r, **kwargs)``, spelled like ``kgqa_kernels.follow(x, r, kb)``."""
    if not isinstance(skb, ShardedSparseKB):
        raise TypeError(f"sharded_follow(): skb must be a kgqa_kernels.ShardedSparseKB, got {type(skb).__name__}")
    return skb.follow(x, r, **kwargs)
