"""Who computes the op in a benchmark: our kernels and the torch baselines, all measured in the
same run. Each provider turns (xs, rs) into a callable that runs one forward or forward+backward."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .. import ops, reference
from ..backends import available_backends
from ..kb import SparseKB

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass
class Provider:
    name: str
    op: str  # "follow" or "follow_intersect"
    fn: Callable  # (ctx: KBContext, xs, rs) -> output
    # Bytes of intermediates one call holds at once beyond inputs and output, to skip a provider
    # that cannot fit (what is reported is measured).
    extra_bytes: Callable = lambda kb, batch, k, backward: 0
    applies: Callable = lambda kb, x_kind: True
    note: str = ""
    same_op: bool = True  # False for the SpMM floor, which computes something else


class KBContext:
    """A KB with the matrices each baseline precomputes once, built on first use."""

    def __init__(self, kb: SparseKB):
        self.kb = kb
        self._cache = {}

    def get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def reifkb(self, layout):
        def build():
            m_subj, m_rel, m_obj = reference.incidence_matrices(self.kb, layout)
            m_obj_t = m_obj.t().to_sparse_csr() if layout == torch.sparse_csr else m_obj.t().coalesce()
            return m_subj, m_rel, m_obj_t

        return self.get(("reifkb", layout), build)

    def spmm_matrix(self):
        """A plain [E, E] CSR matrix with the KB's nonzeros (objects x subjects, values 1)."""
        def build():
            t = self.kb.tensors()
            e = self.kb.num_entities
            return torch.sparse_csr_tensor(t[0], t[1].to(torch.int64), torch.ones(self.kb.num_facts, device=self.kb.device), (e, e),
                                           check_invariants=False)

        return self.get("spmm", build)

    def sparse(self, x):
        """x as a sparse COO tensor, converted once per input buffer."""
        return self.get(("sparse", x.data_ptr(), tuple(x.shape)), lambda: x.detach().to_sparse())

    def dense(self):
        return self.get("dense", lambda: reference.dense_relation_tensor(self.kb))


def run(provider: Provider, ctx, xs, rs, backward: bool, grad_x: bool):
    """One forward, or forward + backward of sum(output) into r and (if grad_x) x."""
    xs = [x.detach().requires_grad_(backward and grad_x) for x in xs]
    rs = [r.detach().requires_grad_(backward) for r in rs]
    if not backward:
        with torch.no_grad():
            return provider.fn(ctx, xs, rs)
    out = provider.fn(ctx, xs, rs)
    out.sum().backward()
    return out, [t.grad for t in xs + rs]


def _fact_matrix_bytes(forward, backward):
    """`forward` / `backward` live [T, B] float32 matrices at the peak (measured on small KBs)."""
    return lambda kb, batch, k, bw: (backward if bw else forward) * k * kb.num_facts * batch * 4


def _our_backends(device):
    # Triton on CPU tensors is its interpreter, and "emulated" runs the CUDA kernels thread by thread
    # on the CPU: test harnesses thousands of times slower, not providers to time.
    interpreted = torch.device(device).type == "cpu"
    return [b for b in available_backends(device)
            if b not in ("reference", "emulated") and not (b == "triton" and interpreted)]


def follow_providers(device) -> list:
    provs = []
    for b in _our_backends(device):
        provs += [
            Provider(f"kgqa:{b}", "follow", lambda c, xs, rs, b=b: ops.follow(xs[0], rs[0], c.kb, backend=b),
                     note="direction auto: push for the one-hot x, pull for the dense x"),
            Provider(f"kgqa:{b}-pull", "follow",
                     lambda c, xs, rs, b=b: ops.follow(xs[0], rs[0], c.kb, backend=b, direction="pull"),
                     applies=lambda kb, x_kind: x_kind == "one-hot", note="the dense pull on the same one-hot x"),
            Provider(f"kgqa:{b}-sparse-x", "follow",
                     lambda c, xs, rs, b=b: ops.follow(c.sparse(xs[0]), rs[0], c.kb, backend=b),
                     applies=lambda kb, x_kind: x_kind == "one-hot",
                     note="the seeds as a torch.sparse x (push), converted outside the timing"),
        ]
    for layout, tag in ((torch.sparse_coo, "coo"), (torch.sparse_csr, "csr")):
        provs.append(Provider(
            f"torch.sparse-{tag}", "follow",
            lambda c, xs, rs, layout=layout: reference.follow_sparse(xs[0], rs[0], c.kb, matrices=c.reifkb(layout)),
            extra_bytes=_fact_matrix_bytes(3, 5), note="ReifKB: (x M_subj^T * r M_rel^T) M_obj"))
    provs += [
        Provider("gather-index_add", "follow", lambda c, xs, rs: reference.follow_gather(xs[0], rs[0], c.kb),
                 extra_bytes=_fact_matrix_bytes(3, 5), note="message passing, [B, T] messages"),
        Provider("dense-einsum", "follow", lambda c, xs, rs: reference.follow_dense(xs[0], rs[0], c.kb, m=c.dense()),
                 applies=lambda kb, x_kind: kb.num_relations * kb.num_entities**2 * 4 <= 2**30,
                 note="small KBs only: [R, E, E] dense"),
        Provider("csr-spmm-floor", "follow", lambda c, xs, rs: torch.sparse.mm(c.spmm_matrix(), xs[0].t()).t(),
                 applies=lambda kb, x_kind: x_kind == "dense",
                 note="plain CSR SpMM, same nonzeros and width, no relations: strictly less work", same_op=False),
    ]
    return provs


def intersect_providers(device) -> list:
    provs = []
    for b in _our_backends(device):
        provs += [
            Provider(f"kgqa:{b}-fused", "follow_intersect",
                     lambda c, xs, rs, b=b: ops.follow_intersect(xs, rs, c.kb, backend=b)),
            Provider(f"kgqa:{b}-unfused", "follow_intersect",
                     lambda c, xs, rs, b=b: ops.intersect(*[ops.follow(x, r, c.kb, backend=b) for x, r in zip(xs, rs)],
                                                          backend=b),
                     note="k follows, then intersect"),
        ]
    csr = lambda c: lambda x, r, kb, inverse: reference.follow_sparse(x, r, kb, matrices=c.reifkb(torch.sparse_csr))  # noqa: E731
    provs.append(Provider("torch.sparse-csr", "follow_intersect",
                          lambda c, xs, rs: reference.follow_intersect(xs, rs, c.kb, form=csr(c)),
                          extra_bytes=_fact_matrix_bytes(3, 5)))
    return provs
