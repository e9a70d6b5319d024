import os

import torch  # torch does not import triton

# Triton reads TRITON_INTERPRET when it is first imported, so it is set here, before any test
# imports it. Without a CUDA GPU the Triton backend's tests run on the CPU through the interpreter;
# with one they run compiled on the GPU.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

# Fixtures that train a model or start processes, each computed once per pytest-xdist worker that
# runs a test needing it. Under `--dist loadgroup` (the Makefile's `make test`) the tests that
# share one run on one worker, so it is computed once, not once per worker: with plain `-n 2` both
# workers trained `learned_model` and `trained_demo` and ran the 16 CLI processes of `runs`.
SHARED_EXPENSIVE_FIXTURES = ("learned_model", "trained_demo", "runs", "spawned")


# tryfirst: pytest-xdist's worker reads the xdist_group marks in its own pytest_collection_modifyitems,
# a plugin registered after this conftest, so called before it unless this one asks to go first.
# Without it no test had a group: `trained_demo` and `learned_model` were trained on both workers
# and the 16 processes of `runs` ran twice (each setup 40-80 s in a fresh clone's --durations).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SHARED_EXPENSIVE_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                # The first one named above wins for a test that needs two (none does today).
                item.add_marker(pytest.mark.xdist_group(name))
                break


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
