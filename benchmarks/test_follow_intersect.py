import pytest

from kgqa_kernels.bench.providers import intersect_providers
from bench_case import bench_provider
from conftest import BATCHES, DEVICE

PROVIDERS = intersect_providers(DEVICE)


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_follow_intersect(benchmark, kb_ctx, provider, batch, k, mode):
    bench_provider(benchmark, kb_ctx, provider, "dense", batch, mode, k=k)
