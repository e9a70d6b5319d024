"""Run as a script by tests/ops/test_corrupt_kb.py, in its own process, because what it checks is
that nothing crashes: every raw op of one backend on KB tensor lists whose values were corrupted
(a fixed matrix over every slot, then a hypothesis fuzz over slots, positions and values). A call
whose corrupted values are all out of range (an id that is no entity or relation, a row pointer
outside the facts, a chunk entry outside the table) must raise a RuntimeError naming the tensor or
return what it returns on the intact KB (when it never read them). Values in range make another
KB, which a raw op cannot tell from a real one (SparseKB's own guard refuses in-place edits): those
calls must only not crash. Prints a JSON summary; exits 0 unless a call answered wrongly without
an error.

    python tests/ops/corrupt_kb_probe.py cpu|emulated|triton [fuzz examples]
"""
import json
import os
import sys

import torch

if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "triton":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import kgqa_kernels as kk  # noqa: E402
from kgqa_kernels import backends, layout  # noqa: E402

E, R, B = 9, 3, 2
# The fixed matrix's positions and values per slot: just out of range, far out, negative, and in
# range. Interpreted Triton costs milliseconds per program: fewer there.
POSITIONS = {"cpu": (0, 2, -1), "emulated": (0, 2, -1), "triton": (2,)}
VALUES = {"cpu": (-1, E, R + 1, 40, 41, 10**9, -(2**40)), "emulated": (-1, E, R + 1, 40, 41, 10**9, -(2**40)),
          "triton": (10**9,)}
WEIGHTED = {"cpu": (False, True), "emulated": (False, True), "triton": (True,)}
# follow_max's (minimum, add) variants: the flags change the arithmetic, not which KB tensors are
# read. Interpreted, follow_max and its backward were two thirds of the Triton probe's time
# (cProfile: 380 of 566 s for both variants, on a busy machine): one variant there.
MAX_VARIANTS = {"cpu": ((False, False), (True, True)), "emulated": ((False, False), (True, True)),
                "triton": ((True, True),)}


def small_kb(weighted: bool):
    g = torch.Generator().manual_seed(0)
    s, p, o = (torch.randint(0, n, (40,), generator=g) for n in (E, R, E))
    w = torch.rand(40, generator=g) if weighted else None
    return kk.SparseKB(s, p, o, E, R, w)


def calls(ns, backend):
    """name -> f(kb list): every raw op that reads a KB, in both directions."""
    g = torch.Generator().manual_seed(1)
    x, r, grad = torch.rand(E, B, generator=g), torch.rand(R, B, generator=g), torch.rand(E, B, generator=g)
    ptr, ids, vals = torch.tensor([0, 2, 3]), torch.tensor([1, 4, 7]), torch.rand(3, generator=g)
    ties = torch.full((E, B), 3, dtype=torch.uint8)
    out = {}
    for inv in (False, True):
        out[f"follow/{inv}"] = lambda t, inv=inv: ns.follow(x, r, t, inv)
        out[f"follow_backward_r/{inv}"] = lambda t, inv=inv: ns.follow_backward_r(x, grad, t, inv)
        out[f"follow_backward_w/{inv}"] = lambda t, inv=inv: ns.follow_backward_w(x, r, grad, t, inv)
        for mn, add in MAX_VARIANTS[backend]:
            out[f"follow_max/{inv}/{mn}"] = lambda t, inv=inv, mn=mn, add=add: ns.follow_max(x, r, t, inv, mn, add)
            out[f"follow_max_backward/{inv}/{mn}"] = (
                lambda t, inv=inv, mn=mn, add=add: ns.follow_max_backward(x, r, grad, t, inv, mn, add, True))
        out[f"follow_push/{inv}"] = lambda t, inv=inv: ns.follow_push(ptr, ids, vals, r, t, inv)
        out[f"follow_push_backward/{inv}"] = lambda t, inv=inv: ns.follow_push_backward(grad, ptr, ids, vals, r, t, inv)
        out[f"follow_intersect/{inv}"] = lambda t, inv=inv: ns.follow_intersect([x, grad], [r, r], t, inv, "min", True)
        out[f"follow_intersect_backward/{inv}"] = (
            lambda t, inv=inv: ns.follow_intersect_backward(grad, [x, grad], [r, r], t, inv, "product"))
        out[f"follow_intersect_backward_x/{inv}"] = (
            lambda t, inv=inv: ns.follow_intersect_backward_x(grad, ties, [x, grad], [r, r], t, inv))
        out[f"follow_intersect_backward_r/{inv}"] = (
            lambda t, inv=inv: ns.follow_intersect_backward_r(grad, ties, [x, grad], [r, r], t, inv))
    return out


