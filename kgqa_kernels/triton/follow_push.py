"""Triton kernels of follow_push: follow from a sparse frontier, one program per example owning
column b of the output, and its backward."""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..checks import check_frontier, check_matrix, kb_num_entities as num_entities, kb_num_relations as num_relations
from ..numerics import acc_dtype as _acc_like
from .. import layout
from ._launch import KernelErrors, kernel_op, launch, acc_dtype, fact_ids, report, segment
from .follow import pull_bounds, pull_index


@triton.jit
def seed_facts(ids, j, ptr, E, FACTS, err, IDS_CODE: tl.constexpr, PTR_CODE):
    """(begin, end): the facts leaving frontier entry j's entity, empty and reported when out of range."""
    s = tl.load(ids + j)
    s_ok = (s >= 0) & (s < E)
    report(err, s_ok == 0, IDS_CODE)
    s = tl.where(s_ok, s, 0)
    begin = tl.load(ptr + s)
    end = tl.load(ptr + s + 1)
    bad = (begin < 0) | (begin > end) | (end > FACTS)
    report(err, s_ok & bad, PTR_CODE)
    return begin, tl.where(s_ok & (bad == 0), end, begin)


@triton.jit
def _push_kernel(fptr, ids, vals, ptr, col, rel, w, r, y, B, E, R, FACTS, NUM_IDS, PTR_SLOT, err,
                 HAS_W: tl.constexpr, ACC: tl.constexpr, FPTR_CODE: tl.constexpr, IDS_CODE: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    k0, k1 = segment(fptr, b, NUM_IDS, err, FPTR_CODE)  # example b's frontier entries
    for j in range(k0, k1):
        v = tl.load(vals + j).to(ACC)
        begin, end = seed_facts(ids, j, ptr, E, FACTS, err, IDS_CODE, PTR_SLOT + 1)
        for f in range(begin, end):
            o, p, ok = fact_ids(col, rel, f, E, R, err, PTR_SLOT)
            c = tl.load(r + p * B + b, mask=ok, other=0).to(ACC)
            if HAS_W:
                c = c * (tl.load(w + f).to(ACC) * v)
            else:
                c = c * v
            dst = y + o * B + b
            tl.store(dst, tl.load(dst, mask=ok, other=0) + c, mask=ok)


@triton.jit
def _push_backward_kernel(fptr, ids, vals, ptr, col, rel, w, r, grad, dvals, dr, B, E, R, FACTS, NUM_IDS, PTR_SLOT,
                          err, HAS_W: tl.constexpr, ACC: tl.constexpr, FPTR_CODE: tl.constexpr,
                          IDS_CODE: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    k0, k1 = segment(fptr, b, NUM_IDS, err, FPTR_CODE)  # example b's frontier entries
    for j in range(k0, k1):
        v = tl.load(vals + j).to(ACC)
        dv = tl.zeros([], dtype=ACC)
        begin, end = seed_facts(ids, j, ptr, E, FACTS, err, IDS_CODE, PTR_SLOT + 1)
        for f in range(begin, end):
            o, p, ok = fact_ids(col, rel, f, E, R, err, PTR_SLOT)
            g = tl.load(grad + o * B + b, mask=ok, other=0).to(ACC)
            if HAS_W:
                g = g * tl.load(w + f).to(ACC)
            dv += tl.load(r + p * B + b, mask=ok, other=0).to(ACC) * g
            dst = dr + p * B + b
            tl.store(dst, tl.load(dst, mask=ok, other=0) + v * g, mask=ok)
        tl.store(dvals + j, dv.to(dvals.dtype.element_ty))


def _frontier_bounds(kb: List[Tensor], inverse: bool, ids: Tensor):
    """The bounds the push kernels check against, and the frontier's error codes."""
    E, R, facts, ptr_slot = pull_bounds(kb, not inverse)
    return (E, R, facts, ids.shape[0], ptr_slot), dict(FPTR_CODE=layout.BAD_FRONTIER_PTR,
                                                        IDS_CODE=layout.BAD_FRONTIER_IDS)


@kernel_op("follow_push")
def follow_push(ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool) -> Tensor:
    check_frontier("follow_push", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    y = vals.new_zeros((num_entities(kb), B), dtype=_acc_like(vals.dtype))
    if B > 0:
        fptr, col, rel, w = pull_index(kb, not inverse)  # facts grouped by the entity they leave
        has_w = w.numel() > 0
        bounds, codes = _frontier_bounds(kb, inverse, ids)
        errors = KernelErrors("follow_push", y.device)
        launch(_push_kernel, (B,),
            ptr.contiguous(), ids.contiguous(), vals.contiguous(), fptr, col, rel, w if has_w else fptr,
            r.contiguous(), y, B, *bounds, errors.flag, HAS_W=has_w, ACC=acc_dtype(vals.dtype), **codes,
        )
        errors.done()
    return y.to(vals.dtype)


@kernel_op("follow_push_backward")
def follow_push_backward(
    grad: Tensor, ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor], inverse: bool
) -> tuple[Tensor, Tensor]:
    check_frontier("follow_push_backward", ptr, ids, vals, r, kb)
    B = ptr.shape[0] - 1
    check_matrix("follow_push_backward", "grad", grad, num_entities(kb), kb, batch=B)
    dvals = torch.empty_like(vals)
    dr = vals.new_zeros((num_relations(kb), B), dtype=_acc_like(vals.dtype))
    if B > 0:
        fptr, col, rel, w = pull_index(kb, not inverse)
        has_w = w.numel() > 0
        bounds, codes = _frontier_bounds(kb, inverse, ids)
        errors = KernelErrors("follow_push_backward", dr.device)
        launch(_push_backward_kernel, (B,),
            ptr.contiguous(), ids.contiguous(), vals.contiguous(), fptr, col, rel, w if has_w else fptr,
            r.contiguous(), grad.contiguous(), dvals, dr, B, *bounds, errors.flag, HAS_W=has_w,
            ACC=acc_dtype(vals.dtype), **codes,
        )
        errors.done()
    return dvals, dr.to(vals.dtype)
