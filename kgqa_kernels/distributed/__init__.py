"""A KB sharded across the ranks of a torch.distributed process group.

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

The modules, one job each: ``sharded_kb`` (ShardedSparseKB: building it, its public methods;
``sharded_follow``, ``shard_bounds``), ``agree`` (the all-ranks agreement every collective method
starts with), ``ring`` (the process group, the ring, the other collectives), ``blocks`` (the
backend kernels on one block) and ``functions`` (the autograd Functions of the sharded ops).
"""
from __future__ import annotations

from .sharded_kb import ShardedSparseKB, shard_bounds, sharded_follow

__all__ = ["ShardedSparseKB", "sharded_follow", "shard_bounds"]
