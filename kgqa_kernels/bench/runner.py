"""Runs a grid of (KB, op, x, batch, mode) x providers and returns one record per measurement."""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Callable, Optional

import torch

from .measure import copy_bandwidth_gbps, frozen_heap, time_interleaved
from .progress import Progress, work_units
from .providers import MODES, KBContext, follow_providers, intersect_providers, run
from .workloads import X_KINDS, expand_kb_keys, kb_specs, make_inputs, make_upstream_grad

OPS = {"follow": ("follow", 1), "follow_intersect-2": ("follow_intersect", 2), "follow_intersect-3": ("follow_intersect", 3)}


@dataclass
class Config:
    kbs: list
    batches: list
    x_kinds: list
    modes: list
    ops: list
    providers: Optional[list] = None
    repeats: int = 5
    # A provider stops repeating in a workload once its timed calls took case_seconds, after at
    # least min_repeats of them (measure.time_interleaved): a slow machine still finishes.
    case_seconds: float = 60.0
    min_repeats: int = 3
    device: str = "cpu"
    metaqa_kb: Optional[str] = None
    memory_budget_gb: Optional[float] = None
    extra: dict = field(default_factory=dict)


@dataclass
class Workload:
    """One table of the report: an op on x of one kind and batch, in one mode, and the providers
    that run it on the KB."""
    op_key: str
    k: int
    x_kind: str
    batch: int
    mode: str
    providers: list

    def units(self, num_facts: int) -> float:
        """The expected cost of one provider's case, for the ETA."""
        mode = MODES[self.mode]
        return work_units(num_facts * self.batch * self.k * mode.hops * (3 if mode.backward else 1))


def plan_workloads(cfg: Config, kb, device) -> list:
    """The workloads of one KB in the order they run, each with the providers that apply; kb: a
    SparseKB, or a KBSpec (its sizes) to plan before it is built."""
    out = []
    for op_key in cfg.ops:
        op, k = OPS[op_key]
        providers = follow_providers(device) if op == "follow" else intersect_providers(device)
        # Intersections join later hops: dense x only; chained hops are follow's.
        x_kinds = cfg.x_kinds if op == "follow" else [x for x in cfg.x_kinds if x == "dense"]
        modes = [m for m in cfg.modes if op == "follow" or MODES[m].hops == 1]
        for x_kind in x_kinds:
            # Forward runs under no_grad, so whether x requires grad changes nothing it measures:
            # an x kind whose forward twin is in the run only adds records in the backward modes.
            twin = X_KINDS[x_kind].same_forward_as
            for batch in cfg.batches:
                for mode in (m for m in modes if MODES[m].backward or twin not in x_kinds):
                    chosen = [p for p in providers if p.applies(kb, x_kind, MODES[mode])
                              and (not cfg.providers or p.name in cfg.providers)]
                    if chosen:
                        out.append(Workload(op_key, k, x_kind, batch, mode, chosen))
    return out


def _plan_size(workloads, num_facts) -> tuple:
    """(cases, units) of a KB's workloads: a case is one provider on one workload."""
    return (sum(len(w.providers) for w in workloads),
            sum(w.units(num_facts) * len(w.providers) for w in workloads))


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def traffic_bytes(kb, batch: int, k: int, backward: bool, elem: int = 4, grad_x: bool = True, hops: int = 1) -> int:
    """The memory traffic a pull over every fact needs at least: per fact its two indices and one
    x row of `batch` values, plus writing the output; the backward adds the dx pull (where x
    needs a gradient: every hop but a first one whose x is a constant) and the dr reduction (two
    rows per fact). Chained hops repeat it per hop. Rates against it are comparable across providers."""
    idx = torch.tensor([], dtype=kb.index_dtype).element_size()
    t, e = kb.num_facts, kb.num_entities
    fwd = k * t * (2 * idx + batch * elem) + e * batch * elem
    if not backward:
        return hops * fwd
    dx = k * (t * (2 * idx + batch * elem) + e * batch * elem)
    dr = k * t * (2 * idx + 2 * batch * elem)
    return hops * (fwd + dx + dr) - (0 if grad_x else dx)


