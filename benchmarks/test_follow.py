import pytest

from kgqa_kernels.bench.providers import follow_providers
from bench_case import bench_provider
from conftest import BATCHES, DEVICE

PROVIDERS = follow_providers(DEVICE)


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("x_kind", ["dense", "one-hot"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_follow(benchmark, kb_ctx, provider, batch, x_kind, mode):
    bench_provider(benchmark, kb_ctx, provider, x_kind, batch, mode)
