"""The test KBs and tolerances moved to tests/ops/cases.py (the one place for the op tests' cases);
this module re-exports them for the tests outside tests/ops."""
import importlib.util
import os
import sys

# tests/ops/cases.py, under the name the op tests import it by ("cases": pytest puts tests/ops on
# sys.path for them), loaded once whichever side imports it first.
if "cases" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("cases", os.path.join(os.path.dirname(__file__), "ops", "cases.py"))
    _cases = importlib.util.module_from_spec(_spec)
    sys.modules["cases"] = _cases
    _spec.loader.exec_module(_cases)

from cases import (  # noqa: E402,F401
    DTYPE_TOLERANCES,
    TOLERANCES,
    edge_case_kb,
    power_law_kb,
    random_facts,
    random_kb,
    rounded_follow_intersect,
)
