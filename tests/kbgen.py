"""Small KBs for the tests, each built to hit the edge cases the kernels must get right."""
import torch

import kgqa_kernels as kk
from kgqa_kernels import synthetic


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


# (dtype, atol, rtol) against a float64 computation of the same inputs.
DTYPE_TOLERANCES = [
    (torch.float64, 1e-12, 1e-12),
    (torch.float32, 1e-5, 1e-5),
    (torch.bfloat16, 2e-2, 2e-2),
    (torch.float16, 2e-3, 2e-3),
]


def rounded_follow_intersect(xs, rs, kb, inverse, tnorm, dtype):
    """(the unfused reference of follow_intersect, the k follow outputs) on float64 leaves xs and rs,
    each follow output rounded to ``dtype`` first, as the kernels decide ties in the input dtype."""
    from kgqa_kernels import reference

    ys = [reference.follow_dense(x, r, kb, inverse=inverse).to(dtype).double() for x, r in zip(xs, rs)]
    return reference.intersect(*ys, tnorm=tnorm), ys
