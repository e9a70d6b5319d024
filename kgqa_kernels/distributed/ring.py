"""How the ranks of a sharded KB talk: the process group, the ring that moves [S, B] slices
(gathering them, or reducing partial sums of them), and the few collectives besides.

Every function takes the sharded KB ``skb`` for its public attributes: ``group``, ``world_size``,
``rank``, and for the slices ``slice_width`` (S) and ``bounds``.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
import torch.distributed as dist

TAG_REDUCE, TAG_GATHER = 1, 2  # gloo matches messages by tag; NCCL matches in posting order


def group_state(group, who: str) -> Tuple[int, int]:
    """(world size, rank) of this process in ``group`` (None: the default group)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"{who}: torch.distributed is not initialised: call torch.distributed.init_process_group() "
            f"first (or pass group=, a process group of the ranks that share the KB)"
        )
    try:
        return dist.get_world_size(group), dist.get_rank(group)
    except Exception as e:  # noqa: BLE001  (torch raises several types here)
        raise ValueError(f"{who}: group is not a usable process group: {e}") from None


def global_rank(group, q: int) -> int:
    """The global rank of rank ``q`` of ``group``: point-to-point ops take global ranks."""
    return q if group is None else dist.get_global_rank(group, q)


def pad(skb, x: torch.Tensor) -> torch.Tensor:
    """[S, B] contiguous (batch innermost, as the kernels read it) holding x [B, n] and zeros."""
    n, S = x.shape[1], skb.slice_width
    xt = x.t()
    if n == S and xt.is_contiguous():
        return xt  # a chained hop's output already has this layout: no copy
    buf = x.new_empty(S, x.shape[0])
    buf[:n].copy_(xt)
    buf[n:].zero_()
    return buf


def ring(
    skb,
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
    N, q, group = skb.world_size, skb.rank, skb.group
    nxt, prv = global_rank(group, (q + 1) % N), global_rank(group, (q - 1) % N)
    cur = send
    spare = [torch.empty_like(send), torch.empty_like(send)] if send is not None and N > 1 else None
    partial = rbuf = None
    if contribute is not None and N > 1:
        rbuf = torch.empty_like(reduce_like)
    for k in range(N):
        ops, incoming = [], None
        if contribute is not None and k > 0:
            ops += [
                dist.P2POp(dist.isend, partial, nxt, group, TAG_REDUCE),
                dist.P2POp(dist.irecv, rbuf, prv, group, TAG_REDUCE),
            ]
        if send is not None and k < N - 1:
            incoming = spare[k % 2]
            ops += [
                dist.P2POp(dist.isend, cur, nxt, group, TAG_GATHER),
                dist.P2POp(dist.irecv, incoming, prv, group, TAG_GATHER),
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


def all_reduce(skb, t: torch.Tensor) -> torch.Tensor:
    """t summed over the ranks, in place."""
    if skb.world_size > 1:
        dist.all_reduce(t, group=skb.group)
    return t


def all_gather(skb, t: torch.Tensor) -> List[torch.Tensor]:
    """Every rank's t (of one shape and dtype on every rank), by rank."""
    out = [torch.empty_like(t) for _ in range(skb.world_size)]
    dist.all_gather(out, t, group=skb.group)
    return out


def all_gather_slices(skb, x: torch.Tensor) -> torch.Tensor:
    """[B, num_entities] from every rank's [B, hi - lo] slice (padded to S for the collective)."""
    out = all_gather(skb, pad(skb, x).contiguous())
    sizes = [skb.bounds[q + 1] - skb.bounds[q] for q in range(skb.world_size)]
    return torch.cat([o[:n] for o, n in zip(out, sizes)]).t()
