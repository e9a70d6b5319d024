"""entity_values (the value of each entity through relations, two follows): forward and gradients
against the reference's gather/scatter on every dtype, both directions, weighted KBs, NaN values and
entities no fact reaches; gradcheck; torch.compile; a KB of a million entities (no dense [E, E]); a
release-year example with select_extreme; bad input. Every backend through the public API."""
import pytest
import torch

import cases
import kgqa_kernels as kk
from cases import assert_close, assert_compiled_matches_eager, leaves, matrix
from kgqa_kernels import reference

NAN = float("nan")


def _values(E, dtype=torch.float64, seed=0, device="cpu"):
    """Integers in [1900, 2020) (exact in every dtype but bfloat16, which rounds both sides alike),
    NaN for about a third of the entities."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(1900, 2020, (E,), generator=g).double()
    v[torch.rand(E, generator=g) < 0.35] = NAN
    return v.to(dtype).to(device)


def _relations(B, R, dtype=torch.float64, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    r = torch.rand(B, R, generator=g, dtype=torch.float64) + 0.1
    r[0] = 0
    r[0, 1] = 1.0  # example 0: one relation only (a one-hot, as for a release year)
    return r.to(dtype).to(device)


@matrix("dtype")
def test_forward_and_gradients_match_the_reference(backend, device, dtype):
    _check_against_the_reference(backend, device, dtype, "edge-weighted", False)


def test_hubs_and_the_inverse_direction_match_the_reference(backend, device):
    """Entities with many facts (a power-law KB's hubs), facts read object -> subject: one dtype."""
    _check_against_the_reference(backend, device, torch.float64, "power-law", True)


def _check_against_the_reference(backend, device, dtype, kb_name, inverse):
    kb = cases.kb_for(backend, device, kb_name)
    values = _values(kb.num_entities, dtype, device=device).requires_grad_()
    r = _relations(3, kb.num_relations, dtype, device=device).requires_grad_()
    out = kk.entity_values(values, r, kb, inverse=inverse, backend=backend)
    assert out.shape == (3, kb.num_entities) and out.dtype == dtype
    v_ref, r_ref = leaves([values, r], torch.float64)
    expected = reference.entity_values(v_ref, r_ref, kb, inverse=inverse)
    assert torch.equal(out.isnan().cpu(), expected.isnan().cpu())  # the same entities have no value
    assert expected.isnan().any() and not expected.isnan().all()
    assert_close(out, expected, dtype, atol_factor=2000)  # values near 2000: absolute error scales
    g = torch.rand(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype).to(device)
    got = torch.autograd.grad(out.nan_to_num(0), [values, r], g)
    want = torch.autograd.grad(expected.nan_to_num(0), [v_ref, r_ref], g.double())
    assert not got[0].isnan().any() and not got[1].isnan().any()
    assert_close(got[0], want[0], dtype)
    assert_close(got[1], want[1], dtype, atol_factor=2000)


def test_gradcheck_float64(backend, device):
    kb = cases.kb_for(backend, device, "tiny-weighted")
    values = _values(kb.num_entities, device=device).div(1000).requires_grad_()
    # r > 0: an r of 0 that a probe makes positive turns an entity's NaN (no fact) into a value.
    r = (torch.rand(2, kb.num_relations, dtype=torch.float64) + 0.1).to(device).requires_grad_()

    def fn(values, r):
        return kk.entity_values(values, r, kb, backend=backend).nan_to_num(0)

    # fast_mode everywhere: each probe is two follows (the full Jacobian took 5 s on the CPU), and
    # the gradients are compared with the reference's in full above.
    assert torch.autograd.gradcheck(fn, (values, r), fast_mode=True)


def test_release_year_and_the_latest_film(backend, device):
    # films 0..3, years 4 (1999), 5 (2003), 6 (2010); relation 0: film -> release year, relation 1:
    # film -> actor 7. Film 2 has two years (its value is their mean), film 3 none.
    s = torch.tensor([0, 1, 2, 2, 0, 1, 3])
    p = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    o = torch.tensor([4, 5, 5, 6, 7, 7, 7])
    kb = kk.SparseKB(s, p, o, 8, 2).to(device)
    values = torch.tensor([NAN] * 4 + [1999.0, 2003.0, 2010.0, NAN], device=device)
    r = torch.tensor([[1.0, 0.0]], device=device)
    years = kk.entity_values(values, r, kb, backend=backend)
    assert years[0, :4].tolist()[:3] == [1999.0, 2003.0, 2006.5] and years[0, 3:].isnan().all()
    # "the latest film starring 7": the films of 7 (0, 1, 3), then the one with the largest year.
    films = kk.follow(torch.eye(8, device=device)[7:8], torch.tensor([[0.0, 1.0]], device=device), kb,
                      inverse=True, backend=backend)
    latest = kk.select_extreme(films, years[0], backend=backend)
    assert latest[0].nonzero().flatten().tolist() == [1]
    # Years read the other way (year -> films): the mean year of the films that reached them.
    back = kk.entity_values(torch.tensor([1.0, 2.0, 3.0, 4.0] + [NAN] * 4, device=device), r, kb, inverse=True,
                            backend=backend)
    assert back[0, 4:7].tolist() == [1.0, 2.5, 3.0]


def test_a_million_entities_needs_no_dense_matrix():
    """A size test, so on the C++ CPU kernels only: the emulation and the interpreter run each thread
    or program in Python-speed loops."""
    backend = "cpu"
    E = 1_000_000  # a dense [E, E] would be 4 TB
    s, o = torch.arange(0, 2000), torch.arange(E - 2000, E)
    kb = kk.SparseKB(s, torch.zeros(2000, dtype=torch.long), o, E, 1)
    values = torch.full((E,), NAN)
    values[E - 2000:] = torch.arange(2000.0)
    out = kk.entity_values(values, torch.ones(2, 1), kb, backend=backend)
    assert out[:, :2000].tolist() == [list(map(float, range(2000)))] * 2 and out[:, 2000:].isnan().all()


def test_torch_compile_fullgraph(backend, device):
    kb = cases.kb("edge-weighted", device)
    values = _values(kb.num_entities, device=device).requires_grad_()
    # r > 0: an r of 0 that a probe makes positive turns an entity's NaN (no fact) into a value.
    r = (torch.rand(2, kb.num_relations, dtype=torch.float64) + 0.1).to(device).requires_grad_()

    def fn(values, r):
        return kk.entity_values(values, r, kb, backend=backend).nan_to_num(0).sum()

    assert_compiled_matches_eager(fn, [values, r])


def test_bad_input():
    kb = cases.kb("tiny")
    E, R = kb.num_entities, kb.num_relations
    v, r = torch.rand(E), torch.rand(2, R)
    for args, kwargs, err, match in [
        ((torch.rand(2, E), r, kb), {}, ValueError, rf"values must be \[E={E}\] like r"),
        ((torch.rand(E + 1), r, kb), {}, ValueError, r"values must be"),
        ((v.double(), r, kb), {}, TypeError, r"values has dtype torch.float64"),
        ((torch.arange(E), r, kb), {}, TypeError, r"values must be float32"),
        ((v, torch.rand(2, R + 1), kb), {}, ValueError, r"r must be \[B, num_relations"),
        ((v, r.long(), kb), {}, TypeError, r"r must be float32"),
        ((v, r, "kb"), {}, TypeError, r"kb must be a kgqa_kernels.SparseKB"),
        ((v, r, kb), {"inverse": "yes"}, TypeError, r"inverse must be a bool"),
    ]:
        with pytest.raises(err, match=match):
            kk.entity_values(*args, **kwargs)
