"""The ports in examples/ timed against their original pure-torch formulations (`kgqa-bench --suite
ports`): the NBFNet / ULTRA-style layer against index_add message passing, the TransferNet-style
steps against TransferNet's torch.sparse incidence matrices, the GNN-QE-style query traversal
against gather + scatter_reduce amax. Each measured call is one forward + backward from a
materialised upstream gradient (``torch.autograd.grad(out, params, g)``, g a random tensor made
once) into every trainable tensor of the port, fact weights included.

The models and the original formulations are the examples' own code, imported from examples/ by
path (a source checkout: examples/ is not installed with the package). Records have the fields of
the op suite's (runner.py), with op "port:<name>", and "speedup" (the original's median over ours)
on our rows; a provider that fails (an error, out of memory) is a skipped record saying so.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .measure import copy_bandwidth_gbps, frozen_heap, time_interleaved
from .progress import Progress, work_units
from .providers import _our_backends
from .runner import machine_info

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def load_example(name: str):
    """examples/<name>.py as a module (loaded once)."""
    key = f"kgqa_examples.{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = os.path.join(EXAMPLES, name + ".py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"the ports benchmark imports {path}, which is not there: run it from a source "
                                f"checkout of kgqa-kernels (examples/ is not installed with the package)")
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


@dataclass(frozen=True)
class PortSize:
    """A random graph for every port: entities (nodes), relations, facts (edges); the batch of the
    KGQA ports (TransferNet, GNN-QE) and the feature width of the NBFNet layer."""
    name: str
    entities: int
    relations: int
    facts: int
    batch: int
    dim: int


PORT_SIZES = {s.name: s for s in (
    PortSize("ports-tiny", 200, 8, 2_000, 4, 8),  # the tests' smoke size
    PortSize("ports-small", 20_000, 100, 200_000, 16, 32),
    PortSize("ports-1m", 100_000, 200, 1_000_000, 16, 64),  # the examples' --bench size
)}


@dataclass
class PortCase:
    """One port on one size: ``ours(backend)`` and ``original()`` each return a callable running
    one forward + backward, which returns (output, gradients)."""
    ours: Callable[[Optional[str]], Callable]
    original: Callable
    original_name: str
    num_entities: int
    num_relations: int
    num_facts: int
    batch: int
    follows: int  # follows (hops) per forward, for facts/s
    note: str = ""
    cleanup: Callable = lambda: None


def _grad_call(forward, params, upstream):
    def call():
        out = forward()
        return out, torch.autograd.grad(out, params, upstream)
    return call


def _nbfnet(size: PortSize, device) -> PortCase:
    from .. import compat

    m = load_example("nbfnet_layer")
    edge_index, edge_type, edge_weight, h = m.graph(size.entities, size.facts, size.relations, size.dim)
    edge_index, edge_type = edge_index.to(device), edge_type.to(device)
    edge_weight, h = (t.detach().to(device).requires_grad_() for t in (edge_weight, h))
    torch.manual_seed(0)
    theirs = m.RelationalConv(size.relations, size.dim, rspmm=m.rspmm_torch).to(device)
    upstream = torch.randn(size.entities, size.dim, device=device)

    def layer_call(layer):
        return lambda: m.run(layer, edge_index, edge_type, edge_weight, h, upstream)

    def ours(backend):
        def rspmm(*a):
            return compat.generalized_rspmm(*a, backend=backend)
        layer = m.RelationalConv(size.relations, size.dim, rspmm=rspmm).to(device)
        layer.load_state_dict(theirs.state_dict())
        return layer_call(layer)

    return PortCase(ours, layer_call(theirs), "pure torch (index_add)", size.entities, size.relations, size.facts,
                    size.dim, 1, note=f"NBFNet/ULTRA layer, width {size.dim} (the batch column)")


def _transfernet(size: PortSize, device) -> PortCase:
    import kgqa_kernels as kk

    m = load_example("transfernet_style")
    kb, e, q = m.problem(size.entities, size.relations, size.facts, size.batch, 64)
    kb, e, q = kb.to(device), e.to(device), q.to(device)
    torch.manual_seed(0)
    model = m.Steps(kb, 64, 2).to(device)
    params = [model.fact_score] + [p for lin in model.to_rel for p in lin.parameters()]
    upstream = torch.randn(size.batch, size.entities, device=device)

    def ours(backend):
        return _grad_call(lambda: model(e, q, lambda x, r, kb: kk.follow(x, r, kb, backend=backend)), params, upstream)

    return PortCase(ours, _grad_call(lambda: model(e, q, m.follow_transfernet), params, upstream),
                    "TransferNet's torch.sparse", size.entities, size.relations, kb.num_facts, size.batch, 2,
                    note="TransferNet-style, 2 steps", cleanup=m._MATRICES.clear)  # keyed by address: forget them


def _gnnqe(size: PortSize, device) -> PortCase:
    m = load_example("gnnqe_style")
    kb, (s, p, o), anchors, rels = m.problem(size.entities, size.relations, size.facts, size.batch, device=device)
    torch.manual_seed(0)
    model = m.Traversal(kb).to(device)
    upstream = torch.randn(size.batch, size.entities, device=device)

    def ours(backend):
        ops = m.Kernels(kb, backend)
        return lambda: m.run(model, anchors, rels, ops, upstream)

    original = m.Original(s, p, o, kb.num_entities)
    return PortCase(ours, lambda: m.run(model, anchors, rels, original, upstream),
                    "pure torch (gather + scatter_reduce amax)", size.entities, size.relations, kb.num_facts,
                    size.batch, 2, note="GNN-QE-style 2-hop query: max-product projections, AND, OR, NOT")


PORTS = {"nbfnet": _nbfnet, "transfernet": _transfernet, "gnnqe": _gnnqe}


def _rel_diff(a, b) -> float:
    a, b = a.detach(), b.detach()
    return float(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item())


def run_ports(ports: list, sizes: list, repeats: int = 5, device="cpu", log=print, progress: Optional[Progress] = None,
              on_case: Optional[Callable[[dict, dict], None]] = None, case_seconds: float = 60.0,
              min_repeats: int = 3) -> dict:
    """Every port on every size: ours on each backend and the original, timed in rounds; a result
    dict like runner.run_suite's, and its progress and on_case calls per finished case."""
    device = torch.device(device)
    progress = progress or Progress(stream=None)
    result = {
        "machine": machine_info(device),
        "copy_bandwidth_gbps": copy_bandwidth_gbps(device),
        "config": dict(suite="ports", ports=list(ports), sizes=list(sizes), repeats=repeats, device=str(device),
                       case_seconds=case_seconds, min_repeats=min_repeats),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "kbs": [],
        "records": [],
    }
    log(f"machine: {result['machine']}; copy bandwidth {result['copy_bandwidth_gbps']:.1f} GB/s")
    per_case = len(_our_backends(device)) + 1  # ours on each backend, and the original
    for size_key in sizes:
        size = PORT_SIZES[size_key]
        progress.expect(per_case * len(ports), per_case * len(ports) * _units(size))
    with frozen_heap():
        for size_key in sizes:
            size = PORT_SIZES[size_key]
            kb_logged = False
            for port in ports:
                t0 = time.perf_counter()
                case = PORTS[port](size, device)
                if not kb_logged:
                    result["kbs"].append({"name": size.name, "num_entities": case.num_entities,
                                          "num_relations": case.num_relations, "num_facts": case.num_facts,
                                          "build_seconds": time.perf_counter() - t0})
                    kb_logged = True
                log(f"\n{size.name}: port {port} ({case.num_entities:,} entities, {case.num_facts:,} facts, "
                    f"batch {case.batch})")
                try:
                    done = _measure_port(result, port, size, case, repeats, case_seconds, min_repeats, device, log)
                finally:
                    case.cleanup()
                progress.cases_done((f"{size.name} port:{port} {rec['provider']}", seconds, _units(size),
                                     f"skipped ({rec['skipped']})" if "skipped" in rec else "")
                                    for rec, seconds in done)
                if on_case:
                    for rec, _ in done:
                        on_case(result, rec)
                del case
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def _units(size: PortSize) -> float:
    """A port case's expected cost, for the ETA: a forward and a backward over the size's facts."""
    return work_units(size.facts * size.batch * 3)


