# `make demo` and `make test` do all set-up on a fresh machine: a virtualenv in .venv with the
# pinned dependencies, then the extension built ahead of time (pip install -e, no build isolation).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh') setup.py pyproject.toml

.PHONY: all build test demo demo-kernels bench gpu-check clean

all: build

# --no-cache-dir: CI's install once stopped with "No space left on device"; pip's cache would keep
# a second copy of every wheel it downloads, which a fresh machine never reads again.
$(VENV)/.deps-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir -r requirements.txt
	touch $@

$(VENV)/.ext-built: $(VENV)/.deps-installed $(SOURCES)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $@

build: $(VENV)/.ext-built

# One pytest worker per core (pytest-xdist): most tests are small and bound by Python. On these
# 2-core machines a fresh clone's tests took 7m14s and 8m28s with it, 14m08s without (its whole
# `make test` 12m22s and 12m56s against about 20 minutes; CI's budget is 15 minutes). At 40b0202
# (2,928 tests): install 1m49s, build 4m02s, tests 9m02s.
# --dist loadgroup: the tests that share a fixture which trains a model or starts processes run on
# one worker (tests/conftest.py marks them), so it is computed once rather than once per worker
# (tests/test_conftest.py checks that it is: with pytest 9.2 it silently was not).
test: build
	$(PY) -m pytest tests -q -n auto --dist loadgroup

# The main job: train the QA model on the embedded movie KB, print Hits@1, answer a few questions.
demo: build
	$(PY) -m kgqa demo

# The ops alone on a generated 500k-fact KB against torch.sparse.
demo-kernels: build
	$(PY) -m kgqa_kernels.demo

# SUITE=quick|targets|full; ARGS for more kgqa-bench flags (e.g. ARGS="--metaqa-kb path/kb.txt").
SUITE ?= targets
bench: build
	$(PY) -m kgqa_kernels.bench.cli --suite $(SUITE) --out bench-results $(ARGS)

# On a GPU machine, with the Python found there (no virtualenv, no downloads): build in place for
# the GPU present, run the GPU tests and the GPU benchmark, write gpu-check-report.md/.json
# (docs/gpu.md). ARGS="--dry-run" does it on the CPU at a tiny size (tests/test_gpu_check.py).
gpu-check:
	$(PYTHON) experiments/gpu_check.py $(ARGS)

clean:
	rm -rf build *.egg-info kgqa_kernels/_C*.so $(VENV)/.ext-built
