"""tests/conftest.py's grouping: under `make test` (pytest-xdist, --dist loadgroup) every test that
needs one of SHARED_EXPENSIVE_FIXTURES runs on the worker that computes it once. Twice it silently
did not: the conftest's hook ran after pytest-xdist's (no group yet when xdist read them), and
pytest 9.2 stopped reading the id xdist writes the group into; either way both workers trained the
demo models and ran the CLI processes again, the whole run minutes longer."""
from pathlib import Path

import pytest

CONFTEST = str(Path(__file__).with_name("conftest.py"))  # its plugin name (tests/kgqa has a conftest too)


@pytest.mark.xdist_group("grouping-check")
def test_tests_that_share_an_expensive_fixture_are_grouped(request):
    shared = request.config.pluginmanager.get_plugin(CONFTEST).SHARED_EXPENSIVE_FIXTURES
    loadgroup = getattr(request.config.option, "loadgroup", False)  # set on pytest-xdist's workers only
    if loadgroup:  # this pytest and pytest-xdist agree on where a group goes
        assert request.node.nodeid.endswith("@grouping-check"), request.node.nodeid
    for item in request.session.items:
        name = next((n for n in shared if n in getattr(item, "fixturenames", ())), None)
        if name is None:
            continue
        mark = item.get_closest_marker("xdist_group")
        assert mark is not None and mark.args == (name,), item.nodeid
        if loadgroup:
            assert item.nodeid.endswith("@" + name), item.nodeid
