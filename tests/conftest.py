import os

# Triton reads this when it is first imported; the Triton backend's tests run on the CPU through
# its interpreter (must be set before anything imports triton).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
