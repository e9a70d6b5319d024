"""count alone: our kernels (a fixed-order sum) against the reference's x.sum(-1)."""
import pytest
import torch

from kgqa_kernels.bench.providers import set_op_providers
from conftest import DEVICE

SIZES = [(64, 43_234), (64, 1_000_000)]
PROVIDERS = set_op_providers(DEVICE, "count")


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("layout", ["row-major", "batch-innermost"])
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
@pytest.mark.parametrize("shape", SIZES, ids=[f"{b}x{e}" for b, e in SIZES])
def test_count(benchmark, shape, provider, layout, mode):
    x = torch.rand(shape, device=DEVICE)
    if layout == "batch-innermost":  # follow's output
        x = x.t().contiguous().t()
    backward = mode == "fwd+bwd"

    def call():
        leaf = x.detach().requires_grad_(backward)
        out = provider.fn(leaf)
        if backward:
            out.sum().backward()
        return out

    benchmark.group = f"count {shape[0]}x{shape[1]} {layout} {mode}"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
