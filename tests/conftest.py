import os

import torch  # torch does not import triton

# Triton reads TRITON_INTERPRET when it is first imported, so it is set here, before any test
# imports it. Without a CUDA GPU the Triton backend's tests run on the CPU through the interpreter;
# with one they run compiled on the GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
