"""select_extreme alone: our kernels (one pass for each row's best, one for the output) against the
reference's masked max and where, exact and soft, with values shared by the rows ([E]) or not."""
import pytest
import torch

from kgqa_kernels.bench.providers import set_op_providers
from conftest import DEVICE

SIZES = [(64, 43_234), (64, 1_000_000)]
PROVIDERS = set_op_providers(DEVICE, "select_extreme")


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
@pytest.mark.parametrize("shape", SIZES, ids=[f"{b}x{e}" for b, e in SIZES])
def test_select_extreme(benchmark, shape, provider, temperature, mode):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=g) < 0.01).float().to(DEVICE)  # sets of about 1% of the entities
    values = torch.randint(1900, 2020, (shape[1],), generator=g).float()
    values[torch.rand(shape[1], generator=g) < 0.5] = float("nan")  # half the entities have no value
    values = values.to(DEVICE)
    backward = mode == "fwd+bwd"

    def call():
        xl, vl = x.detach().requires_grad_(backward), values.detach().requires_grad_(backward)
        out = provider.fn(xl, vl, temperature=temperature)
        if backward:
            out.sum().backward()
        return out

    benchmark.group = f"select_extreme {shape[0]}x{shape[1]} T={temperature} {mode}"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
