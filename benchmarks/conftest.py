"""pytest-benchmark suite (`pytest benchmarks/`): the same workloads and providers as `kgqa-bench`
(kgqa_kernels.bench), at sizes that run in minutes. Set KGQA_BENCH_KBS=small,metaqa,pl-1m,pl-10m
to choose KBs (default: small,metaqa) and KGQA_BENCH_BATCHES (default: 16,64)."""
import os

import pytest
import torch

from kgqa_kernels.bench.providers import KBContext
from kgqa_kernels.bench.workloads import kb_specs

KBS = [k for k in os.environ.get("KGQA_BENCH_KBS", "small,metaqa").split(",") if k]
BATCHES = [int(b) for b in os.environ.get("KGQA_BENCH_BATCHES", "16,64").split(",") if b]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

_contexts = {}


@pytest.fixture(params=KBS, scope="session")
def kb_ctx(request):
    if request.param not in _contexts:
        _contexts[request.param] = KBContext(kb_specs()[request.param].build().to(DEVICE))
    return _contexts[request.param]
