"""What the kgqa-kernels distribution says about itself: its version (``kgqa.__version__``, `kgqa
--version`) and the requirements of its ``qa`` extra, which the `kgqa` command needs (`pip install
"kgqa-kernels[qa]"`). Both come from the installed package's metadata, else (a source tree that
was never installed) from the pyproject.toml beside the package: pyproject.toml is their one
owner either way.

Light on purpose: `kgqa --help` and `kgqa --version` read these before importing torch."""
from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import List, Optional

DISTRIBUTION = "kgqa-kernels"
EXTRA = "qa"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
INSTALL_HINT = f'pip install "{DISTRIBUTION}[{EXTRA}]"'
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's distribution name (PEP 508)
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _pyproject() -> Optional[dict]:
    """pyproject.toml's [project] table, if the package sits in this distribution's source tree."""
    try:
        import tomllib  # Python 3.11+; on 3.10 an uninstalled tree has no version to read
    except ImportError:
        return None
    try:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8")).get("project", {})
    except (OSError, ValueError):
        return None
    return project if project.get("name") == DISTRIBUTION else None


@functools.lru_cache(maxsize=None)
def version() -> str:
    """The installed distribution's version, else pyproject.toml's, else "unknown"."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        project = _pyproject()
        return str(project.get("version", "unknown")) if project else "unknown"


@functools.lru_cache(maxsize=None)
def extra_requirements(extra: str = EXTRA) -> tuple:
    """The distribution names the extra ``extra`` requires (versions and markers dropped); empty
    when neither the metadata nor pyproject.toml can be read."""
    from importlib import metadata

    try:
        requires = metadata.requires(DISTRIBUTION) or []
        wanted = [r for r in requires if extra in _EXTRA_MARKER.findall(r)]
    except metadata.PackageNotFoundError:
        project = _pyproject() or {}
        wanted = project.get("optional-dependencies", {}).get(extra, [])
    return tuple(_NAME.match(r.strip()).group(0) for r in wanted)


# Distributions of the qa extra whose module is not their name read with '_' for '-' and '.'.
_MODULES = {"faiss-cpu": "faiss"}


def module_name(requirement: str) -> str:
    """The module a requirement's distribution installs: ``_MODULES``' entry, else its name with '-'
    and '.' read as '_' (tests/kgqa/test_cli.py checks every requirement of the qa extra)."""
    return _MODULES.get(requirement.lower(), re.sub(r"[-.]", "_", requirement).lower())


def missing(extra: str = EXTRA) -> List[str]:
    """The requirements of ``extra`` whose module cannot be imported (found, not imported: cheap)."""
    out = []
    for requirement in extra_requirements(extra):
        try:
            found = importlib.util.find_spec(module_name(requirement)) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module without a spec
            found = False
        if not found:
            out.append(requirement)
    return out