def flatten(result):
    return [result] if isinstance(result, torch.Tensor) else [t for t in result]


def outcome(fn, kb_list, expected):
    """'error' (a RuntimeError naming what was wrong), 'same' (the intact KB's answer) or 'WRONG: ...'."""
    try:
        got = flatten(fn(kb_list))
    except RuntimeError as e:
        msg = str(e)
        if "kb[" in msg or "ptr" in msg or "ids" in msg:
            return "error"
        return f"WRONG: an error that names nothing: {msg[:200]}"
    if len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected)):
        return "same"
    return "WRONG: a different answer without an error"


def out_of_range(kb_list, slot, value) -> bool:
    """Whether no KB could hold ``value`` in ``slot``."""
    name = layout.SLOT_NAMES[slot]
    facts, chunks = kb_list[layout.OBJ_SUBJ].numel(), kb_list[layout.REL_CHUNK_REL].numel()
    if name.endswith("_PTR") and name != "REL_CHUNK_PTR":
        return not 0 <= value <= facts
    if name == "REL_CHUNK_PTR":
        return not 0 <= value <= chunks
    if name in ("OBJ_REL", "SUBJ_REL", "REL_CHUNK_REL"):
        return not 0 <= value < R
    return not 0 <= value < E


def corrupt(kb_list, slot, pos, value):
    t = [u.clone() for u in kb_list]
    info = torch.iinfo(t[slot].dtype)
    if t[slot].numel() == 0 or not info.min <= value <= info.max:
        return None
    t[slot][pos % t[slot].numel()] = value
    return t


def main():
    backend, examples = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200
    ns = backends.op_namespace(backend)
    counts, wrong = {}, []
    for weighted in WEIGHTED[backend]:
        kb = small_kb(weighted).tensors()
        fns = calls(ns, backend)
        expected = {name: flatten(fn(kb)) for name, fn in fns.items()}

        def record(name, slot, pos, value, res, strict=True):
            if not strict:  # values in range: any answer, no crash
                res = "in range" if res.startswith("WRONG") else res
            counts[res.split(":")[0]] = counts.get(res.split(":")[0], 0) + 1
            if res.startswith("WRONG"):
                wrong.append(f"{name} {layout.SLOT_NAMES[slot]}[{pos}]={value} weighted={weighted}: {res}")

        # Every slot, three positions, values just out of range, far out of range and negative.
        for slot in range(layout.NUM_KB_SLOTS):
            if "WEIGHT" in layout.SLOT_NAMES[slot]:
                continue  # any float is a valid weight
            for pos in POSITIONS[backend]:
                for value in VALUES[backend]:
                    bad = corrupt(kb, slot, pos, value)
                    if bad is not None:
                        strict = out_of_range(kb, slot, value)
                        for name, fn in fns.items():
                            record(name, slot, pos, value, outcome(fn, bad, expected[name]), strict)

        # The fuzz: any slot, position and value, several at once.
        from hypothesis import given, settings, HealthCheck
        from hypothesis import strategies as st

        index_slots = [i for i, n in enumerate(layout.SLOT_NAMES) if "WEIGHT" not in n]
        edit = st.tuples(st.sampled_from(index_slots), st.integers(0, 200),
                         st.one_of(st.integers(-3, 45), st.integers(-(2**62), 2**62)))

        @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(edit, min_size=1, max_size=3), st.sampled_from(sorted(fns)))
        def fuzz(edits, name):
            bad, strict = kb, True
            for slot, pos, value in edits:
                edited = corrupt(bad, slot, pos, value)
                if edited is not None:
                    bad, strict = edited, strict and out_of_range(kb, slot, value)
            record(name, edits[0][0], edits[0][1], edits[0][2], outcome(fns[name], bad, expected[name]), strict)

        fuzz()
    print(json.dumps({"backend": backend, "outcomes": counts, "wrong": wrong[:20]}))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
