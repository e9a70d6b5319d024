"""The KB layout and the shared constants (csrc/kb_layout.h) as Python sees them
(kgqa_kernels.layout) and as the compiled kernels see them (the constants() op); and the tensors
SparseKB builds slot by slot. Slots are found by name, never by number."""
import pytest
import torch

import cases
from kgqa_kernels import layout

ENTITY_ORDERS = ("OBJ", "SUBJ")  # orders whose rows are entities; "REL" rows are relations


def test_the_python_view_equals_the_compiled_constants_in_order():
    view = layout.as_dict()
    assert list(view) == [*layout.SLOT_NAMES, "NUM_KB_SLOTS", *layout.CONSTANT_NAMES]
    assert list(view.values()) == list(torch.ops.kgqa_kernels.constants())
    assert all(getattr(layout, name) == value for name, value in view.items())


def test_slots_number_the_tensors_of_a_kb_in_order():
    slots = [getattr(layout, name) for name in layout.SLOT_NAMES]
    assert slots == list(range(layout.NUM_KB_SLOTS))
    assert len(set(layout.SLOT_NAMES)) == layout.NUM_KB_SLOTS


def test_shared_constants_are_consistent():
    assert layout.REL_CHUNK > 0
    assert 1 <= layout.MAX_TIE_BRANCHES <= torch.iinfo(torch.uint8).bits  # one bit per branch in a uint8
    assert layout.GPU_MAX_BRANCHES >= layout.MAX_TIE_BRANCHES


@pytest.mark.parametrize("inverse", [False, True])
def test_pull_slots_name_one_order(inverse):
    order = "SUBJ" if inverse else "OBJ"
    names = tuple(layout.SLOT_NAMES[slot] for slot in layout.pull_slots(inverse))
    assert names == (f"{order}_PTR", f"{order}_{'OBJ' if inverse else 'SUBJ'}", f"{order}_REL", f"{order}_WEIGHT")


@pytest.mark.parametrize("kb_name", ["edge", "edge-weighted", "edge-int64", "power-law", "chunked"])
def test_every_slot_is_one_tensor_of_a_sparse_kb(kb_name):
    kb = cases.kb(kb_name)
    tensors = kb.tensors()
    assert len(tensors) == layout.NUM_KB_SLOTS
    E, R, T = kb.num_entities, kb.num_relations, kb.num_facts
    for name in layout.SLOT_NAMES:
        t = kb.tensor(name)
        assert t is tensors[getattr(layout, name)], name
        assert t.dim() == 1, name
        order, _, part = name.partition("_")
        if name == "REL_CHUNK_PTR":
            assert t.dtype == torch.int64 and t.numel() == R + 1
        elif name == "REL_CHUNK_REL":
            assert t.dtype == torch.int64 and t.numel() == int(kb.tensor("REL_CHUNK_PTR")[-1])
        elif part == "PTR":  # row pointers over the facts of each entity or relation
            assert t.dtype == torch.int64 and t.numel() == (E if order in ENTITY_ORDERS else R) + 1, name
            assert t[0] == 0 and t[-1] == T and bool((t.diff() >= 0).all()), name
        elif part == "WEIGHT":  # float32 per fact, or empty for an unweighted KB
            assert t.dtype == torch.float32 and t.numel() == (0 if kb.weight is None else T), name
        else:  # ids: entities (SUBJ, OBJ) or relations (REL), in the KB's index dtype
            assert part in ("SUBJ", "OBJ", "REL"), name
            assert t.dtype == kb.index_dtype and t.numel() == T, name
            assert bool(((t >= 0) & (t < (R if part == "REL" else E))).all()), name


@pytest.mark.parametrize("kb_name", ["edge", "power-law", "chunked"])
def test_the_chunk_table_cuts_each_relation_into_chunks_of_REL_CHUNK_facts(kb_name):
    kb = cases.kb(kb_name)
    facts = kb.tensor("REL_PTR").diff()  # facts of each relation
    chunk_ptr, chunk_rel = kb.tensor("REL_CHUNK_PTR"), kb.tensor("REL_CHUNK_REL")
    expected_chunks = (facts + layout.REL_CHUNK - 1) // layout.REL_CHUNK
    assert torch.equal(chunk_ptr.diff(), expected_chunks)
    assert torch.equal(chunk_rel, torch.repeat_interleave(torch.arange(kb.num_relations), expected_chunks))
    if kb_name == "chunked":
        assert int(expected_chunks.max()) > 1  # a relation spans several chunks
