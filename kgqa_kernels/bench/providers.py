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
from .workloads import X_KINDS

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass
class Provider:
    name: str
    op: str  # "follow" or "follow_intersect"
    fn: Callable  # (ctx: KBContext, xs, rs) -> output
    # Bytes of intermediates one call holds at once beyond inputs and output, to skip a provider
    # that cannot fit (what is reported is measured).
    extra_bytes: Callable = lambda kb, batch, k, backward: 0
    applies: Callable = lambda kb, x_kind, mode: True  # mode: a Mode
    note: str = ""
    same_op: bool = True  # False for the SpMM floor, which computes something else


@dataclass(frozen=True)
class Mode:
    """What one measured call runs: `hops` follows chained (each hop's output is the next hop's x,
    hop h follows rs[h]), forward only or forward + backward, and the gradient the backward starts
    from: "sum" (out.sum().backward(), an expanded gradient) or "grad" (out.backward(g) with g a
    materialised row-major [B, E] tensor, as a model's loss hands back)."""
    hops: int = 1
    backward: bool = False
    upstream: str = "sum"


MODES = {
    "forward": Mode(),
    "fwd+bwd": Mode(backward=True),
    "fwd+bwd-grad": Mode(backward=True, upstream="grad"),
    "2-hop-forward": Mode(hops=2),
    "2-hop-fwd+bwd-grad": Mode(hops=2, backward=True, upstream="grad"),
}


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
        return self.get(("input", "sparse", x.data_ptr(), tuple(x.shape)), lambda: x.detach().to_sparse())

    def batch_inner(self, x):
        """x [B, E] as the contiguous [E, B] matrix a CSR SpMM reads best: x.t() itself when x is
        batch-innermost already, else a copy made once per input buffer (outside the timing, by
        the warm-up call)."""
        if x.t().is_contiguous():
            return x.t()
        return self.get(("input", "batch-inner", x.data_ptr(), tuple(x.shape)), lambda: x.detach().t().contiguous())

    def clear_inputs(self):
        """Forget what was derived from one group's inputs: their buffers' addresses are reused."""
        for key in [k for k in self._cache if isinstance(k, tuple) and k[0] == "input"]:
            del self._cache[key]

    def dense(self):
        return self.get("dense", lambda: reference.dense_relation_tensor(self.kb))


def _forward(provider: Provider, ctx, xs, rs, hops: int):
    if hops == 1:
        return provider.fn(ctx, xs, rs)
    y = xs[0]
    for r in rs[:hops]:  # every provider chains the same way: its own output is its next x
        y = provider.fn(ctx, [y], [r])
    return y


def run(provider: Provider, ctx, xs, rs, mode: Mode, grad_x: bool, grad_out=None):
    """One call in `mode`: the forward, or forward + backward into r and (if grad_x) x, starting
    from sum() or from grad_out (a materialised [B, E] tensor, made once outside the timing).
    Returns the output, or (output, gradients of xs + rs)."""
    xs = [x.detach().requires_grad_(mode.backward and grad_x) for x in xs]
    rs = [r.detach().requires_grad_(mode.backward) for r in rs]
    if not mode.backward:
        with torch.no_grad():
            return _forward(provider, ctx, xs, rs, mode.hops)
    out = _forward(provider, ctx, xs, rs, mode.hops)
    if mode.upstream == "grad":
        out.backward(grad_out)
    else:
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
                     applies=lambda kb, x_kind, mode: x_kind == "one-hot", note="the dense pull on the same one-hot x"),
            Provider(f"kgqa:{b}-sparse-x", "follow",
                     lambda c, xs, rs, b=b: ops.follow(c.sparse(xs[0]), rs[0], c.kb, backend=b),
                     # A chained hop's x is the previous output, which would be converted inside the timing.
                     applies=lambda kb, x_kind, mode: x_kind == "one-hot" and mode.hops == 1,
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
                 applies=lambda kb, x_kind, mode: kb.num_relations * kb.num_entities**2 * 4 <= 2**30,
                 note="small KBs only: [R, E, E] dense"),
        Provider("csr-spmm-floor", "follow", lambda c, xs, rs: torch.sparse.mm(c.spmm_matrix(), xs[0].t()).t(),
                 applies=_floor_applies,
                 note="plain CSR SpMM, same nonzeros and width, no relations: strictly less work; x as given",
                 same_op=False),
        # The floor on its best layout: a row-major x copied to batch-innermost outside the timing.
        # Forward only: the copy is a constant, so no gradient could flow back into x.
        Provider("csr-spmm-floor-bi", "follow",
                 lambda c, xs, rs: torch.sparse.mm(c.spmm_matrix(), c.batch_inner(xs[0])).t(),
                 applies=lambda kb, x_kind, mode: (X_KINDS[x_kind].dense and X_KINDS[x_kind].row_major
                                                   and not mode.backward),
                 note="the floor with x copied to batch-innermost outside the timing", same_op=False),
    ]
    return provs


def _floor_applies(kb, x_kind, mode):
    # Dense x only (first hops are the push's); a backward needs a differentiable x, since the
    # floor has no relation weights to differentiate.
    return X_KINDS[x_kind].dense and (not mode.backward or X_KINDS[x_kind].requires_grad)


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


# ---- the set ops of questions that count or compare (count, select_extreme, entity_values) --------

@dataclass
class SetOpProvider:
    """Who computes a set op in benchmarks/test_count.py, test_select_extreme.py and
    test_entity_values.py: ``fn`` takes the op's own arguments (no ``backend=``)."""
    name: str
    op: str  # "count" | "select_extreme" | "entity_values"
    fn: Callable


def set_op_providers(device, op: str) -> list:
    """Our backends on ``device`` against the reference: the plain torch formulation (a sum; a masked
    max and where; a gather of the facts' values and two index_add_ scatters)."""
    public, plain = getattr(ops, op), getattr(reference, op)
    provs = [SetOpProvider(f"kgqa:{b}", op, lambda *a, b=b, **kw: public(*a, backend=b, **kw))
             for b in _our_backends(device)]
    return provs + [SetOpProvider("torch", op, plain)]
