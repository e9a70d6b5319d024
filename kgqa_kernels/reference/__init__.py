"""Pure-torch definitions of every op: the ground truth of the tests and the baseline of the
benchmarks. ``backend="reference"`` runs these. One module per op; 16-bit inputs are computed in
float32 and rounded once at the end, as the kernels do (kgqa_kernels.numerics)."""
from .count import count
from .entity_values import entity_values
from .follow import (
    dense_relation_tensor,
    fact_weights,
    follow,
    follow_dense,
    follow_gather,
    follow_generalized,
    follow_sparse,
    incidence_matrices,
)
from .follow_intersect import follow_intersect
from .intersect import intersect, union
from .select_extreme import select_extreme

__all__ = [
    "dense_relation_tensor", "fact_weights", "follow", "follow_dense", "follow_gather", "follow_generalized",
    "follow_sparse",
    "incidence_matrices", "follow_intersect", "intersect", "union", "count", "select_extreme", "entity_values",
]
