"""intersect / union alone: our fused elementwise kernels against torch.stack(...).amin(0) etc."""
import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import reference
from conftest import DEVICE

SIZES = [(64, 43_234), (64, 1_000_000)]


@pytest.mark.parametrize("mode", ["forward", "fwd+bwd"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("op, tnorm", [("intersect", "min"), ("union", "max"), ("intersect", "product")])
@pytest.mark.parametrize("impl", ["kgqa", "torch"])
@pytest.mark.parametrize("shape", SIZES, ids=[f"{b}x{e}" for b, e in SIZES])
def test_intersect(benchmark, shape, impl, op, tnorm, k, mode):
    fn = getattr(kk if impl == "kgqa" else reference, op)
    xs = [torch.rand(shape, device=DEVICE) for _ in range(k)]
    backward = mode == "fwd+bwd"

    def call():
        leaves = [x.detach().requires_grad_(backward) for x in xs]
        out = fn(*leaves, tnorm=tnorm)
        if backward:
            out.sum().backward()
        return out

    benchmark.group = f"{op}-{tnorm} k={k} {shape[0]}x{shape[1]} {mode}"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
