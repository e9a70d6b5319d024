"""Every argument check of the Python side, once: the public ops, the Triton launchers, SparseKB
and the sharded KB call these. Each raises naming the argument and what was expected.

``who`` is the prefix of a message: ``"follow()"``, ``"SparseKB"``, ``"ShardedSparseKB.follow()"``.
Checks of the public ops speak of the [B, E] tensors users pass (TypeError / ValueError); checks of
the raw kernels (``check_matrix`` and below) speak of the batch-innermost [E, B] tensors the
kernels take and raise RuntimeError, as the C++ ops do (csrc/checks.h).
"""
from __future__ import annotations

import operator
import sys
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import layout
from .numerics import FLOAT_DTYPES

INTERSECT_TNORMS = ("min", "product")
UNION_TNORMS = ("max", "product")
DIRECTIONS = ("auto", "pull", "push")
_INT32_MAX = 2**31 - 1


# ---- tensors of the public ops ([B, E] / [B, R]) ------------------------------------------------

def check_float(who: str, name: str, t) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{who}: {name} must be float32, float64, bfloat16 or float16, got {t.dtype}")


def check_dense(who: str, name: str, t: Tensor) -> None:
    if t.layout != torch.strided:
        raise TypeError(f"{who}: {name} must be a dense tensor, got layout {t.layout}")


# What a sparse x of follow may be, said by every error about one.
SPARSE_X_ACCEPTED = (
    "a dense tensor, a sparse COO tensor with 2 sparse and no dense dimensions, or a sparse CSR tensor "
    "without batch or dense dimensions"
)


def check_sparse_x(who: str, name: str, x: Tensor, cols_name: str = "num_entities") -> None:
    """A sparse x [B, E] (shape already checked; E is called ``cols_name`` in messages) is COO or
    CSR whose indices address [0, B) x [0, E).

    torch builds sparse tensors without checking their indices unless asked (check_invariants), and
    the GPU kernels read a frontier's ids unchecked (the C++ CPU ops check theirs, but name no
    argument of the public op), so the indices are checked here: one reduction of the index
    tensors, read back with one host synchronisation (on a CUDA x that is the one sync this check
    adds; a COO x syncs anyway, in coalesce)."""
    B, E = x.shape
    if x.layout == torch.sparse_coo:
        if x.sparse_dim() != 2 or x.dense_dim() != 0:
            raise ValueError(f"{who}: {name} is a hybrid sparse COO tensor ({x.sparse_dim()} sparse and "
                             f"{x.dense_dim()} dense dimensions); {name} must be {SPARSE_X_ACCEPTED}")
        idx = x._indices()  # uncoalesced too: coalescing out-of-range indices is already wrong
        if idx.shape[1] == 0:
            return
        (b_lo, e_lo), (b_hi, e_hi) = torch.stack([idx.amin(1), idx.amax(1)]).tolist()
        for what, lo, hi, n, n_name in (("row", b_lo, b_hi, B, "B"), ("column", e_lo, e_hi, E, cols_name)):
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{who}: {name} is a sparse COO tensor with {what} index {bad} out of range: "
                                 f"{what} indices must be in [0, {n_name}={n})")
        return
    if x.layout == torch.sparse_csr:
        crow, col = x.crow_indices(), x.col_indices()
        if x.dense_dim() != 0 or crow.dim() != 1 or crow.shape[0] != B + 1:
            raise ValueError(f"{who}: {name} is a batched or hybrid sparse CSR tensor; {name} must be "
                             f"{SPARSE_X_ACCEPTED}")
        nnz = col.shape[0]
        stats = [crow[0], crow[-1], (crow.diff() < 0).sum()]
        if nnz:
            stats += [col.min(), col.max()]
        first, last, decreasing, *col_range = torch.stack([t.to(torch.int64) for t in stats]).tolist()
        if first != 0 or last != nnz or decreasing:
            raise ValueError(f"{who}: {name} is a sparse CSR tensor with invalid crow_indices: they must run "
                             f"from 0 to nnz={nnz} without decreasing, got {first} .. {last}"
                             + (" with a decrease" if decreasing else ""))
        if col_range and (col_range[0] < 0 or col_range[1] >= E):
            bad = col_range[0] if col_range[0] < 0 else col_range[1]
            raise ValueError(f"{who}: {name} is a sparse CSR tensor with column index {bad} out of range: "
                             f"column indices must be in [0, {cols_name}={E})")
        return
    if x.layout != torch.strided:
        raise ValueError(f"{who}: {name} has layout {x.layout}; {name} must be {SPARSE_X_ACCEPTED}")


