"""The public ops, one module per op: each holds the op's Python entry point (argument checks,
backend choice) and the fake kernels and autograd of its C++ ops. ``register_all`` registers those
for a C++ library; the Triton backend registers the same autograd for its ops
(kgqa_kernels/triton/__init__.py)."""
from __future__ import annotations

from .. import _C  # noqa: F401  (loads the schemas and the C++ kernels)
from . import count as _count_mod
from . import follow as _follow_mod
from . import follow_intersect as _follow_intersect_mod
from . import follow_max as _follow_max_mod
from . import follow_push as _follow_push_mod
from . import intersect as _intersect_mod
from . import select_extreme as _select_extreme_mod
from .count import count
from .entity_values import entity_values
from .follow import follow
from .follow_intersect import follow_intersect
from .follow_push import PUSH_MAX_DENSITY
from .intersect import intersect, union
from .select_extreme import select_extreme

OP_MODULES = (_follow_mod, _follow_push_mod, _follow_max_mod, _intersect_mod, _follow_intersect_mod, _count_mod,
              _select_extreme_mod)
# The C++ libraries: the kernels of csrc/cpu and csrc/cuda, and their CPU emulation of csrc/cuda.
CPP_NAMESPACES = ("kgqa_kernels", "kgqa_kernels_emu")


def register_all(namespace: str) -> None:
    for module in OP_MODULES:
        module.register(namespace)


def register_autograd_all(namespace: str) -> None:
    """Autograd only: for a library whose ops define their fakes themselves (Triton)."""
    for module in OP_MODULES:
        module.register_autograd(namespace)


for _ns in CPP_NAMESPACES:
    register_all(_ns)

__all__ = ["follow", "follow_intersect", "intersect", "union", "count", "select_extreme", "entity_values", "PUSH_MAX_DENSITY", "register_autograd_all"]
