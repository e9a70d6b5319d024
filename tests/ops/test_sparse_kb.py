"""SparseKB: duplicates, the three fact orders and the chunk table every op reads, index dtypes,
and bad facts. Slots are named (kgqa_kernels.layout), never numbered."""
import numpy as np
import pytest
import torch

import kgqa_kernels as kk
from cases import edge_case_kb, random_facts, random_kb
from kgqa_kernels import layout


def _facts(kb):
    return set(zip(kb.subj.tolist(), kb.rel.tolist(), kb.obj.tolist()))


def test_duplicates_are_removed_and_counted():
    kb = kk.SparseKB([0, 1, 0, 0], [0, 0, 0, 1], [1, 2, 1, 1], 3, 2)
    assert kb.num_facts == 3
    assert kb.num_duplicates_removed == 1
    assert _facts(kb) == {(0, 0, 1), (1, 0, 2), (0, 1, 1)}


def test_weighted_duplicates_sum_like_coalesce():
    kb = kk.SparseKB([0, 0, 1], [0, 0, 0], [1, 1, 0], 2, 1, weight=[0.25, 0.5, 2.0])
    assert kb.num_facts == 2
    got = {(s, o): w for s, o, w in zip(kb.subj.tolist(), kb.obj.tolist(), kb.weight.tolist())}
    assert got == {(0, 1): 0.75, (1, 0): 2.0}


def test_duplicates_sum_counts_each_copy_and_error_names_the_first():
    # TransferNet's incidence matrices count a fact listed three times as 3: duplicates="sum".
    s, p, o = [0, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 2, 1, 1, 1]
    kb = kk.SparseKB(s, p, o, 3, 2, duplicates="sum")
    got = {(s, p, o): w for s, p, o, w in zip(kb.subj.tolist(), kb.rel.tolist(), kb.obj.tolist(), kb.weight.tolist())}
    assert got == {(0, 0, 1): 3.0, (1, 0, 2): 1.0, (0, 1, 1): 1.0} and kb.num_duplicates_removed == 2
    x = torch.tensor([[1.0, 0.0, 0.0]])
    assert kk.follow(x, torch.ones(1, 2), kb).tolist() == [[0.0, 4.0, 0.0]]  # 3 copies via rel 0, 1 via rel 1
    assert kk.follow(x, torch.ones(1, 2), kk.SparseKB(s, p, o, 3, 2)).tolist() == [[0.0, 2.0, 0.0]]  # "merge"
    weighted = kk.SparseKB([0, 0], [0, 0], [1, 1], 2, 1, weight=[0.25, 0.5], duplicates="sum")
    assert weighted.weight.tolist() == [0.75]
    assert kk.SparseKB([0, 1], [0, 0], [1, 0], 2, 1, duplicates="sum").weight is None  # nothing repeated
    with pytest.raises(ValueError, match=r"2 facts repeat an earlier one, the first \(subj, rel, obj\) = \(0, 0, 1\)"):
        kk.SparseKB(s, p, o, 3, 2, duplicates="error")
    assert kk.SparseKB([0, 1], [0, 0], [1, 0], 2, 1, duplicates="error").num_facts == 2
    with pytest.raises(ValueError, match="duplicates must be one of"):
        kk.SparseKB(s, p, o, 3, 2, duplicates="drop")


def test_integer_like_sizes_are_taken():
    kb = kk.SparseKB([0, 1], [0, 1], [1, 2], np.int64(3), torch.tensor(2))
    assert (kb.num_entities, kb.num_relations) == (3, 2)
    assert type(kb.num_entities) is int and type(kb.num_relations) is int
    for bad in (True, 2.0, torch.tensor(2.0), torch.tensor([2, 3]), np.float32(3), "3"):
        with pytest.raises(ValueError, match="num_relations must be a positive int"):
            kk.SparseKB([0, 1], [0, 1], [1, 2], 3, bad)


# order (the prefix of its slot names) -> (fact from (row, a, b), sort key within the order)
ORDERS = {
    "OBJ": (lambda row, a, b: (a, b, row), lambda row, a, b: (row, b, a)),  # by object: (o, p, s)
    "SUBJ": (lambda row, a, b: (row, b, a), lambda row, a, b: (row, b, a)),  # by subject: (s, p, o)
    "REL": (lambda row, a, b: (a, row, b), lambda row, a, b: (row, a, b)),  # by relation: (p, s, o)
}
COLUMNS = {"OBJ": ("SUBJ", "REL"), "SUBJ": ("OBJ", "REL"), "REL": ("SUBJ", "OBJ")}  # a, b of each order


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.parametrize("weighted", [False, True])
def test_the_three_orders_index_the_same_facts(order, weighted):
    kb = random_kb(50, 7, 400, weighted=weighted)
    weights = kb.weight.tolist() if weighted else [1.0] * kb.num_facts
    facts = dict(zip(zip(kb.subj.tolist(), kb.rel.tolist(), kb.obj.tolist()), weights))
    a_name, b_name = COLUMNS[order]
    ptr, a, b, w = (kb.tensor(f"{order}_{part}") for part in ("PTR", a_name, b_name, "WEIGHT"))
    assert ptr.numel() == (kb.num_relations if order == "REL" else kb.num_entities) + 1
    rows = torch.repeat_interleave(torch.arange(ptr.numel() - 1), ptr.diff()).tolist()
    as_fact, key = ORDERS[order]
    keys = [key(*t) for t in zip(rows, a.tolist(), b.tolist())]
    assert keys == sorted(keys)
    got = {as_fact(*t): wf for t, wf in zip(zip(rows, a.tolist(), b.tolist()), w.tolist() if weighted else weights)}
    assert got == facts