def check_inverse(who: str, inverse) -> bool:
    """``inverse`` as a bool: a bool or a numpy bool. Anything else (a string such as "no", which is
    truthy, or an int) is refused rather than read by its truth value."""
    if isinstance(inverse, bool):
        return inverse
    np = sys.modules.get("numpy")  # a numpy bool exists only where numpy was imported
    if np is not None and isinstance(inverse, np.bool_):
        return bool(inverse)
    raise TypeError(f"{who}: inverse must be a bool, got {type(inverse).__name__} {inverse!r}")


def check_kb(who: str, kb) -> None:
    from .kb import SparseKB  # kb.py checks its facts with this module

    if not isinstance(kb, SparseKB):
        raise TypeError(f"{who}: kb must be a kgqa_kernels.SparseKB, got {type(kb).__name__}")
    kb.check_unmodified(who)


def check_weights(who: str, name: str, t, cols: int, cols_name: str, device, batch=None,
                  device_name: str = "kb", batch_name: str = "x") -> None:
    """t is a float [B, cols] tensor on ``device`` (and of batch size ``batch`` when given)."""
    check_float(who, name, t)
    if t.dim() != 2 or t.shape[1] != cols:
        raise ValueError(f"{who}: {name} must be [B, {cols_name}={cols}], got shape {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(f"{who}: {name} has batch size {t.shape[0]}, expected {batch} (the batch size of {batch_name})")
    if t.device != device:
        hint = " (use kb.to(device))" if device_name == "kb" else ""
        raise ValueError(f"{who}: {name} is on {t.device} but {device_name} is on {device}{hint}")


def check_same_dtype(who: str, named: Sequence[Tuple[str, Tensor]], want: torch.dtype, like: str = "the other inputs") -> None:
    for name, t in named:
        if t.dtype != want:
            raise TypeError(f"{who}: {name} has dtype {t.dtype}, expected {want} like {like}")


def check_follow_args(who: str, x, r, kb, xname="x", rname="r", dtype=None) -> Tensor:
    """x [B, num_entities] and r [B, num_relations] of one float dtype on the KB's device. Returns r,
    where an r of shape [num_relations] or [1, num_relations] (one relation weighting for every
    example) is broadcast to [B, num_relations]: a view, whose gradient autograd sums over the batch."""
    check_weights(who, xname, x, kb.num_entities, "num_entities", kb.device)
    if (isinstance(r, Tensor) and r.layout == torch.strided and x.dim() == 2 and r.shape[-1:] == (kb.num_relations,)
            and (r.dim() == 1 or (r.dim() == 2 and r.shape[0] == 1))):
        r = r.reshape(1, kb.num_relations).expand(x.shape[0], kb.num_relations)
    check_weights(who, rname, r, kb.num_relations, "num_relations", kb.device, batch=x.shape[0])
    check_same_dtype(who, ((xname, x), (rname, r)), dtype or x.dtype)
    return r


def check_tnorm(who: str, tnorm, allowed) -> None:
    if tnorm not in allowed:
        raise ValueError(f"{who}: tnorm must be one of {allowed}, got {tnorm!r}")


# follow's reductions over the facts into an entity, and how a fact's term combines x, r and w.
REDUCES = ("sum", "mean", "max", "min")
MESSAGES = ("mul", "add")


def check_reduce_message(who: str, reduce, message) -> None:
    if reduce not in REDUCES:
        raise ValueError(f"{who}: reduce must be one of {REDUCES}, got {reduce!r}")
    if message not in MESSAGES:
        raise ValueError(f"{who}: message must be one of {MESSAGES}, got {message!r}")


def check_direction(who: str, direction) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"{who}: direction must be one of {DIRECTIONS}, got {direction!r}")


