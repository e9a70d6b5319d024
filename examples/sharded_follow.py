"""A sharded two-hop query under torchrun: every rank generates (in real use: reads) its part of
the facts, ShardedSparseKB.from_local_facts sends each fact to the rank that owns its object, then
two hops from one seed entity per example, the top answers, and a backward pass.

    # one machine, CPU (gloo): what this project's tests run
    torchrun --standalone --nproc_per_node 2 examples/sharded_follow.py --check
    # one machine, 8 GPUs (NCCL)
    torchrun --standalone --nproc_per_node 8 examples/sharded_follow.py --backend nccl
    # 8 machines x 8 GPUs: the same command on every machine, HOST being one of them
    torchrun --nnodes 8 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        --rdzv_id kgqa-sharded examples/sharded_follow.py --backend nccl

--check (small KBs only) also builds the whole KB on every rank and compares the answers and the
gradient of r with the single-process kgqa_kernels.follow.
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kgqa_kernels as kk  # noqa: E402


PARTS = 64  # the KB comes in 64 files; rank q reads files q, q + N, q + 2N, ...


def facts_of_part(part, args):
    """The facts of file ``part``: a random KB here, the same whatever the number of ranks."""
    n = args.facts // PARTS + (1 if part < args.facts % PARTS else 0)
    g = torch.Generator().manual_seed(1000 + part)
    return tuple(torch.randint(0, m, (n,), generator=g) for m in (args.entities, args.relations, args.entities))


def facts_of_parts(parts, args):
    return tuple(torch.cat(t) for t in zip(*[facts_of_part(q, args) for q in parts]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=("gloo", "nccl"), default="nccl" if torch.cuda.is_available() else "gloo")
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--relations", type=int, default=50)
    ap.add_argument("--facts", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    dist.init_process_group(args.backend)  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.backend == "nccl":
        local = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")

    t0 = time.perf_counter()
    s, p, o = facts_of_parts(range(rank, PARTS, world), args)
    skb = kk.ShardedSparseKB.from_local_facts(s, p, o, args.entities, args.relations, device=device)
    built = time.perf_counter() - t0
    lo, hi = skb.shard_range()

    g = torch.Generator().manual_seed(0)  # the same batch on every rank
    seeds = torch.randint(0, args.entities, (args.batch,), generator=g)
    x = torch.zeros(args.batch, args.entities)
    x[torch.arange(args.batch), seeds] = 1.0
    r1 = torch.rand(args.batch, args.relations, generator=g).to(device).requires_grad_()
    r2 = torch.rand(args.batch, args.relations, generator=g).to(device).requires_grad_()

    t0 = time.perf_counter()
    y1 = skb.follow(x[:, lo:hi].to(device), r1)  # first hop: a sparse frontier, pushed
    y2 = skb.follow(y1, r2)  # second hop: dense, pulled
    vals, ids = skb.topk(y2.detach(), 5)  # answers, as global entity ids, on every rank
    (y2.sum() / args.batch).backward()  # a per-rank loss on the local slice
    if device.type == "cuda":
        torch.cuda.synchronize()
    hop_s = time.perf_counter() - t0

    if rank == 0:
        print(f"{world} ranks, {args.backend}: {skb}; built in {built:.2f} s; 2 hops + topk + backward "
              f"in {hop_s * 1e3:.1f} ms; facts per rank {skb.facts_per_rank}; top answers of example 0: "
              f"{ids[0].tolist()}")
    if args.check:
        kb = kk.SparseKB(*facts_of_parts(range(PARTS), args), args.entities, args.relations).to(device)
        q1, q2 = (t.detach().clone().requires_grad_() for t in (r1, r2))
        full = kk.follow(kk.follow(x.to(device), q1, kb), q2, kb)
        (full.sum() / args.batch).backward()
        torch.testing.assert_close(y2.detach(), full.detach()[:, lo:hi])
        torch.testing.assert_close(vals, full.detach().topk(5).values)
        torch.testing.assert_close(r1.grad, q1.grad)
        torch.testing.assert_close(r2.grad, q2.grad)
        if rank == 0:
            print("check: the sharded answers and gradients equal the single-process ones")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