def finished(record) -> bool:
    """Whether a record is final: measured or skipped (an interrupted run leaves others behind)."""
    return "median_ms" in record or "skipped" in record


def run_suite(cfg: Config, log=print, progress: Optional[Progress] = None,
              on_case: Optional[Callable[[dict, dict], None]] = None) -> dict:
    """Measures cfg's grid and returns the result dict. Each finished case (one provider on one
    workload) goes to progress.cases_done and on_case(result, record), as soon as its workload is
    measured: the CLI writes the result files as it goes."""
    device = torch.device(cfg.device)
    progress = progress or Progress(stream=None)
    budget = int((cfg.memory_budget_gb * 2**30) if cfg.memory_budget_gb else 0.7 * _available_bytes())
    result = {
        "machine": machine_info(device),
        "copy_bandwidth_gbps": copy_bandwidth_gbps(device),
        "config": {k: v for k, v in vars(cfg).items() if k != "extra"},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "kbs": [],
        "records": [],
    }
    log(f"machine: {result['machine']}; copy bandwidth {result['copy_bandwidth_gbps']:.1f} GB/s; "
        f"memory budget {budget / 2**30:.1f} GiB")
    specs = kb_specs(cfg.metaqa_kb)
    keys = expand_kb_keys(cfg.kbs)
    # Planned from the specs' sizes, so the count and the ETA cover the whole run from its start.
    planned = {key: _plan_size(plan_workloads(cfg, specs[key], device), specs[key].num_facts) for key in keys}
    for cases, units in planned.values():
        progress.expect(cases, units)
    with frozen_heap():
        for kb_key in keys:
            _run_kb(result, cfg, specs[kb_key], planned[kb_key], budget, device, log, progress, on_case)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def _run_kb(result, cfg, spec, planned, budget, device, log, progress, on_case):
    """Builds one KB and measures its workloads."""
    t0 = time.perf_counter()
    kb = spec.build().to(device)
    build_s = time.perf_counter() - t0
    result["kbs"].append({"name": spec.name, "num_entities": kb.num_entities, "num_relations": kb.num_relations,
                          "num_facts": kb.num_facts, "build_seconds": build_s})
    log(f"\n{spec.name}: {kb.num_entities:,} entities, {kb.num_relations:,} relations, "
        f"{kb.num_facts:,} facts (built in {build_s:.1f} s)")
    workloads = plan_workloads(cfg, kb, device)
    cases, units = _plan_size(workloads, kb.num_facts)  # a KB read from a file has its size only now
    progress.expect(cases - planned[0], units - planned[1])
    ctx = KBContext(kb)
    # One set of inputs per op, x kind and batch, shared by its modes.
    for (op_key, k, x_kind, batch), group in groupby(workloads, lambda w: (w.op_key, w.k, w.x_kind, w.batch)):
        group = list(group)
        hops = max(MODES[w.mode].hops for w in group)
        xs, rs = make_inputs(kb, batch, x_kind, device, k=k, hops=hops)
        grad_out = None
        if any(MODES[w.mode].upstream == "grad" and MODES[w.mode].backward for w in group):
            grad_out = make_upstream_grad(kb, batch, device)
        for w in group:
            _measure_workload(result, cfg, ctx, spec.name, w, xs, rs, grad_out, budget, device, log, progress,
                              on_case)
        del xs, rs, grad_out
        ctx.clear_inputs()


