"""The ports in examples/ (issue: drop-in for other KGQA code): each one's --check runs the layer or
model on tiny data through kgqa_kernels and through the original pure-torch formulation, and exits
non-zero unless the outputs and every gradient (fact weights included) agree."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(example, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", example), "--check", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "max difference" in proc.stdout


@pytest.mark.parametrize("example", ["nbfnet_layer.py", "transfernet_style.py", "gnnqe_style.py"])
def test_example_matches_the_original_formulation(example):
    _check(example)


def test_gnnqe_port_matches_the_original_on_the_reference_backend():
    # The port's logic (query structure, fuzzy-set ops, fact weights) against the original on the
    # backend that defines the semantics too.
    _check("gnnqe_style.py", "--backend", "reference")
