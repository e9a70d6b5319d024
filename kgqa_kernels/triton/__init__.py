"""The Triton backend: every op of kgqa_kernels as torch.library.triton_op (namespace kgqa_triton,
the same schemas), so torch.compile sees into the kernels. One file per op family holds its
kernels and launchers.

Triton compiles for CUDA GPUs; on the CPU the kernels run only under its interpreter
(TRITON_INTERPRET=1, set before triton is first imported), which is how the tests check them.
"""
from .. import _registration
from . import follow, follow_intersect, intersect  # noqa: F401  (registers the ops)
from ._launch import INTERPRETED, MAX_BRANCHES, NAMESPACE

_registration.register_autograd(NAMESPACE)

__all__ = ["INTERPRETED", "MAX_BRANCHES", "NAMESPACE"]
