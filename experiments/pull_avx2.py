"""Whether the CPU pull gains from AVX2 and a batch tile fixed at 64 (the package is built for
baseline x86-64): builds experiments/pull_avx2.cpp twice (default flags; -mavx2 -mfma), checks each
variant against the package's follow op, and prints the median ms of 5 alternated rounds of the
forward and the inverse pull, B = 64 fp32, x a batch-innermost copy made by transpose_copy.

Usage: python experiments/pull_avx2.py [KB]   (KB: a key of kgqa_kernels.bench.workloads.kb_specs; default zipf-0.8)"""
import os
import statistics
import sys
import time

import torch
from torch.utils.cpp_extension import load

HERE = os.path.dirname(os.path.abspath(__file__))
SRC, CSRC = os.path.join(HERE, "pull_avx2.cpp"), os.path.join(HERE, "..", "csrc")
base = ["-O3", "-fno-math-errno", "-fopenmp"]
m_sse = load("kgqa_pull_sse", [SRC], extra_include_paths=[CSRC], extra_cflags=base, extra_ldflags=["-fopenmp"])
m_avx = load("kgqa_pull_avx2", [SRC], extra_include_paths=[CSRC], extra_cflags=base + ["-mavx2", "-mfma"], extra_ldflags=["-fopenmp"])
import kgqa_kernels as kk
from kgqa_kernels.bench.workloads import kb_specs
kb = kb_specs()[sys.argv[1] if len(sys.argv) > 1 else "zipf-0.8"].build()
B, E, R = 64, kb.num_entities, kb.num_relations
g = torch.Generator().manual_seed(0)
x = torch.rand(E, B, generator=g); x[x < 0.5] = 0
x = torch.ops.kgqa_kernels.transpose_copy(x.t().contiguous())  # on huge pages, as the ops' copies
r = torch.softmax(torch.randn(R, B, generator=g), 0).contiguous()
T = kb.tensors()
fns = {"op": lambda inv: torch.ops.kgqa_kernels.follow(x, r, T, inv),
       "sse runtime-bt": lambda inv: m_sse.pull(x, r, T, inv, 0), "sse bt=64": lambda inv: m_sse.pull(x, r, T, inv, 1),
       "avx2 runtime-bt": lambda inv: m_avx.pull(x, r, T, inv, 0), "avx2 bt=64": lambda inv: m_avx.pull(x, r, T, inv, 1)}
for inv in (False, True):
    ref = fns["op"](inv)
    for k, f in fns.items(): torch.testing.assert_close(f(inv), ref, rtol=1e-4, atol=1e-4)
    ts = {k: [] for k in fns}
    for _ in range(5):
        for k, f in fns.items():
            t0 = time.perf_counter(); f(inv); ts[k].append(1e3*(time.perf_counter()-t0))
    print("inverse" if inv else "forward", {k: round(statistics.median(v)) for k, v in ts.items()}, flush=True)
