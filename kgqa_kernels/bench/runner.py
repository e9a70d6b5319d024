"""Runs a grid of (KB, op, x, batch, mode) x providers and returns one record per measurement."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from .measure import copy_bandwidth_gbps, peak_memory_bytes, time_interleaved
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
    device: str = "cpu"
    metaqa_kb: Optional[str] = None
    memory_budget_gb: Optional[float] = None
    out_json: Optional[str] = None
    extra: dict = field(default_factory=dict)


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


def run_suite(cfg: Config, log=print) -> dict:
    device = torch.device(cfg.device)
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
    for kb_key in expand_kb_keys(cfg.kbs):
        spec = specs[kb_key]
        t0 = time.perf_counter()
        kb = spec.build().to(device)
        build_s = time.perf_counter() - t0
        result["kbs"].append({"name": spec.name, "num_entities": kb.num_entities, "num_relations": kb.num_relations,
                              "num_facts": kb.num_facts, "build_seconds": build_s})
        log(f"\n{spec.name}: {kb.num_entities:,} entities, {kb.num_relations:,} relations, "
            f"{kb.num_facts:,} facts (built in {build_s:.1f} s)")
        ctx = KBContext(kb)
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
                x_modes = [m for m in modes if MODES[m].backward or twin not in x_kinds]
                if not x_modes:
                    continue
                hops = max(MODES[m].hops for m in x_modes)
                for batch in cfg.batches:
                    xs, rs = make_inputs(kb, batch, x_kind, device, k=k, hops=hops)
                    grad_out = None
                    if any(MODES[m].upstream == "grad" and MODES[m].backward for m in x_modes):
                        grad_out = make_upstream_grad(kb, batch, device)
                    for mode in x_modes:
                        _measure_group(result, cfg, ctx, spec.name, op_key, k, x_kind, batch, mode, providers,
                                       xs, rs, grad_out, budget, device, log)
                        if cfg.out_json:
                            _save(result, cfg.out_json)
                    del xs, rs, grad_out
                    ctx.clear_inputs()
        del ctx, kb
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def _rel_diff(y, ref) -> float:
    """max |y - ref| / max |ref|."""
    y, ref = y.detach(), ref.detach()
    return float(((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item())


def _save(result, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def _measure_group(result, cfg, ctx, kb_name, op_key, k, x_kind, batch, mode_key, providers, xs, rs, grad_out,
                   budget, device, log):
    kb = ctx.kb
    mode = MODES[mode_key]
    backward = mode.backward
    grad_x = X_KINDS[x_kind].requires_grad
    # One branch per intersected follow; one x and one r per hop for chained follows.
    xs, rs = (xs[:1], rs[:mode.hops]) if op_key == "follow" else (xs, rs)
    log(f"  {op_key} x={x_kind} B={batch} {mode_key}")
    reference_out = reference_grads = None
    measured = []  # (record, call) of each provider that ran its warm-up
    for prov in providers:
        if not prov.applies(kb, x_kind, mode) or (cfg.providers and prov.name not in cfg.providers):
            continue
        rec = dict(kb=kb_name, num_entities=kb.num_entities, num_relations=kb.num_relations, num_facts=kb.num_facts,
                   op=op_key, k=k, x=x_kind, batch=batch, mode=mode_key, provider=prov.name, note=prov.note)
        result["records"].append(rec)
        # A backward through chained hops holds every hop's intermediates at once.
        need = prov.extra_bytes(kb, batch, k * (mode.hops if backward else 1), backward)
        if need > budget:
            rec["skipped"] = f"needs about {need / 2**30:.1f} GiB of intermediates, over the {budget / 2**30:.1f} GiB budget"
            log(f"    {prov.name:24s} skipped: {rec['skipped']}")
            continue

        def call(prov=prov):  # bound now: the calls are timed after the loop
            return run(prov, ctx, xs, rs, mode, grad_x, grad_out)

        try:
            out = call()  # warm-up, and the output to compare
        except (RuntimeError, MemoryError) as e:
            rec["skipped"] = f"failed: {str(e).splitlines()[0][:200]}"
            log(f"    {prov.name:24s} {rec['skipped']}")
            continue
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
    # Every provider's repeats in rounds, so that they share the machine's slow spells.
    timings = time_interleaved([call for _, call in measured], device, repeats=cfg.repeats)
    for (rec, call), timing in zip(measured, timings):
        rec.update(median_ms=timing.median_ms, p25_ms=timing.p25_ms, p75_ms=timing.p75_ms,
                   min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=timing.repeats)
        rec["peak_bytes"] = peak_memory_bytes(call, device)
        rec["facts_per_s"] = kb.num_facts * k * mode.hops / (timing.median_ms * 1e-3)
        if X_KINDS[x_kind].dense:
            traffic = traffic_bytes(kb, batch, k, backward, grad_x=grad_x, hops=mode.hops)
            gbps = traffic / (timing.median_ms * 1e-3) / 1e9
            rec["effective_gbps"] = gbps
            rec["fraction_of_copy_bw"] = gbps / result["copy_bandwidth_gbps"]
        mem = rec["peak_bytes"]
        log(f"    {rec['provider']:24s} {timing.median_ms:10.2f} ms [{timing.p25_ms:.2f}-{timing.p75_ms:.2f}]"
            f"  peak {mem / 2**20 if mem is not None else float('nan'):9.1f} MiB  max rel diff {rec.get('max_rel_diff', float('nan')):.1e}")
