"""Layout changes between what users pass and what the kernels read: users build row-major [B, E]
tensors, the kernels read [E, B] (batch innermost), so an op receives the transpose of a user's
x, and autograd hands back row-major gradients the same way. ``transpose_copy`` (csrc/transpose.h)
copies such a transpose on all of torch's CPU threads, where ``Tensor.contiguous()`` uses one."""
from __future__ import annotations

import torch

from .. import _C  # noqa: F401  (loads the schema and the kernel)


def is_transposed_row_major(t: torch.Tensor) -> bool:
    """Whether t [rows, B] is the transpose of a contiguous [B, rows] tensor (and not contiguous)."""
    return t.dim() == 2 and not t.is_contiguous() and t.stride(0) == 1 and t.stride(1) == t.shape[0]


def batch_innermost(t: torch.Tensor) -> torch.Tensor:
    """t [rows, B] made contiguous; the transpose of a row-major tensor by transpose_copy."""
    if is_transposed_row_major(t):
        return torch.ops.kgqa_kernels.transpose_copy(t.t())
    return t.contiguous()


@torch.library.register_fake("kgqa_kernels::transpose_copy")
def _transpose_copy_fake(src):
    torch._check(src.dim() == 2, lambda: f"transpose_copy(): src must be 2-D, got {tuple(src.shape)}")
    return src.new_empty((src.shape[1], src.shape[0]))


def _transpose_copy_backward(ctx, grad):
    return torch.ops.kgqa_kernels.transpose_copy(grad)


torch.library.register_autograd("kgqa_kernels::transpose_copy", _transpose_copy_backward)
