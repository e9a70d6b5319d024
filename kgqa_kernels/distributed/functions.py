"""The autograd Functions of the sharded ops: each one's forward moves slices (the ring) or
nonzeros (all_gather) between the ranks and runs the per-block kernels; its backward is the
mirror image. ``skb`` is the ShardedSparseKB, ``impl`` the kernels of ``blocks.kernels``."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..numerics import acc_dtype
from ..ops.follow import follow as local_follow
from .blocks import BlockSum, pull, pull_dr, push, push_backward, touched_rows
from .ring import all_gather, all_gather_slices, all_reduce, pad, ring

if TYPE_CHECKING:
    from .sharded_kb import ShardedSparseKB


class GatherPull(torch.autograd.Function):
    """y_q = sum over s of follow(x_s, r, blocks[s]); x slices around the gather ring."""

    @staticmethod
    def forward(ctx, x, r, skb: ShardedSparseKB, impl):
        ctx.skb, ctx.impl = skb, impl
        ctx.save_for_backward(x, r)
        acc = BlockSum(x.dtype)

        def consume(s, xs):
            if skb.blocks[s] is not None:
                acc.add(pull(impl, xs.t(), r, skb.blocks[s], False))

        ring(skb, send=pad(skb, x), consume=consume)
        y = acc.result(skb.slice_width, x.shape[0], x)
        return y[: skb.num_local_entities].to(x.dtype).t()

    @staticmethod
    def backward(ctx, gy):
        skb, impl = ctx.skb, ctx.impl
        x, r = ctx.saved_tensors
        need_x, need_r = ctx.needs_input_grad[:2]
        g = pad(skb, gy)  # [S, B]
        gv = g.t()
        dr = torch.zeros(skb.num_relations, x.shape[0], dtype=acc_dtype(r.dtype), device=r.device) if need_r else None

        def consume(s, xs):  # dr: every x slice again, against this rank's output gradient
            if skb.blocks[s] is not None:
                dr.add_(pull_dr(impl, xs.t(), gv, r, skb.blocks[s], False))

        def contribute(t):  # dx of slice t: this rank's facts out of slice t, pulled backwards
            blk = skb.blocks[t]
            return None if blk is None else pull(impl, gv, r, blk, True)

        dx_buf = ring(
            skb, send=pad(skb, x) if need_r else None, consume=consume if need_r else None,
            contribute=contribute if need_x else None, reduce_like=g.new_empty(g.shape, dtype=acc_dtype(g.dtype)),
        )
        dx = dx_buf[: skb.num_local_entities].to(x.dtype).t() if need_x else None
        if need_r:
            dr = all_reduce(skb, dr).to(r.dtype).t()
        return dx, dr, None, None


class ReducePull(torch.autograd.Function):
    """inverse=True: y_t (subjects of slice t) = sum over ranks q of follow(x_q, r, blocks_q[t],
    inverse=True); partial sums around the reduce ring."""

    @staticmethod
    def forward(ctx, x, r, skb: ShardedSparseKB, impl, backend: str, direction: str):
        ctx.skb, ctx.impl = skb, impl
        ctx.save_for_backward(x, r)
        xv = pad(skb, x).t()  # [B, S]

        def contribute(t):
            blk = skb.blocks[t]
            if blk is None:
                return None
            # The public op, which pushes from a sparse enough x when asked (it finds the frontier
            # again for each block: a read of the local slice, cheap next to a pull).
            return local_follow(xv, r, blk, inverse=True, direction=direction, backend=backend).t()

        like = x.new_empty((skb.slice_width, x.shape[0]), dtype=acc_dtype(x.dtype))
        y = ring(skb, contribute=contribute, reduce_like=like)
        return y[: skb.num_local_entities].to(x.dtype).t()

    @staticmethod
    def backward(ctx, gy):
        skb, impl = ctx.skb, ctx.impl
        x, r = ctx.saved_tensors
        need_x, need_r = ctx.needs_input_grad[:2]
        xv = pad(skb, x).t()
        dx = BlockSum(x.dtype)
        dr = torch.zeros(skb.num_relations, x.shape[0], dtype=acc_dtype(r.dtype), device=r.device) if need_r else None

        def consume(t, gt):  # the output gradient of slice t, from its owner
            blk = skb.blocks[t]
            if blk is None:
                return
            if need_x:
                dx.add(pull(impl, gt.t(), r, blk, False))
            if need_r:
                dr.add_(pull_dr(impl, xv, gt.t(), r, blk, True))

        ring(skb, send=pad(skb, gy), consume=consume)
        dx = dx.result(skb.slice_width, x.shape[0], x)[: skb.num_local_entities].to(x.dtype).t() if need_x else None
        if need_r:
            dr = all_reduce(skb, dr).to(r.dtype).t()
        return dx, dr, None, None, None, None


class GatherPush(torch.autograd.Function):
    """A sparse frontier: every rank's nonzeros to every rank (all_gather), pushed locally."""

    @staticmethod
    def forward(ctx, vals, r, ptr, ids, skb: ShardedSparseKB, impl, batch: int):
        N, S = skb.world_size, skb.slice_width
        rows = torch.repeat_interleave(torch.arange(batch, device=ids.device), ptr.diff())
        keys = rows * S + ids  # sorted by (row, id) like the frontier
        count = torch.tensor([keys.numel()], dtype=torch.int64, device=ids.device)
        counts = [int(c) for c in torch.cat(all_gather(skb, count)).cpu()]
        width = max(counts)
        fronts, outs = [None] * N, []
        if width > 0:
            pk = keys.new_full((width,), -1)
            pk[: keys.numel()] = keys
            pv = vals.new_zeros(width)
            pv[: vals.numel()] = vals
            all_k, all_v = all_gather(skb, pk), all_gather(skb, pv)
            for s in range(N):
                if skb.blocks[s] is None or counts[s] == 0:
                    continue
                k_s, v_s = all_k[s][: counts[s]], all_v[s][: counts[s]]
                row = torch.div(k_s, S, rounding_mode="floor")
                sptr = torch.zeros(batch + 1, dtype=torch.int64, device=k_s.device)
                torch.cumsum(torch.bincount(row, minlength=batch), 0, out=sptr[1:])
                fronts[s] = (sptr, k_s - row * S, v_s)
                outs.append((s, push(impl, fronts[s], r, skb.blocks[s], batch)))
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
            rows = torch.unique(torch.cat([touched_rows(skb.blocks[s], fronts[s][1]) for s, _ in outs]))
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
        gv = pad(skb, gy).t()
        dt = acc_dtype(r.dtype)
        # One all_reduce: the value gradients of every rank's nonzeros, then dr.
        flat = torch.zeros(N * width + R * batch, dtype=dt, device=r.device)
        dr = flat[N * width:].view(R, batch)
        for s in range(N):
            if ctx.fronts[s] is None:
                continue
            dvals, dr_s = push_backward(impl, gv, ctx.fronts[s], r, skb.blocks[s], batch)
            flat[s * width : s * width + ctx.counts[s]] += dvals.to(dt)
            dr += dr_s.to(dt)
        all_reduce(skb, flat if need_v else flat[N * width:])  # need_v agrees on every rank
        mine = flat[skb.rank * width : skb.rank * width + ctx.counts[skb.rank]]
        dvals = mine.to(r.dtype) if need_v else None
        return dvals, dr.to(r.dtype).t() if need_r else None, None, None, None, None, None


class Scatter(torch.autograd.Function):
    """This rank's slice of a replicated [B, E] tensor; the gradient is all-gathered."""

    @staticmethod
    def forward(ctx, x_full, skb: ShardedSparseKB):
        ctx.skb = skb
        return x_full[:, skb.lo : skb.hi].clone()

    @staticmethod
    def backward(ctx, g):
        return all_gather_slices(ctx.skb, g), None


class AllGather(torch.autograd.Function):
    """[B, E] from every rank's slice; the gradient keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x, skb: ShardedSparseKB):
        ctx.skb = skb
        return all_gather_slices(skb, x)

    @staticmethod
    def backward(ctx, g):
        skb = ctx.skb
        return g[:, skb.lo : skb.hi], None
