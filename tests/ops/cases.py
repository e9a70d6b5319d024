"""What the op tests run on, in one place: the KBs (each built to hit the edge cases the kernels must
get right), the tolerances, the inputs, and which cases each backend runs (``cases_for``).

tests/kbgen.py re-exports the KB builders for the test files outside tests/ops.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import pytest
import torch

import kgqa_kernels as kk
from kgqa_kernels import layout, reference, synthetic

# ---- KBs ------------------------------------------------------------------------------------------


def random_facts(num_entities, num_relations, num_facts, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(0, num_entities, (num_facts,), generator=g)
    p = torch.randint(0, num_relations, (num_facts,), generator=g)
    o = torch.randint(0, num_entities, (num_facts,), generator=g)
    return s, p, o


def edge_case_kb(weighted=False, index_dtype=None, seed=0):
    """20 entities, 5 relations. Entities 5..9 and relation 4 have no facts; the first (0) and last
    (19) entity ids occur as subject and object; there are self-loops, duplicate input facts, an
    entity with many facts of one relation, and one with several relations."""
    g = torch.Generator().manual_seed(seed)
    s = [0, 19, 0, 3, 3, 3, 3, 11, 12, 13, 14, 15, 16, 17, 18, 19, 2, 2, 4, 4, 0]
    p = [0, 1, 2, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 3, 2, 2, 3, 0, 0]
    o = [19, 0, 0, 1, 2, 4, 19, 3, 3, 3, 3, 3, 3, 3, 3, 19, 2, 2, 4, 4, 19]  # (2,2,2) twice, (0,0,19) twice
    extra_s, extra_p, extra_o = random_facts(20, 4, 30, seed)
    keep = ~((extra_s >= 5) & (extra_s <= 9) | (extra_o >= 5) & (extra_o <= 9))
    s = torch.cat([torch.tensor(s), extra_s[keep]])
    p = torch.cat([torch.tensor(p), extra_p[keep]])
    o = torch.cat([torch.tensor(o), extra_o[keep]])
    w = torch.rand(s.numel(), generator=g) + 0.5 if weighted else None
    return kk.SparseKB(s, p, o, 20, 5, weight=w, index_dtype=index_dtype)


def random_kb(num_entities=40, num_relations=6, num_facts=150, weighted=False, seed=0, index_dtype=None):
    s, p, o = random_facts(num_entities, num_relations, num_facts, seed)
    w = torch.rand(num_facts, generator=torch.Generator().manual_seed(seed + 1)) + 0.5 if weighted else None
    return kk.SparseKB(s, p, o, num_entities, num_relations, weight=w, index_dtype=index_dtype)


def power_law_kb(num_entities=300, num_relations=8, num_facts=3000, seed=0):
    """A few hub entities hold most facts (stresses the load balancing of the kernels)."""
    return synthetic.power_law_kb(num_entities, num_relations, num_facts, exponent=1.2, seed=seed)


# The KB registry: tests name their KB, and each is built once per device.
KBS = {
    "edge": lambda: edge_case_kb(),
    "edge-weighted": lambda: edge_case_kb(weighted=True),
    "edge-int64": lambda: edge_case_kb(index_dtype=torch.int64),
    "random": lambda: random_kb(),
    "random-weighted": lambda: random_kb(weighted=True),
    "power-law": lambda: power_law_kb(),
    "power-law-60-3": lambda: power_law_kb(60, 3, 300),
    "power-law-30": lambda: power_law_kb(30, 3, 120),  # a hub with a quarter of the facts, for the interpreter
    "tiny": lambda: random_kb(8, 3, 24),
    "tiny-weighted": lambda: random_kb(8, 3, 24, weighted=True),
    "tiny-int64": lambda: random_kb(8, 3, 24, index_dtype=torch.int64),
    "micro-weighted": lambda: random_kb(4, 2, 8, weighted=True),  # second derivatives under the interpreter
    "chunked": lambda: chunked_kb(),
    "hub": lambda: hub_kb(),
}


def hub_kb(num_entities=300, seed=0):
    """Rows that the GPU kernels' work plan (csrc/work_plan.h) splits over several workers: object 0
    with 3 * PLAN_ITEMS + 17 facts, subject 1 with 2 * PLAN_ITEMS + 88 (the inverse pull), beside
    short and empty rows; weighted. About 1,500 facts, few enough for the Triton interpreter."""
    g = torch.Generator().manual_seed(seed)
    R = 3
    n_obj, n_subj = 3 * layout.PLAN_ITEMS + 17, 2 * layout.PLAN_ITEMS + 88
    into_hub = torch.randperm(num_entities * R, generator=g)[:n_obj]  # distinct (s, p) into object 0
    out_of_hub = torch.randperm(num_entities * R, generator=g)[:n_subj]  # distinct (p, o) from subject 1
    s_rand, p_rand, o_rand = random_facts(num_entities // 2, R, 150, seed)  # entities >= 150: no facts
    s = torch.cat([into_hub // R, torch.ones(n_subj, dtype=torch.long), s_rand])
    p = torch.cat([into_hub % R, out_of_hub % R, p_rand])
    o = torch.cat([torch.zeros(n_obj, dtype=torch.long), out_of_hub // R, o_rand])
    w = torch.rand(s.numel(), generator=g) + 0.5
    return kk.SparseKB(s, p, o, num_entities, R, weight=w)


def chunked_kb(num_entities=300, seed=0):
    """Relation 0 spans two chunks of dr's fixed reduction order (a full one of REL_CHUNK facts and
    part of a second), relation 1 part of one, relation 2 none: as few facts as that takes, for the
    Triton interpreter."""
    g = torch.Generator().manual_seed(seed)
    counts = (layout.REL_CHUNK + 100, 50)
    p = torch.cat([torch.full((n,), rel) for rel, n in enumerate(counts)])
    # Distinct (s, o) pairs, so no fact is merged away as a duplicate.
    pairs = torch.randperm(num_entities * num_entities, generator=g)[: p.numel()]
    w = torch.rand(p.numel(), generator=g) + 0.5
    return kk.SparseKB(pairs // num_entities, p, pairs % num_entities, num_entities, 3, weight=w)


@functools.lru_cache(maxsize=None)
def _kb(name: str, device: str) -> kk.SparseKB:
    return KBS[name]() if device == "cpu" else _kb(name, "cpu").to(device)


def kb(name: str, device="cpu") -> kk.SparseKB:
    """KB ``name`` of the registry on ``device`` (built once; the ops never change a KB)."""
    return _kb(name, str(torch.device(device)))


# ---- tolerances -----------------------------------------------------------------------------------

# (dtype, atol, rtol) of a result against a float64 computation on the same (rounded) inputs.
TOLERANCES = [
    (torch.float64, 1e-12, 1e-12),
    (torch.float32, 1e-5, 1e-5),
    (torch.bfloat16, 2e-2, 2e-2),
    (torch.float16, 2e-3, 2e-3),
]
DTYPE_TOLERANCES = TOLERANCES  # the name tests/kbgen.py has always exported
_TOL = {dtype: (atol, rtol) for dtype, atol, rtol in TOLERANCES}


def tol(dtype: torch.dtype) -> Tuple[float, float]:
    """(atol, rtol) of ``dtype``."""
    return _TOL[dtype]


def assert_close(actual, expected, dtype=None, atol_factor=1, **kw):
    """actual against a float64 expected at the tolerance of ``dtype`` (default: actual's), on the
    CPU, NaN equal to NaN."""
    atol, rtol = tol(dtype or actual.dtype)
    torch.testing.assert_close(actual.detach().cpu().double(), expected.detach().cpu().double(),
                               atol=atol * atol_factor, rtol=rtol, equal_nan=True, **kw)


# ---- inputs ---------------------------------------------------------------------------------------


def inputs(kb, B, dtype=torch.float64, requires_grad=False, seed=0, k=None, device=None):
    """x [B, num_entities] and r [B, num_relations] of uniform weights in [0, 1), drawn in float64
    and rounded to ``dtype``; with ``k``, lists xs and rs of k branches. On ``device`` (default: the
    KB's), leaves that require grad when asked."""
    g = torch.Generator().manual_seed(seed)
    device = kb.device if device is None else device

    def draw(n):
        t = torch.rand(B, n, generator=g, dtype=torch.float64).to(dtype).to(device)
        return t.requires_grad_(requires_grad)

    if k is None:
        return draw(kb.num_entities), draw(kb.num_relations)
    return [draw(kb.num_entities) for _ in range(k)], [draw(kb.num_relations) for _ in range(k)]


def frontier_inputs(kb, B, dtype=torch.float64, seed=0, per_example=1, device=None):
    """x [B, num_entities] with ``per_example`` random nonzero entities per example (the first hops
    that follow pushes), and r [B, num_relations]. With B >= 3, example 0 holds the first entity
    alone, example 1 the last, and example 2 nothing (an empty frontier)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(B, kb.num_entities, dtype=torch.float64)
    for _ in range(per_example):
        x[torch.arange(B), torch.randint(0, kb.num_entities, (B,), generator=g)] = (
            torch.rand(B, generator=g, dtype=torch.float64) + 0.5)
    if B >= 3:
        x[:3] = 0
        x[0, 0], x[1, kb.num_entities - 1] = 1.0, 0.75
    r = torch.rand(B, kb.num_relations, generator=g, dtype=torch.float64)
    device = kb.device if device is None else device
    return x.to(dtype).to(device), r.to(dtype).to(device)


def leaves(ts, dtype=None):
    """Detached copies of ts (in ``dtype`` if given) that require grad: the same values, a second
    graph."""
    return [t.detach().to(dtype or t.dtype).clone().requires_grad_() for t in ts]


def assert_compiled_matches_eager(fn, inputs):
    """``fn`` (a scalar loss of ``inputs``, leaves that require grad) compiled with fullgraph=True
    against the same function run eagerly on fresh leaves: the loss and every input's gradient (a
    gradient the eager run leaves as None must be zero in the compiled one)."""
    out = torch.compile(fn, backend="aot_eager", fullgraph=True)(*inputs)
    out.backward()
    again = leaves(inputs)
    expected = fn(*again)
    expected.backward()
    torch.testing.assert_close(out, expected)
    for t, e in zip(inputs, again):
        torch.testing.assert_close(t.grad, e.grad if e.grad is not None else torch.zeros_like(t))


def penalised_grads(fn, args, wrt, seed=1):
    """The gradients a gradient penalty leaves on float64 copies of ``args``: with y = fn(*args) and
    loss = sum(y * g) + sum(y ** 2) / 2 (g fixed, so the first derivatives depend on the inputs both
    through the op's backward and through its output gradient), the norm of d loss / d args[i] for
    i in ``wrt``, taken with create_graph=True, is differentiated back to every arg. Returns each
    arg's .grad (None where no gradient arrived)."""
    args = leaves(args, torch.float64)
    y = fn(*args)
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(y.device)
    loss = (y * g).sum() + (y * y).sum() / 2
    firsts = torch.autograd.grad(loss, [args[i] for i in wrt], create_graph=True)
    sum(f.norm() for f in firsts).backward()
    return [a.grad for a in args]


def assert_same_grads(actual, expected):
    """Gradients of penalised_grads against the reference's: present where the reference's are, equal."""
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert (a is None) == (e is None), f"argument {i}: gradient {a} but the reference's {e}"
        if e is not None:
            torch.testing.assert_close(a, e, msg=lambda m: f"argument {i}: {m}")


def rounded_follow_intersect(xs, rs, kb, inverse, tnorm, dtype):
    """(the unfused reference of follow_intersect, the k follow outputs) on float64 leaves xs and rs,
    each follow output rounded to ``dtype`` first, as the kernels decide ties in the input dtype."""
    ys = [reference.follow_dense(x, r, kb, inverse=inverse).to(dtype).double() for x, r in zip(xs, rs)]
    return reference.intersect(*ys, tnorm=tnorm), ys


# ---- which cases each backend runs ----------------------------------------------------------------

ALL_DTYPES = tuple(dtype for dtype, _, _ in TOLERANCES)
MATRIX_KBS = ("edge", "edge-weighted", "edge-int64", "random-weighted", "power-law")


@dataclass(frozen=True)
class Cases:
    """The cases of the op tests on one backend. Tests range over a field by naming it in
    ``@matrix(...)`` (tests/ops/conftest.py makes the parameters), or read it directly."""

    kb_name: Tuple[str, ...]  # KBs of the forward / gradient matrices
    B: Tuple[int, ...]  # batch sizes: each at an edge of the backend's tiling of the batch
    B_fused: Tuple[int, ...]  # batch sizes of the follow_intersect matrix
    dtype: Tuple[torch.dtype, ...]
    dtype_fused: Tuple[torch.dtype, ...]  # dtypes of the follow_intersect matrices
    k: Tuple[int, ...]  # branches of follow_intersect
    gradcheck_kb: Tuple[str, ...]  # KBs of the gradchecks of follow (one branch), a weighted one first
    gradcheck_kb_fused: Tuple[str, ...]  # KBs of the gradchecks of follow_intersect (3 branches)
    gradgradcheck_kb: str  # the KB of the gradgradchecks (weighted)
    gradcheck_fast: bool  # gradcheck's fast_mode: one random projection of the Jacobian per input
    max_batch: Optional[int]  # the largest batch of the tests that fix their own (None: any)
    examples: int  # hypothesis examples of the property tests
    # KBs whose rows the GPU kernels' work plan (csrc/work_plan.h) splits over several workers.
    split_kb: Tuple[str, ...] = ("hub",)
    # The KB that runs in place of the one a test names through kb_for: a smaller one of its kind.
    smaller: Dict[str, str] = field(default_factory=dict)


# The C++ CPU kernels and the CPU emulation of the CUDA kernels take well under a millisecond per
# call on these KBs: every KB, batch size and dtype, and the full Jacobian in gradcheck (the
# emulation only on the edge-case KBs: on "power-law" the full Jacobian alone takes a minute, and
# its hubs are checked by the gradient tests against the reference). Batches: 130 spans two batch
# tiles of the CPU kernel; 33 is a partly used warp and 300 two blocks across the batch of the CUDA
# launch, which the emulation runs as configured. The GPU launch adds "hub", whose rows its work
# plan splits over several workers.
_GRADCHECK_KBS = ("edge-weighted", "edge", "edge-int64", "random-weighted", "power-law")  # weighted first
_FUSED_GRADCHECK_KBS = ("edge-weighted", "power-law-60-3")
_CPU = Cases(
    kb_name=MATRIX_KBS, B=(1, 7, 130), B_fused=(1, 7, 130), dtype=ALL_DTYPES, dtype_fused=ALL_DTYPES, k=(2, 3, 4),
    gradcheck_kb=_GRADCHECK_KBS, gradcheck_kb_fused=_FUSED_GRADCHECK_KBS, gradgradcheck_kb="tiny-weighted",
    gradcheck_fast=False, max_batch=None, examples=40,
)
_GPU_LAUNCH = Cases(
    kb_name=MATRIX_KBS + ("hub",), B=(1, 5, 33, 300), B_fused=(1, 5, 33, 300), dtype=ALL_DTYPES, dtype_fused=ALL_DTYPES,
    k=(2, 3, 4), gradcheck_kb=_GRADCHECK_KBS[:3], gradcheck_kb_fused=_FUSED_GRADCHECK_KBS,
    gradgradcheck_kb="tiny-weighted", gradcheck_fast=False, max_batch=None, examples=40,
)
# Triton's interpreter costs milliseconds per program instance (one per row and block of 16 batch
# columns) and per fact a program reads, and follow_intersect launches several kernels per branch in
# its backward: every edge-case KB, hubs on a power-law KB of 30 entities, KBs of 8 entities where
# a test names a larger random one (or, for the raw tie-mask test, the weighted edge-case KB); follow
# at a batch of 17 (a full block of 16 and an almost empty one), follow_intersect at 7 (one block),
# other tests at most one block; three dtypes (follow_intersect: float64 and bfloat16); the
# follow_intersect matrix at 3 branches (2 run in its other tests); fast_mode gradchecks on a KB of
# 8 entities (gradgradchecks, which run the backward for every probe, on one of 4 entities); 8
# hypothesis examples; the hub KB of split_kb (about 1,500 facts, each a few milliseconds) only in
# the tests of split rows, at 3 batch columns. Compiled on a GPU, Triton runs the GPU launch's cases.
_TRITON_INTERPRETED = Cases(
    kb_name=("edge", "edge-weighted", "edge-int64", "power-law-30"), B=(17,), B_fused=(7,),
    dtype=(torch.float64, torch.float32, torch.bfloat16), dtype_fused=(torch.float64, torch.bfloat16), k=(3,),
    gradcheck_kb=("tiny-weighted",), gradcheck_kb_fused=("tiny-weighted",), gradgradcheck_kb="micro-weighted",
    gradcheck_fast=True, max_batch=8,
    examples=8, smaller={"power-law": "power-law-30", "random": "tiny", "random-weighted": "tiny-weighted",
                         "edge-weighted": "tiny-weighted"},
)


def cases_for(backend: str, device="cpu") -> Cases:
    """The cases ``backend`` runs on ``device``: everything on the fast backends, a representative
    subset where each call is slow (the Triton interpreter)."""
    if backend == "triton" and torch.device(device).type == "cpu":
        return _TRITON_INTERPRETED
    if backend == "cpu":
        return _CPU
    return _GPU_LAUNCH  # "emulated", "cuda", and Triton compiled for a GPU


def matrix(*fields, **param_fields):
    """Marks a test taking ``backend`` to also range over these fields of cases_for(backend): each
    named field is a parameter of the same name; ``param=field`` binds another parameter name."""
    return pytest.mark.matrix(*fields, **param_fields)


def kb_for(backend: str, device, name: str) -> kk.SparseKB:
    """KB ``name`` of the registry on ``device``, or the smaller one of its kind ``backend`` runs."""
    return kb(cases_for(backend, device).smaller.get(name, name), device)


def batch(backend: str, device, B: int) -> int:
    """B, or the largest batch ``backend`` runs in reasonable time if smaller."""
    cap = cases_for(backend, device).max_batch
    return B if cap is None else min(B, cap)


def opcheck(op, args):
    """torch.library.opcheck: schema, autograd registration, fake kernel, AOT dispatch with dynamic
    shapes; every check must succeed."""
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), (op, result)


def ops_for(backend: str):
    """The torch.ops namespace of ``backend``'s raw kernels (batch-innermost [E, B] tensors)."""
    from kgqa_kernels import backends

    return backends.op_namespace(backend)


# ---- the CPU loops' two instruction sets (csrc/cpu/isa.h) ----------------------------------------

def use_cpu_isa(monkeypatch, isa: str) -> str:
    """Makes the CPU kernels run their baseline copy ("baseline") or the best one (anything else),
    through KGQA_CPU_ISA; returns what they run now."""
    if isa == "baseline":
        monkeypatch.setenv("KGQA_CPU_ISA", "baseline")
    else:
        monkeypatch.delenv("KGQA_CPU_ISA", raising=False)
    return kk._C.cpu_isa()


def skip_without_avx2(monkeypatch) -> None:
    if use_cpu_isa(monkeypatch, "best") != "avx2":
        pytest.skip("this CPU or this build has no AVX2 copy of the CPU loops (csrc/cpu/isa.h)")


def assert_isas_agree(monkeypatch, compute) -> None:
    """``compute()``, a list of tensors, gives the same bits, strides and NaNs with the CPU loops'
    AVX2 copy as with the baseline one (skipped where there is no AVX2 copy)."""
    skip_without_avx2(monkeypatch)
    results = {}
    for isa in ("avx2", "baseline"):
        assert use_cpu_isa(monkeypatch, isa) == isa
        results[isa] = compute()
    assert len(results["avx2"]) == len(results["baseline"])
    for a, b in zip(results["avx2"], results["baseline"]):
        assert a.dtype == b.dtype and a.stride() == b.stride() and torch.equal(a.isnan(), b.isnan())
        assert torch.equal(a.nan_to_num(), b.nan_to_num())
