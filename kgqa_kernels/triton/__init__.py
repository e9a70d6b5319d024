"""The Triton backend: every op of kgqa_kernels as torch.library.triton_op (namespace kgqa_triton,
the same schemas), so torch.compile sees into the kernels. One file per op holds its kernels and
launchers, named as the op's files elsewhere (kgqa_kernels/ops/<op>.py, csrc/cpu/<op>.cpp).

Triton compiles for CUDA GPUs; on the CPU the kernels run only under its interpreter
(TRITON_INTERPRET=1, set before triton is first imported), which is how the tests check them.
"""
from .. import ops
from . import count, follow, follow_intersect, follow_max, follow_push, intersect, select_extreme  # noqa: F401  (registers the ops)
from ._launch import INTERPRETED, MAX_BRANCHES, NAMESPACE

ops.register_autograd_all(NAMESPACE)

__all__ = ["INTERPRETED", "MAX_BRANCHES", "NAMESPACE"]