def _measure_port(result, port, size, case, repeats, case_seconds, min_repeats, device, log) -> list:
    """Measures one port on one size; returns (record, seconds it took) per provider."""
    base = dict(kb=size.name, num_entities=case.num_entities, num_relations=case.num_relations,
                num_facts=case.num_facts, op=f"port:{port}", k=1, x="-", batch=case.batch, mode="fwd+bwd-grad")
    entries = [(f"kgqa:{b}", f"{case.note}; ours on backend {b}", lambda b=b: case.ours(b))
               for b in _our_backends(device)]  # every backend the op suite times
    entries.append((f"original: {case.original_name}", f"{case.note}; the original formulation",
                    lambda: case.original))
    measured = []
    done = []  # (record, seconds) in the table's order
    for name, note, make in entries:
        rec = dict(base, provider=name, note=note)
        result["records"].append(rec)
        t0 = time.perf_counter()
        done.append([rec, 0.0])
        try:
            call = make()
            out, grads = call()  # warm-up (and builds), and the output to compare
        except (RuntimeError, MemoryError) as e:
            rec["skipped"] = f"failed: {str(e).splitlines()[0][:200]}"
            log(f"    {name:52s} {rec['skipped']}")
            continue
        finally:
            done[-1][1] = time.perf_counter() - t0
        measured.append((rec, call, out.detach(), [g.detach() for g in grads]))
        del out, grads
    original = measured[-1] if measured and measured[-1][0]["provider"].startswith("original") else None
    for rec, _, out, grads in measured:
        if original is not None and rec is not original[0]:
            rec["max_rel_diff"] = _rel_diff(out, original[2])
            rec["max_rel_diff_grad"] = max(_rel_diff(g, g0) for g, g0 in zip(grads, original[3]))
    timings = time_interleaved([call for _, call, _, _ in measured], device, repeats=repeats,
                               max_seconds=case_seconds, min_repeats=min(min_repeats, repeats), peak=True)
    spent = {}
    for (rec, call, _, _), timing in zip(measured, timings):
        spent[id(rec)] = timing.spent_s
        rec.update(median_ms=timing.median_ms, p25_ms=timing.p25_ms, p75_ms=timing.p75_ms,
                   min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=timing.repeats)
        rec["peak_bytes"] = timing.peak_bytes
        rec["facts_per_s"] = case.num_facts * case.follows / (timing.median_ms * 1e-3)
    if original is not None:
        for rec, _, _, _ in measured:
            if rec is not original[0]:
                rec["speedup"] = original[0]["median_ms"] / rec["median_ms"]
    for rec, _, _, _ in measured:
        mem = rec["peak_bytes"]
        speed = f"  {rec['speedup']:.2f}x the original" if "speedup" in rec else ""
        log(f"    {rec['provider']:52s} {rec['median_ms']:10.2f} ms [{rec['p25_ms']:.2f}-{rec['p75_ms']:.2f}] "
            f"n={rec['repeats']}  peak {mem / 2**20 if mem is not None else float('nan'):9.1f} MiB{speed}")
    return [(rec, seconds + spent.get(id(rec), 0.0)) for rec, seconds in done]