def check_combine_args(who: str, xs) -> list:
    """k >= 2 dense float tensors of one shape, dtype and device (a single list argument is unpacked)."""
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = xs[0]
    xs = list(xs)
    if len(xs) < 2:
        raise ValueError(f"{who}: needs at least 2 tensors, got {len(xs)}")
    for i, t in enumerate(xs):
        check_float(who, f"xs[{i}]", t)
        check_dense(who, f"xs[{i}]", t)
        if t.shape != xs[0].shape:
            raise ValueError(f"{who}: xs[{i}] has shape {tuple(t.shape)}, expected {tuple(xs[0].shape)} like xs[0]")
        if t.dtype != xs[0].dtype:
            raise TypeError(f"{who}: xs[{i}] has dtype {t.dtype}, expected {xs[0].dtype} like xs[0]")
        if t.device != xs[0].device:
            raise ValueError(f"{who}: xs[{i}] is on {t.device}, expected {xs[0].device} like xs[0]")
    return xs


def max_branches(backend: str) -> Optional[int]:
    """How many inputs one kernel launch of ``backend`` takes (None: no limit): the GPU kernels
    (and their emulation) take pointers in a fixed-size array, Triton one argument per branch."""
    if backend in ("cuda", "emulated"):
        return layout.GPU_MAX_BRANCHES
    if backend == "triton":
        from .triton._launch import MAX_BRANCHES  # imported only where triton is in use

        return MAX_BRANCHES
    return None


def check_branch_count(who: str, backend: str, k: int) -> None:
    limit = max_branches(backend)
    if limit is not None and k > limit:
        raise ValueError(f"{who}: backend={backend!r} takes at most {limit} inputs, got {k}")


# ---- count, select_extreme, entity_values -------------------------------------------------------

EXTREME_MODES = ("max", "min")


def check_set(who: str, name: str, x) -> None:
    """x [B, E]: a dense 2-D float tensor (an entity set per example)."""
    check_float(who, name, x)
    check_dense(who, name, x)
    if x.dim() != 2:
        raise ValueError(f"{who}: {name} must be [B, E], got shape {tuple(x.shape)}")


def check_values(who: str, values, like: Tensor, like_name: str, batched: bool = True,
                 num_entities: Optional[int] = None) -> None:
    """values: [E] (or, where ``batched``, [B, E] like ``like`` [B, E]), dense, of like's dtype and
    device; E is like's second size, or ``num_entities`` when given (like is then r [B, R])."""
    check_float(who, "values", values)
    check_dense(who, "values", values)
    B, E = like.shape[0], like.shape[1] if num_entities is None else num_entities
    if not (tuple(values.shape) == (E,) or (batched and tuple(values.shape) == (B, E))):
        want = f"[E={E}] or [B, E]={[B, E]}" if batched else f"[E={E}]"
        raise ValueError(f"{who}: values must be {want} like {like_name}, got shape {tuple(values.shape)}")
    if values.dtype != like.dtype:
        raise TypeError(f"{who}: values has dtype {values.dtype}, expected {like.dtype} like {like_name}")
    if values.device != like.device:
        raise ValueError(f"{who}: values is on {values.device} but {like_name} is on {like.device}")


def check_mode(who: str, mode) -> None:
    if mode not in EXTREME_MODES:
        raise ValueError(f"{who}: mode must be one of {EXTREME_MODES}, got {mode!r}")


def check_temperature(who: str, temperature) -> float:
    """A Python (or numpy) real number, finite and >= 0 (0: the exact selection)."""
    if isinstance(temperature, bool) or isinstance(temperature, Tensor):
        raise TypeError(f"{who}: temperature must be a float, got {type(temperature).__name__}")
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"{who}: temperature must be a float, got {type(temperature).__name__}") from None
    if not (t >= 0 and t != float("inf")):
        raise ValueError(f"{who}: temperature must be finite and >= 0 (0: exact), got {temperature!r}")
    return t


# ---- facts (SparseKB, ShardedSparseKB) ----------------------------------------------------------

