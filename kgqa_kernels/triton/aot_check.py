"""Compiles every Triton kernel of the backend to a CUDA binary without a GPU (Triton's own
compiler and ptxas), which catches what the interpreter lets through: code it runs as Python
but the compiler rejects. Compiling is not running: the kernels' results are checked under
TRITON_INTERPRET=1 by the tests, and on a GPU only.

    python -m kgqa_kernels.triton.aot_check [--arch 90]

Must run without TRITON_INTERPRET=1 (the interpreter replaces the kernels).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.autotuner import Autotuner

from .. import layout
from . import count, follow, follow_intersect, follow_push, intersect, select_extreme, work_plan


def _branches(prefix, dtype):
    return {f"{prefix}{i}": dtype for i in range(8)}


def cases():
    """(name, kernel, signature, constexprs): each kernel with fp32 and a 16-bit or int64 variant."""
    for idx, val, acc in (("*i32", "*fp32", tl.float32), ("*i64", "*bf16", tl.float32), ("*i32", "*fp64", tl.float64)):
        bounds = {"E": "i64", "R": "i64", "FACTS": "i64", "PTR_SLOT": "i64", "err": "*i32"}  # csrc/bounds.h
        acc_ptr = "*fp64" if acc == tl.float64 else "*fp32"
        steps = {"STEPS": 9}  # work_plan.search_steps of a few hundred rows
        block = {"FACT_BLOCK": work_plan.FACT_BLOCK}  # what runs compiled
        pull = {"ptr": "*i64", "col": idx, "rel": idx, "wt": "*fp32", "x": val, "r": val, "y": val, "carry": acc_ptr,
                "B": "i32", **bounds}
        yield f"pull {idx} {val}", follow._pull_kernel, pull, {**steps, **block, "HAS_W": True, "ACC": acc, "BLOCK_B": 64}
        fixup = {"ptr": "*i64", "carry": acc_ptr, "y": val, "B": "i32", "E": "i64", "FACTS": "i64"}
        yield f"pull fixup {val}", follow._pull_fixup_kernel, fixup, {**steps, "ACC": acc, "BLOCK_B": 64}
        index = {"ptr": "*i64", "col": idx, "rel": idx, "wt": "*fp32", **_branches("X", val), **_branches("R", val)}
        fi = {**index, "out": val, "ties": "*u8", "carry": acc_ptr, "B": "i32", **bounds}
        fi_fixup = {"ptr": "*i64", "carry": acc_ptr, "out": val, "ties": "*u8", "B": "i32", "E": "i64", "FACTS": "i64"}
        bw = {**index, "grad": val, **_branches("G", val), "carry": acc_ptr, "B": "i32", **bounds}
        bw_fixup = {"ptr": "*i64", "carry": acc_ptr, "grad": val, **_branches("G", val), "B": "i32", "E": "i64",
                    "FACTS": "i64"}
        for product in (False, True):
            k3 = {"K": 3, "KP": 4, **steps, "PRODUCT": product, "ACC": acc, "BLOCK_B": 64}
            modes = {"SAVE_TIES": not product}
            yield (f"follow_intersect {idx} {val} product={product}", follow_intersect._follow_intersect_kernel, fi,
                   {**k3, **block, **modes, "HAS_W": False})
            yield (f"follow_intersect fixup {val} product={product}", follow_intersect._follow_intersect_fixup_kernel,
                   fi_fixup, {**k3, **modes})
            yield (f"follow_intersect_backward {idx} {val} product={product}",
                   follow_intersect._follow_intersect_backward_kernel, bw, {**k3, **block, "HAS_W": True})
            yield (f"follow_intersect_backward fixup {val} product={product}",
                   follow_intersect._follow_intersect_backward_fixup_kernel, bw_fixup, k3)
        chunk = {"relptr": "*i64", "chunk_ptr": "*i64", "chunk_rel": "*i64", "subj": idx, "obj": idx, "w": "*fp32",
                 "a": val, "b": val, "partial": "*fp64" if acc == tl.float64 else "*fp32", "B": "i32", "E": "i64",
                 "R": "i64", "FACTS": "i64", "err": "*i32"}
        codes = {"REL_PTR_CODE": layout.REL_PTR + 1, "CHUNK_PTR_CODE": layout.REL_CHUNK_PTR + 1}
        yield f"rel_chunk {idx} {val}", follow._rel_chunk_kernel, chunk, {
            "CHUNK": 4096, "HAS_W": True, "ACC": acc, "BLOCK_B": 64, "CHUNK_REL_CODE": layout.REL_CHUNK_REL + 1,
            "SUBJ_CODE": layout.REL_SUBJ + 1, "OBJ_CODE": layout.REL_OBJ + 1, **codes}
        red = {"relptr": "*i64", "chunk_ptr": "*i64", "partial": chunk["partial"], "dr": val, "B": "i32",
               "FACTS": "i64", "CHUNKS": "i64", "err": "*i32"}
        yield f"rel_reduce {val}", follow._rel_reduce_kernel, red, {"CHUNK": 4096, "ACC": acc, "BLOCK_B": 64, **codes}
        expand = {"item_ptr": "*i64", "example": "*i64", "ids": "*i64", "vals": val, "fptr": "*i64", "col": idx,
                  "rel": idx, "w": "*fp32", "r": val}
        push_bounds = {"B": "i32", "E": "i64", "R": "i64", "FACTS": "i64", "N": "i64", "PTR_SLOT": "i64", "err": "*i32",
                       "T": "i64"}
        terms = {"STEPS": 9, "HAS_W": True, "ACC": acc, "BLOCK": follow_push.ITEM_BLOCK}
        yield (f"push expand {idx} {val}", follow_push._expand_kernel,
               {**expand, "key": "*i64", "val": acc_ptr, **push_bounds}, terms)
        yield (f"push_backward expand {idx} {val}", follow_push._expand_backward_kernel,
               {**expand, "grad": val, "dv_item": acc_ptr, "dr_key": "*i64", "dr_item": acc_ptr, **push_bounds}, terms)
        # The planned segment sums: into vals' dtype by row (dvals), into the accumulator's at keys (y,
        # dr; for bfloat16, the float32 case).
        for out, has_dest in [(val, False)] + ([(acc_ptr, True)] if val == acc_ptr else []):
            seg = {"ptr": "*i64", "vals": acc_ptr, "dest": "*i64", "out": out, "carry": acc_ptr, "rows": "i64",
                   "items": "i64", "WORKERS": "i64"}
            plan = {"STEPS": 9, "HAS_DEST": has_dest, "BLOCK_W": follow_push.SUM_BLOCK_W}
            yield (f"segment_sum {out} dest={has_dest}", follow_push._segment_sum_kernel, seg,
                   {**plan, "ROW_BLOCK": follow_push.ROW_BLOCK})
            yield (f"segment_fixup {out} dest={has_dest}", follow_push._segment_fixup_kernel,
                   {k: v for k, v in seg.items() if k != "vals"}, plan)
        for op in range(4):
            comb = {**_branches("X", val), "out": val, "n": "i64"}
            yield f"combine op={op} {val}", intersect._combine_kernel, comb, {"K": 3, "OP": op, "ACC": acc, "BLOCK": 1024}
            combb = {**_branches("X", val), **_branches("D", val), "grad": val, "out": val, "n": "i64"}
            yield (f"combine_backward op={op} {val}", intersect._combine_backward_kernel, combb,
                   {"K": 3, "OP": op, "ACC": acc, "BLOCK": 1024})
        ties = {"grad": val, "ties": "*u8", **_branches("G", val), "n": "i64"}
        if val == "*fp32":
            plan = {"ptr": "*i64", "work": "*i64", "fixup": "*i64", "rows": "i64", "facts": "i64", "WORKERS": "i64",
                    "BATCH_BLOCKS": "i32"}
            yield "launch_plan", work_plan._plan_kernel, plan, {"STEPS": 21, "BLOCK_W": work_plan.PLAN_BLOCK_W}
            entries = {"ptr": "*i64", "ids": "*i64", "fptr": "*i64", "count": "*i64", "example": "*i64", "B": "i32",
                       "E": "i64", "FACTS": "i64", "N": "i64", "PTR_SLOT": "i64", "err": "*i32"}
            yield "push entries", follow_push._entries_kernel, entries, {
                "STEPS": 9, "FPTR_CODE": layout.BAD_FRONTIER_PTR, "IDS_CODE": layout.BAD_FRONTIER_IDS,
                "BLOCK": follow_push.ITEM_BLOCK}
        yield f"tie_shares {val}", follow_intersect._tie_shares_kernel, ties, {"K": 3, "ACC": acc, "BLOCK": 1024}
        yield (f"count {val}", count._count_kernel, {"x": val, "se": "i64", "sb": "i64", "E": "i64", "y": val},
               {"ACC": acc, "BLOCK_E": count.BLOCK_E})
        yield (f"count_backward {val}", count._count_backward_kernel,
               {"grad": val, "gs": "i64", "B": "i64", "n": "i64", "dx": val}, {"BLOCK": 1024})
        ext = {"x": val, "xe": "i64", "xb": "i64", "v": val, "ve": "i64", "vb": "i64"}
        bests = {"top": acc_ptr, "first": "*i64", "sum": acc_ptr, "E": "i64", "B": "i64", "T": "fp32"}
        for soft in (False, True):
            consts = {"SIGN": -1.0, "SOFT": soft, "ACC": acc, "BLOCK_E": select_extreme.BLOCK_E}
            yield (f"select_extreme {val} soft={soft}", select_extreme._select_kernel,
                   {**ext, "y": val, "E": "i64", "B": "i64", "T": "fp32"}, consts)
            yield (f"select_extreme_backward {val} soft={soft}", select_extreme._select_backward_kernel,
                   {**ext, "grad": val, "ge": "i64", "gb": "i64", "dx": val, "dv": val,
                    **{f"{k}_out" if k in ("top", "first", "sum") else k: t for k, t in bests.items()}},
                   {**consts, "ROW_DV": soft})
        yield (f"select_extreme shared dv {val}", select_extreme._shared_dv_kernel,
               {**{k: t for k, t in ext.items() if k != "vb"}, "grad": val, "ge": "i64", "gb": "i64", "dv": val,
                **{f"{k}_in" if k in ("top", "first", "sum") else k: t for k, t in bests.items()}},
               {"SIGN": 1.0, "ACC": acc, "BLOCK_E": select_extreme.BLOCK_E})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80 or 90")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("aot_check: unset TRITON_INTERPRET (the interpreter replaces the kernels)", file=sys.stderr)
        return 2
    failed = 0
    for name, kernel, signature, constexprs in cases():
        fn = kernel.fn if isinstance(kernel, Autotuner) else kernel  # the JITFunction under @triton.autotune
        sig = {**signature, **{k: "constexpr" for k in constexprs}}
        t0 = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs),
                                      target=GPUTarget("cuda", args.arch, 32), options={"num_warps": 2})
            print(f"ok   sm_{args.arch} {name}: {len(compiled.asm['cubin'])} bytes of cubin "
                  f"({time.perf_counter() - t0:.1f} s)")
        except Exception as e:  # report every kernel, then fail
            failed += 1
            print(f"FAIL sm_{args.arch} {name}: {type(e).__name__}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