def _rel_diff(y, ref) -> float:
    """max |y - ref| / max |ref|."""
    y, ref = y.detach(), ref.detach()
    return float(((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item())


def _measure_workload(result, cfg, ctx, kb_name, w: Workload, xs, rs, grad_out, budget, device, log, progress,
                      on_case):
    kb = ctx.kb
    mode = MODES[w.mode]
    backward = mode.backward
    grad_x = X_KINDS[w.x_kind].requires_grad
    # One branch per intersected follow; one x and one r per hop for chained follows.
    xs, rs = (xs[:1], rs[:mode.hops]) if w.op_key == "follow" else (xs, rs)
    log(f"  {w.op_key} x={w.x_kind} B={w.batch} {w.mode}")
    reference_out = reference_grads = None
    cases = []  # (record, seconds of its warm-up)
    measured = []  # (record, call) of each provider that ran its warm-up
    for prov in w.providers:
        rec = dict(kb=kb_name, num_entities=kb.num_entities, num_relations=kb.num_relations, num_facts=kb.num_facts,
                   op=w.op_key, k=w.k, x=w.x_kind, batch=w.batch, mode=w.mode, provider=prov.name, note=prov.note)
        result["records"].append(rec)
        cases.append([rec, 0.0])
        # A backward through chained hops holds every hop's intermediates at once.
        need = prov.extra_bytes(kb, w.batch, w.k * (mode.hops if backward else 1), backward)
        if need > budget:
            rec["skipped"] = f"needs about {need / 2**30:.1f} GiB of intermediates, over the {budget / 2**30:.1f} GiB budget"
            log(f"    {prov.name:24s} skipped: {rec['skipped']}")
            continue

        def call(prov=prov):  # bound now: the calls are timed after the loop
            return run(prov, ctx, xs, rs, mode, grad_x, grad_out)

        t0 = time.perf_counter()
        try:
            out = call()  # warm-up, and the output to compare
        except (RuntimeError, MemoryError) as e:
            rec["skipped"] = f"failed: {str(e).splitlines()[0][:200]}"
            log(f"    {prov.name:24s} {rec['skipped']}")
            continue
        finally:
            cases[-1][1] = time.perf_counter() - t0
        y = (out[0] if backward else out).detach()
        grads = out[1] if backward else []
        if reference_out is None:
            reference_out, reference_grads = y, grads  # the first provider is ours
        if prov.same_op and y.numel():
            rec["max_rel_diff"] = _rel_diff(y, reference_out)
            # Every gradient (of x where it has one, and of each r), against ours: layouts and
            # upstream gradients must not change what the backward computes.
            diffs = [_rel_diff(g, g0) for g, g0 in zip(grads, reference_grads) if g is not None and g0 is not None]
            if diffs:
                rec["max_rel_diff_grad"] = max(diffs)
        del out, y, grads
        measured.append((rec, call))
    # Every provider's repeats in rounds, so that they share the machine's slow spells; the peak
    # memory is read around each one's first timed call.
    timings = time_interleaved([call for _, call in measured], device, repeats=cfg.repeats,
                               max_seconds=cfg.case_seconds, min_repeats=min(cfg.min_repeats, cfg.repeats), peak=True)
    spent = {}
    for (rec, call), timing in zip(measured, timings):
        spent[id(rec)] = timing.spent_s
        rec.update(median_ms=timing.median_ms, p25_ms=timing.p25_ms, p75_ms=timing.p75_ms,
                   min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=timing.repeats)
        rec["peak_bytes"] = timing.peak_bytes
        rec["facts_per_s"] = kb.num_facts * w.k * mode.hops / (timing.median_ms * 1e-3)
        if X_KINDS[w.x_kind].dense:
            traffic = traffic_bytes(kb, w.batch, w.k, backward, grad_x=grad_x, hops=mode.hops)
            gbps = traffic / (timing.median_ms * 1e-3) / 1e9
            rec["effective_gbps"] = gbps
            rec["fraction_of_copy_bw"] = gbps / result["copy_bandwidth_gbps"]
        mem = rec["peak_bytes"]
        log(f"    {rec['provider']:24s} {timing.median_ms:10.2f} ms [{timing.p25_ms:.2f}-{timing.p75_ms:.2f}] "
            f"n={timing.repeats}  peak {mem / 2**20 if mem is not None else float('nan'):9.1f} MiB  "
            f"max rel diff {rec.get('max_rel_diff', float('nan')):.1e}")
    units = w.units(kb.num_facts)
    progress.cases_done((f"{kb_name} {w.op_key} {w.mode} x={w.x_kind} B={w.batch} {rec['provider']}",
                         warmup_s + spent.get(id(rec), 0.0), units,
                         f"skipped ({rec['skipped']})" if "skipped" in rec else "") for rec, warmup_s in cases)
    if on_case:
        for rec, _ in cases:  # in the table's order
            on_case(result, rec)