def check_count(who: str, name: str, n) -> int:
    """n as a positive Python int. Integer-like values are taken (a numpy integer, an integer tensor
    of one element): sizes often come from ``.max() + 1`` or numpy. Booleans and floats are not."""
    if isinstance(n, Tensor) and (n.dtype == torch.bool or n.is_floating_point() or n.is_complex()):
        n_int = None
    else:
        try:
            n_int = None if isinstance(n, bool) else operator.index(n)
        except TypeError:
            n_int = None
    if n_int is None or n_int < 1:
        raise ValueError(f"{who}: {name} must be a positive int, got {n!r}")
    return n_int


def as_index_vector(who: str, value, name: str, device=None, move: bool = False) -> Tensor:
    """value as a 1-D int64 tensor. With ``device``: a tensor elsewhere is refused (``move=False``)
    or moved there (``move=True``)."""
    if isinstance(value, Tensor) and device is not None and value.device != device and not move:
        raise ValueError(f"{who}: {name} is on {value.device} but subj is on {device}")
    t = torch.as_tensor(value, device=None if move else device)
    if not isinstance(value, Tensor) and t.numel() == 0:
        t = t.long()  # torch.as_tensor([]) is float32
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{who}: {name} must hold integer ids, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{who}: {name} must be 1-D (one id per fact), got shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    return t.to(device) if move and device is not None else t


def check_range(who: str, ids: Tensor, name: str, limit: int, limit_name: str) -> None:
    bad = (ids < 0) | (ids >= limit)
    if bool(bad.any()):
        pos = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{who}: {name}[{pos}] = {int(ids[pos])} is out of range: ids must be in [0, {limit_name}={limit})"
        )


def check_facts(who: str, subj, rel, obj, weight, num_entities: int, num_relations: int, *, device=None,
                allow_empty: bool = False, trainable: bool = False):
    """(s, p, o, w): the facts as int64 vectors and float32 weights (or None), ids range-checked.
    ``device``: move everything there (the sharded KB); None: every tensor must be on subj's device.
    ``trainable``: a weight that requires grad is returned as it is (its dtype too), for SparseKB to
    differentiate through; otherwise it is refused."""
    move = device is not None
    if device is None:
        device = subj.device if isinstance(subj, Tensor) else None
    s = as_index_vector(who, subj, "subj", device, move)
    p = as_index_vector(who, rel, "rel", s.device, move)
    o = as_index_vector(who, obj, "obj", s.device, move)
    if not (s.numel() == p.numel() == o.numel()):
        raise ValueError(
            f"{who}: subj, rel and obj must have one entry per fact, got lengths {s.numel()}, {p.numel()}, {o.numel()}"
        )
    if s.numel() == 0 and not allow_empty:
        raise ValueError(f"{who}: the KB has no facts (subj, rel and obj are empty)")
    check_range(who, s, "subj", num_entities, "num_entities")
    check_range(who, o, "obj", num_entities, "num_entities")
    check_range(who, p, "rel", num_relations, "num_relations")
    w = None if weight is None else check_fact_weight(who, "weight", weight, s.numel(), s.device, trainable=trainable,
                                                          move=move)
    return s, p, o, w


def check_fact_weight(who: str, name: str, weight, facts: int, device, *, trainable: bool = False,
                      move: bool = False) -> Tensor:
    """``weight`` as one float32 value per fact on ``device`` (a tensor elsewhere is refused, or with
    ``move`` copied there). With
    ``trainable``, a weight that requires grad comes back unchanged; without, it is refused: the op
    it goes to would give it no gradient."""
    if isinstance(weight, Tensor) and weight.device != device and not move:
        raise ValueError(f"{who}: {name} is on {weight.device} but the facts are on {device}")
    w = torch.as_tensor(weight, device=device)
    if not w.is_floating_point():
        raise TypeError(f"{who}: {name} must be floating point, got dtype {w.dtype}")
    if w.dim() != 1 or w.numel() != facts:
        raise ValueError(f"{who}: {name} must have one entry per fact, shape ({facts},), got {tuple(w.shape)}")
    if w.requires_grad:
        if trainable:
            return w
        # A weight that requires grad would silently get no gradient here.
        raise ValueError(f"{who}: {name} requires grad, but this gives the fact weights no gradient; pass "
                         f"{name}.detach(), or a SparseKB (whose follow() trains its weights)")
    return w.to(torch.float32)


