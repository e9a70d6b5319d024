"""Fused, batched relation-follow and intersection kernels for question answering over
differentiable knowledge graphs (ReifKB, Rigel)."""
import torch  # noqa: F401  (libtorch must be loaded before the extension)

from . import layout, reference
from .backends import available_backends, get_backend, set_backend
from .distributed import ShardedSparseKB, shard_bounds, sharded_follow
from .kb import SparseKB
from .ops import count, entity_values, follow, follow_intersect, intersect, select_extreme, union
from . import compat  # noqa: E402  (after .ops, which it uses)
from .subgraphs import SubgraphBatch
from .work_plan import LaunchPlan, launch_plan

__all__ = [
    "SparseKB",
    "SubgraphBatch",
    "ShardedSparseKB",
    "sharded_follow",
    "shard_bounds",
    "follow",
    "intersect",
    "union",
    "follow_intersect",
    "count",
    "select_extreme",
    "entity_values",
    "launch_plan",
    "LaunchPlan",
    "reference",
    "layout",
    "compat",
    "available_backends",
    "set_backend",
    "get_backend",
]
__version__ = "0.1.0"
