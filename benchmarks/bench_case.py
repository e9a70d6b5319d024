"""The one helper every benchmark file uses: measure a provider on a workload with
pytest-benchmark, and record peak memory and the workload in extra_info."""
import pytest

from kgqa_kernels.bench.measure import peak_memory_bytes
from kgqa_kernels.bench.providers import MODES, run
from kgqa_kernels.bench.workloads import X_KINDS, make_inputs
from conftest import DEVICE


def bench_provider(benchmark, ctx, provider, x_kind, batch, mode, k=1):
    if not provider.applies(ctx.kb, x_kind, MODES[mode]):
        pytest.skip(f"{provider.name} does not apply to x={x_kind}, {mode} on this KB ({provider.note})")
    xs, rs = make_inputs(ctx.kb, batch, x_kind, DEVICE, k=k)

    def call():
        return run(provider, ctx, xs, rs, MODES[mode], grad_x=X_KINDS[x_kind].requires_grad)

    call()  # builds the provider's cached matrices outside the measurement
    benchmark.group = f"{provider.op} k={k} {ctx.kb.num_facts:,} facts x={x_kind} B={batch} {mode}"
    benchmark.extra_info.update(provider=provider.name, num_facts=ctx.kb.num_facts, batch=batch, mode=mode,
                                peak_bytes=peak_memory_bytes(call, DEVICE))
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