def check_index_dtype(who: str, index_dtype, num_entities: int, num_relations: int) -> torch.dtype:
    """The dtype of the stored ids: int32 where every id fits, unless ``index_dtype`` says."""
    if index_dtype is None:
        return torch.int32 if max(num_entities, num_relations) <= _INT32_MAX else torch.int64
    if index_dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{who}: index_dtype must be torch.int32 or torch.int64, got {index_dtype}")
    if index_dtype == torch.int32 and max(num_entities, num_relations) > _INT32_MAX:
        raise ValueError(f"{who}: index_dtype=torch.int32 cannot hold ids of this many entities")
    return index_dtype


# ---- raw kernel arguments ([E, B], batch innermost; RuntimeError like csrc/checks.h) ------------

def check_kb_tensors(kb: List[Tensor]) -> None:
    """The KB argument of a raw op is the whole list of SparseKB.tensors() (as csrc/checks.h)."""
    if len(kb) != layout.NUM_KB_SLOTS:
        raise RuntimeError(f"kb must be the {layout.NUM_KB_SLOTS} tensors of SparseKB.tensors(), got {len(kb)}")


def check_raw_kb(op: str, kb: List[Tensor]) -> None:
    """The structure of a raw KB list, as csrc/checks.h check_kb: dtypes, sizes, contiguity, one
    device. The values inside are checked by the kernels as they read them (csrc/bounds.h)."""
    check_kb_tensors(kb)
    ptrs = ("OBJ_PTR", "SUBJ_PTR", "REL_PTR", "REL_CHUNK_PTR", "REL_CHUNK_REL")
    for name in ptrs:
        t = kb[getattr(layout, name)]
        if t.dtype != torch.int64 or t.dim() != 1 or not t.is_contiguous():
            raise RuntimeError(f"{op}(): kb[{name}] must be a contiguous int64 row pointer")
    idx = kb[layout.OBJ_SUBJ].dtype
    if idx not in (torch.int32, torch.int64):
        raise RuntimeError(f"{op}(): kb index tensors must be int32 or int64")
    facts = kb[layout.OBJ_SUBJ].numel()
    for name in ("OBJ_SUBJ", "OBJ_REL", "SUBJ_OBJ", "SUBJ_REL", "REL_SUBJ", "REL_OBJ"):
        t = kb[getattr(layout, name)]
        if t.dtype != idx or t.numel() != facts or t.dim() != 1 or not t.is_contiguous():
            raise RuntimeError(f"{op}(): kb[{name}] must be a contiguous index tensor like kb[OBJ_SUBJ]")
    for name in ("OBJ_WEIGHT", "SUBJ_WEIGHT", "REL_WEIGHT"):
        t = kb[getattr(layout, name)]
        if t.dtype != torch.float32 or not t.is_contiguous() or t.numel() not in (0, facts):
            raise RuntimeError(f"{op}(): kb[{name}] must be an empty or per-fact float32 weight tensor")
    if kb[layout.OBJ_PTR].numel() != kb[layout.SUBJ_PTR].numel() or kb[layout.OBJ_PTR].numel() < 2:
        raise RuntimeError(f"{op}(): kb row pointers disagree on the number of entities")
    if kb[layout.REL_CHUNK_PTR].numel() != kb[layout.REL_PTR].numel():
        raise RuntimeError(f"{op}(): kb chunk pointers disagree on the number of relations")
    if any(t.device != kb[0].device for t in kb):
        raise RuntimeError(f"{op}(): kb tensors must be on one device")


def kb_device(kb: List[Tensor]) -> torch.device:
    """Where a raw KB list lives."""
    check_kb_tensors(kb)
    return kb[layout.OBJ_PTR].device


def check_kb_no_grad(op: str, kb: List[Tensor]) -> None:
    """The KB tensors of a raw op do not require grad: the op does not differentiate with respect to
    them (the fact weights included), and autograd would otherwise give them no gradient silently."""
    check_kb_grad(op, kb, False)