def test_relation_chunks_cover_each_relation_in_order():
    chunk = layout.REL_CHUNK
    s = torch.zeros(2 * chunk + 5, dtype=torch.long)
    o = torch.arange(2 * chunk + 5)
    p = torch.zeros_like(s)
    p[-3:] = 2  # relation 0: two full chunks and a partial one; relation 1: none; relation 2: one
    kb = kk.SparseKB(s, p, o, 2 * chunk + 5, 3)
    assert kb.tensor("REL_CHUNK_PTR").tolist() == [0, 3, 3, 4]
    assert kb.tensor("REL_CHUNK_REL").tolist() == [0, 0, 0, 2]


def test_index_dtypes():
    assert random_kb().index_dtype == torch.int32
    kb64 = random_kb(index_dtype=torch.int64)
    ids = [name for name in layout.SLOT_NAMES if not name.endswith(("_PTR", "_WEIGHT"))]
    assert ids and all(kb64.tensor(name).dtype == torch.int64 for name in ids)
    assert all(kb64.tensor(name).dtype == torch.int64 for name in layout.SLOT_NAMES if name.endswith("_PTR"))


def test_accepts_lists_and_triples_and_repr():
    kb = kk.SparseKB.from_triples(torch.tensor([[0, 0, 1], [1, 1, 0]]), 2, 2)
    assert kb.num_facts == 2 and "num_facts=2" in repr(kb)
    assert kb.to("cpu") is kb


def test_lexsort_falls_back_when_the_combined_key_would_overflow():
    from kgqa_kernels.kb import _lexsort

    s, p, o = random_facts(30, 4, 200, seed=5)
    fast = _lexsort((s, p, o), (30, 4, 30))
    slow = _lexsort((s, p, o), (2**40, 4, 2**40))  # 2**82 > int64: stable sorts instead
    key = (s * 4 + p) * 30 + o
    assert torch.equal(key[fast], key[slow]) and bool((key[fast].diff() >= 0).all())


def test_int32_indices_refuse_ids_beyond_int32():
    with pytest.raises(ValueError, match="int32 cannot hold"):
        kk.SparseKB([0], [0], [0], 2**31 + 5, 3, index_dtype=torch.int32)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(subj=[0.0, 1.0]), TypeError, "subj must hold integer ids"),
        (dict(obj=[[0, 1]]), ValueError, "obj must be 1-D"),
        (dict(rel=[0]), ValueError, "one entry per fact"),
        (dict(subj=[], rel=[], obj=[]), ValueError, "no facts"),
        (dict(subj=[0, -1]), ValueError, r"subj\[1\] = -1 is out of range"),
        (dict(obj=[0, 3]), ValueError, r"obj\[1\] = 3 is out of range.*num_entities=3"),
        (dict(rel=[0, 2]), ValueError, r"rel\[1\] = 2 is out of range.*num_relations=2"),
        (dict(num_entities=0), ValueError, "num_entities must be a positive int"),
        (dict(num_relations=1.5), ValueError, "num_relations must be a positive int"),
        (dict(weight=[1, 2]), TypeError, "weight must be floating point"),
        (dict(weight=[1.0]), ValueError, "weight must have one entry per fact"),
        (dict(subj=[True, False]), TypeError, "subj must hold integer ids"),
        (dict(index_dtype=torch.int16), TypeError, "index_dtype"),
    ],
)
def test_bad_facts_raise_naming_the_argument(kwargs, err, match):
    args = dict(subj=[0, 1], rel=[0, 1], obj=[1, 2], num_entities=3, num_relations=2)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        kk.SparseKB(**args)


