"""The ports in examples/ against their original formulations under pytest-benchmark (the same
cases as `kgqa-bench --suite ports`, kgqa_kernels.bench.ports): one forward + backward from a
materialised gradient. KGQA_BENCH_PORT_SIZES chooses the sizes (default: ports-small)."""
import os

import pytest

from kgqa_kernels.bench.measure import peak_memory_bytes
from kgqa_kernels.bench.ports import PORT_SIZES, PORTS
from kgqa_kernels.bench.providers import _our_backends
from conftest import DEVICE

SIZES = [s for s in os.environ.get("KGQA_BENCH_PORT_SIZES", "ports-small").split(",") if s]
CASES = [(port, who) for port in PORTS for who in [f"kgqa:{b}" for b in _our_backends(DEVICE)] + ["original"]]

_cases = {}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("port,who", CASES, ids=[f"{p}-{w}" for p, w in CASES])
def test_port(benchmark, port, who, size):
    key = (port, size)
    if key not in _cases:
        for old in _cases.values():  # one case alive at a time (a 1M-fact case holds its graph and model)
            old.cleanup()
        _cases.clear()
        _cases[key] = PORTS[port](PORT_SIZES[size], DEVICE)
    case = _cases[key]
    call = case.original if who == "original" else case.ours(who.split(":", 1)[1])
    call()  # warm-up, and the builds outside the measurement
    benchmark.group = f"port {port} {size} ({case.num_facts:,} facts, batch {case.batch}) fwd+bwd-grad"
    benchmark.extra_info.update(provider=who if who != "original" else f"original: {case.original_name}",
                                num_facts=case.num_facts, batch=case.batch,
                                peak_bytes=peak_memory_bytes(call, DEVICE))
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