def check_kb_grad(op: str, kb: List[Tensor], trainable_weight: bool) -> None:
    """No KB tensor requires grad, except SUBJ_WEIGHT where ``trainable_weight`` (the op gives the
    fact weights their gradient there: SparseKB.tensors())."""
    for slot, t in zip(layout.SLOT_NAMES, kb):
        if not t.requires_grad or (trainable_weight and slot == "SUBJ_WEIGHT"):
            continue
        if slot.endswith("WEIGHT"):
            if trainable_weight:
                raise RuntimeError(f"{op}(): kb[{slot}] requires grad: the fact weights train through "
                                   f"kb[SUBJ_WEIGHT] only, as SparseKB.tensors() hands them out")
            raise RuntimeError(f"{op}(): kb[{slot}] requires grad: only follow() trains fact weights (through its "
                               f"pull); for this op build the SparseKB from weight.detach()")
        raise RuntimeError(f"{op}(): the derivative with respect to the KB's index tensors is not defined, and "
                           f"kb[{slot}] requires grad")


def kb_num_entities(kb: List[Tensor]) -> int:
    check_kb_tensors(kb)
    return kb[layout.OBJ_PTR].shape[0] - 1


def kb_num_relations(kb: List[Tensor]) -> int:
    check_kb_tensors(kb)
    return kb[layout.REL_PTR].shape[0] - 1


def check_matrix(op: str, name: str, t: Tensor, rows: int, kb: List[Tensor], batch=None) -> None:
    if t.dim() != 2 or t.shape[0] != rows or (batch is not None and t.shape[1] != batch):
        want = f"[{rows}, {'B' if batch is None else batch}]"
        raise RuntimeError(f"{op}(): {name} must be {want}, got {list(t.shape)}")
    if t.device != kb_device(kb):
        raise RuntimeError(f"{op}(): {name} is on {t.device}, the KB on {kb_device(kb)}")
    if not t.is_floating_point():
        raise RuntimeError(f"{op}(): {name} must be a floating tensor, got {t.dtype}")


def check_pull_operands(op: str, a: Tensor, a_name: str, a_rows: int, b: Tensor, b_name: str, b_rows: int,
                        kb: List[Tensor]) -> None:
    check_raw_kb(op, kb)
    check_matrix(op, a_name, a, a_rows, kb)
    check_matrix(op, b_name, b, b_rows, kb, batch=a.shape[1])
    if a.dtype != b.dtype:
        raise RuntimeError(f"{op}(): {a_name} and {b_name} must have one dtype, got {a.dtype} and {b.dtype}")


def check_frontier(op: str, ptr: Tensor, ids: Tensor, vals: Tensor, r: Tensor, kb: List[Tensor]) -> None:
    """Shapes, dtypes and devices; the offsets and ids are checked by the kernels as they read them."""
    check_raw_kb(op, kb)
    for name, t in (("ptr", ptr), ("ids", ids)):
        if t.dim() != 1 or t.dtype != torch.int64 or t.device != kb_device(kb):
            raise RuntimeError(f"{op}(): {name} must be an int64 vector on {kb_device(kb)}")
    if ptr.shape[0] < 1:
        raise RuntimeError(f"{op}(): ptr must hold B + 1 offsets")
    if vals.dim() != 1 or vals.shape[0] != ids.shape[0]:
        raise RuntimeError(f"{op}(): vals must hold one weight per id")
    check_matrix(op, "r", r, kb_num_relations(kb), kb, batch=ptr.shape[0] - 1)
    if r.dtype != vals.dtype:
        raise RuntimeError(f"{op}(): r must be [R, B] of the dtype of vals")


def check_raw_branches(op: str, xs: List[Tensor], rs: List[Tensor], kb: List[Tensor], backend: str):
    """(xs, rs made contiguous, E, B) of follow_intersect's k branches of x [E, B] and r [R, B]."""
    check_raw_kb(op, kb)
    if len(xs) < 2 or len(xs) != len(rs):
        raise RuntimeError(f"{op}(): needs at least 2 branches and one tensor per branch in xs and rs, "
                           f"got {len(xs)} and {len(rs)}")
    check_branch_count(f"{op}()", backend, len(xs))
    E, R, B = kb_num_entities(kb), kb_num_relations(kb), xs[0].shape[1] if xs[0].dim() == 2 else -1
    for i, (x, r) in enumerate(zip(xs, rs)):
        check_matrix(op, f"xs[{i}]", x, E, kb, batch=B)
        check_matrix(op, f"rs[{i}]", r, R, kb, batch=B)
        if x.dtype != xs[0].dtype or r.dtype != xs[0].dtype:
            raise RuntimeError(f"{op}(): branch {i} must have the dtype of branch 0")
    return [x.contiguous() for x in xs], [r.contiguous() for r in rs], E, B