def test_a_weight_that_requires_grad_makes_a_trainable_kb():
    """Kept as given and mapped again at every use, so the KB holds no graph between calls; the index
    tensors stay guarded, the weight is meant to change in place (an optimizer's step)."""
    w = torch.tensor([0.5, 2.0, 1.0], requires_grad=True)
    kb = kk.SparseKB([1, 0, 0], [0, 1, 1], [2, 1, 1], 3, 2, weight=w)  # facts 1 and 2 merge
    assert kb.trainable and kb.num_facts == 2 and kb.num_input_facts == 3
    assert kb.weight.requires_grad and torch.equal(kb.weight.detach(), torch.tensor([3.0, 0.5]))
    t = kb.tensors()
    assert t[layout.SUBJ_WEIGHT].requires_grad and not t[layout.OBJ_WEIGHT].requires_grad
    with torch.no_grad():
        w.mul_(2)
    assert torch.equal(kb.tensors()[layout.OBJ_WEIGHT], torch.tensor([6.0, 1.0]))  # objects 1, then 2
    assert torch.equal(kb.tensor("OBJ_WEIGHT"), torch.tensor([6.0, 1.0]))
    kb.tensors()[layout.OBJ_SUBJ][0] = 0
    with pytest.raises(RuntimeError, match="OBJ_SUBJ was modified in place"):
        kb.tensors()
    plain = kk.SparseKB([0, 1], [0, 1], [1, 2], 3, 2, weight=w.detach()[:2])
    assert not plain.trainable and not plain.weight.requires_grad


def test_with_weight_shares_the_index_and_equals_a_fresh_build():
    s, p, o = random_facts(30, 4, 120, seed=3)  # with repeats, which merge
    kb = kk.SparseKB(s, p, o, 30, 4)
    w = torch.rand(120, generator=torch.Generator().manual_seed(1))
    fresh, shared = kk.SparseKB(s, p, o, 30, 4, weight=w), kb.with_weight(w)
    assert kb.num_duplicates_removed > 0 and kb.weight is None
    for slot, a, b, c in zip(layout.SLOT_NAMES, fresh.tensors(), shared.tensors(), kb.tensors()):
        assert torch.equal(a, b), slot
        if not slot.endswith("WEIGHT"):
            assert b.data_ptr() == c.data_ptr(), slot
    assert torch.equal(shared.weight, fresh.weight)
    again = shared.with_weight(w * 2)
    assert torch.equal(again.weight, fresh.weight * 2) and torch.equal(shared.weight, fresh.weight)


@pytest.mark.parametrize("weight, err, match", [
    (torch.ones(3), ValueError, r"with_weight\(\): weight must have one entry per fact, shape \(4,\)"),
    (torch.ones(4, dtype=torch.int64), TypeError, "weight must be floating point"),
    (torch.ones(4, device="meta"), ValueError, "weight is on meta"),
])
def test_with_weight_checks_the_weight(weight, err, match):
    kb = kk.SparseKB([0, 1, 2, 2], [0, 0, 1, 1], [1, 2, 0, 0], 3, 2)
    with pytest.raises(err, match=match):
        kb.with_weight(weight)


def test_a_trainable_kb_is_not_copied_to_another_device():
    kb = kk.SparseKB([0, 1], [0, 1], [1, 2], 3, 2, weight=torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match=r"with_weight\(weight.to\(device\)\)"):
        kb.to("meta")


def test_rejects_ids_on_another_device():
    with pytest.raises(ValueError, match="rel is on meta"):
        kk.SparseKB(torch.tensor([0]), torch.tensor([0], device="meta"), torch.tensor([0]), 2, 1)


def test_tensor_by_an_unknown_slot_name_raises():
    with pytest.raises(ValueError, match="slot must be one of"):
        random_kb().tensor("OBJ_POINTER")


def test_edge_case_kb_has_its_edge_cases():
    kb = edge_case_kb()
    used = set(kb.subj.tolist()) | set(kb.obj.tolist())
    assert {0, 19} <= used and not (set(range(5, 10)) & used)
    assert 4 not in set(kb.rel.tolist())
    assert bool(((kb.subj == kb.obj)).any())
    assert kb.num_duplicates_removed >= 2


def test_random_facts_are_seeded():
    assert all(torch.equal(a, b) for a, b in zip(random_facts(9, 2, 5, 3), random_facts(9, 2, 5, 3)))


def test_a_kb_that_forgot_its_input_order_cannot_be_reweighted():
    """ShardedSparseKB's blocks drop the map (4 bytes a fact) they never use."""
    kb = kk.SparseKB([2, 0], [0, 0], [1, 2], 3, 1)
    kb.forget_input_order()
    with pytest.raises(ValueError, match=r"forgot the order its facts were given in"):
        kb.with_weight(torch.ones(2))
    trainable = kk.SparseKB([2, 0], [0, 0], [1, 2], 3, 1, weight=torch.ones(2, requires_grad=True))
    with pytest.raises(ValueError, match="the fact weights train"):
        trainable.forget_input_order()


def test_unweighted_shares_the_index():
    w = torch.tensor([0.5, 2.0], requires_grad=True)
    kb = kk.SparseKB([0, 1], [0, 1], [1, 2], 3, 2, weight=w)
    unit = kb.unweighted()
    assert unit.weight is None and not unit.trainable and unit is kb.unweighted()
    for slot, a, b in zip(layout.SLOT_NAMES, kb.tensors(), unit.tensors()):
        if not slot.endswith("WEIGHT"):
            assert a.data_ptr() == b.data_ptr(), slot
    plain = kk.SparseKB([0, 1], [0, 1], [1, 2], 3, 2)
    assert plain.unweighted() is plain
