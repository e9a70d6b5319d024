"""entity_values on the suite's KBs: ours (two follows) against the reference (a gather of each
fact's value and two index_add_ scatters); r one-hot on one relation, as for a release year."""
import pytest
import torch

from kgqa_kernels.bench.providers import set_op_providers
from conftest import BATCHES, DEVICE

PROVIDERS = set_op_providers(DEVICE, "entity_values")


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_entity_values(benchmark, kb_ctx, provider, batch, mode):
    kb = kb_ctx.kb
    g = torch.Generator().manual_seed(0)
    values = torch.rand(kb.num_entities, generator=g) * 100
    values[torch.rand(kb.num_entities, generator=g) < 0.9] = float("nan")  # a tenth of the entities are numbers
    values = values.to(DEVICE)
    r = torch.zeros(batch, kb.num_relations, device=DEVICE)
    r[torch.arange(batch), torch.arange(batch) % kb.num_relations] = 1.0
    backward = mode == "fwd+bwd"

    def call():
        rl = r.detach().requires_grad_(backward)
        out = provider.fn(values, rl, kb)
        if backward:
            out.nan_to_num(0).sum().backward()
        return out

    benchmark.group = f"entity_values {kb.num_facts:,} facts B={batch} {mode}"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