def non_overlapping_and_dense(t) -> bool:
    """Some permutation of t's dims is contiguous (c10's is_non_overlapping_and_dense)."""
    if t.numel() < 2:
        return True
    expected = 1
    for d in sorted(range(t.dim()), key=t.stride):
        if t.shape[d] != 1:
            if t.stride(d) != expected:
                return False
            expected *= t.shape[d]
    return True


def common_layout(op: str, ts: List[Tensor]) -> List[Tensor]:
    """The tensors of an elementwise op as they are when they share strides and are dense
    (elementwise over storage), else contiguous copies (csrc/checks.h: common_layout)."""
    if len(ts) < 2:
        raise RuntimeError(f"{op}(): needs at least 2 tensors, got {len(ts)}")
    ref = ts[0]
    for i, t in enumerate(ts):
        if t.shape != ref.shape or t.dtype != ref.dtype or t.device != ref.device:
            raise RuntimeError(f"{op}(): tensor {i} must have the shape, dtype and device of the first")
    if all(t.stride() == ref.stride() for t in ts) and non_overlapping_and_dense(ref):
        return list(ts)
    return [t.contiguous() for t in ts]


def check_ties(op: str, ties: Tensor, grad: Tensor) -> None:
    if ties.dtype != torch.uint8 or ties.shape != grad.shape or ties.device != grad.device:
        raise RuntimeError(f"{op}(): ties must be a contiguous uint8 tensor shaped like grad, on its device")


# ---- raw count / select_extreme (Triton launchers; the C++ ops' own: csrc/count.h, select_extreme.h) -----

def check_raw_set(op: str, x: Tensor) -> None:
    """x [E, B], floating (any strides)."""
    if x.dim() != 2:
        raise RuntimeError(f"{op}(): x must be [E, B] (batch innermost), got {list(x.shape)}")
    if not x.is_floating_point():
        raise RuntimeError(f"{op}(): x must be floating point, got {x.dtype}")


def check_raw_count_grad(op: str, grad: Tensor, x: Tensor) -> None:
    check_raw_set(op, x)
    if grad.dim() != 1 or grad.shape[0] != x.shape[1] or grad.dtype != x.dtype or grad.device != x.device:
        raise RuntimeError(f"{op}(): grad must be [B={x.shape[1]}] of x's dtype {x.dtype} on {x.device}, got "
                           f"{list(grad.shape)} {grad.dtype} on {grad.device}")


def check_raw_extreme(op: str, x: Tensor, values: Tensor, temperature: float, grad: Optional[Tensor] = None) -> None:
    """x [E, B] floating; values [E] or [E, B] of x's dtype and device; temperature finite, >= 0;
    grad (a backward's) of x's shape, dtype and device."""
    check_raw_set(op, x)
    if not (tuple(values.shape) == (x.shape[0],) or values.shape == x.shape):
        raise RuntimeError(f"{op}(): values must be [E={x.shape[0]}] or [E, B] like x {list(x.shape)}, "
                           f"got {list(values.shape)}")
    if values.dtype != x.dtype or values.device != x.device:
        raise RuntimeError(f"{op}(): values must have x's dtype and device ({x.dtype}, {x.device}), got "
                           f"{values.dtype}, {values.device}")
    if not (temperature >= 0 and temperature != float("inf")):
        raise RuntimeError(f"{op}(): temperature must be finite and >= 0, got {temperature}")
    if grad is not None and (grad.shape != x.shape or grad.dtype != x.dtype or grad.device != x.device):
        raise RuntimeError(f"{op}(): grad must have x's shape, dtype and device ({list(x.shape)}, {x.dtype}, "
                           f"{x.device}), got {list(grad.shape)}, {grad.dtype}, {grad.device}")
