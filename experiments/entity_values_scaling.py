"""How entity_values scales (docs/results.md, "entity_values at 1M and 10M facts"): time and peak
memory of kgqa_kernels.entity_values (two follows over the KB) on synthetic power-law KBs of 1M and
10M facts (1M entities, 1,000 relations: kgqa_kernels.bench.workloads' pl-1m and pl-10m), for B = 1
and 4 (the number of numeric relations a question reads, e.g. release_year) and B = 64 (a training
batch), forward alone and forward + backward (r requires grad), on one backend; and the same for
the reference (a gather of every fact's value and two index_add_ scatters, [B, facts]
intermediates) where those fit in --ref-max-gb.

A tenth of the entities have a value (the rest NaN); example b's r is one-hot on relation b % 4.
Times: median of --repeats calls after one warm-up (kgqa_kernels.bench.measure.time_interleaved,
ours and the reference in rounds); peak: the resident-set high-water mark the first timed call adds
(CPU) or max_memory_allocated (CUDA).

Usage: python experiments/entity_values_scaling.py [--facts 1000000,10000000] [--batches 1,4,64]
       [--backend cpu] [--repeats 3] [--ref-max-gb 4]"""
from __future__ import annotations

import argparse
import os
import time

import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from kgqa_kernels.bench.measure import time_interleaved
from kgqa_kernels.bench.workloads import kb_specs

KBS = {1_000_000: "pl-1m", 10_000_000: "pl-10m"}
NUMERIC_RELATIONS = 4


def _inputs(kb, B, device):
    g = torch.Generator().manual_seed(0)
    values = torch.rand(kb.num_entities, generator=g) * 100 + 1900
    values[torch.rand(kb.num_entities, generator=g) >= 0.1] = float("nan")
    r = torch.zeros(B, kb.num_relations)
    r[torch.arange(B), torch.arange(B) % NUMERIC_RELATIONS] = 1.0
    return values.to(device), r.to(device)


def _call(fn, values, r, kb, backward):
    def run():
        rl = r.detach().requires_grad_(backward)
        out = fn(values, rl, kb)
        if backward:
            out.nan_to_num(0).sum().backward()
        return out

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--facts", default="1000000,10000000")
    ap.add_argument("--batches", default="1,4,64")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-max-gb", type=float, default=4.0,
                    help="skip the reference where its [B, facts] intermediates (about 6 float32 and 2 int64 "
                         "tensors of B x facts) would exceed this")
    args = ap.parse_args()
    device = torch.device("cuda" if args.backend in ("cuda", "triton") and torch.cuda.is_available() else "cpu")
    # The load average says how much else ran: on a shared machine every time here stretches with it.
    print(f"entity_values, backend={args.backend}, device={device}, torch threads={torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| facts | B | pass | ours: ms | ours: peak MiB | reference: ms | reference: peak MiB |")
    print("|---|---|---|---|---|---|---|")
    ours = lambda v, r, kb: kk.entity_values(v, r, kb, backend=args.backend)  # noqa: E731
    for facts in (int(f) for f in args.facts.split(",")):
        t0 = time.perf_counter()
        kb = kb_specs()[KBS[facts]].build().to(device)
        built = time.perf_counter() - t0
        for B in (int(b) for b in args.batches.split(",")):
            values, r = _inputs(kb, B, device)
            ref_gb = B * kb.num_facts * (6 * 4 + 2 * 8) / 2**30
            for backward in (False, True):
                fns = [_call(ours, values, r, kb, backward)]
                if ref_gb <= args.ref_max_gb:
                    fns.append(_call(reference.entity_values, values, r, kb, backward))
                timings = time_interleaved(fns, device, repeats=args.repeats, warmup=1, peak=True)
                cells = []
                for t in timings:
                    peak = "-" if t.peak_bytes is None else f"{t.peak_bytes / 2**20:,.0f}"
                    cells += [f"{t.median_ms:,.0f}", peak]
                if len(timings) == 1:
                    cells += [f"not run (~{ref_gb:.0f} GB)", "-"]
                print(f"| {kb.num_facts:,} | {B} | {'fwd+bwd' if backward else 'forward'} | " + " | ".join(cells) + " |",
                      flush=True)
        print(f"(KB of {kb.num_facts:,} facts, {kb.num_entities:,} entities built in {built:.0f} s; "
              f"load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
