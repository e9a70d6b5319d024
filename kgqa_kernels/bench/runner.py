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

from .measure import copy_bandwidth_gbps, peak_memory_bytes, time_call
from .providers import KBContext, follow_providers, intersect_providers, run
from .workloads import kb_specs, make_inputs

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


def traffic_bytes(kb, batch: int, k: int, backward: bool, elem: int = 4) -> int:
    """The memory traffic a pull over every fact needs at least: per fact its two indices and one
    x row of `batch` values, plus writing the output; the backward adds the dx pull and the dr
    reduction (two rows per fact). Rates against it are comparable across providers."""
    idx = torch.tensor([], dtype=kb.index_dtype).element_size()
    t, e = kb.num_facts, kb.num_entities
    fwd = k * t * (2 * idx + batch * elem) + e * batch * elem
    if not backward:
        return fwd
    return fwd + k * (t * (2 * idx + batch * elem) + e * batch * elem) + k * t * (2 * idx + 2 * batch * elem)


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
    for kb_key in cfg.kbs:
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
            # Intersections join later hops: dense x only.
            for x_kind in cfg.x_kinds if op == "follow" else [x for x in cfg.x_kinds if x == "dense"]:
                for batch in cfg.batches:
                    xs, rs = make_inputs(kb, batch, x_kind, device, k=k)
                    for mode in cfg.modes:
                        _measure_group(result, cfg, ctx, spec.name, op_key, k, x_kind, batch, mode, providers,
                                       xs, rs, budget, device, log)
                        if cfg.out_json:
                            _save(result, cfg.out_json)
                    del xs, rs
        del ctx, kb
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return result


def _save(result, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)


def _measure_group(result, cfg, ctx, kb_name, op_key, k, x_kind, batch, mode, providers, xs, rs, budget, device, log):
    kb = ctx.kb
    backward = mode == "fwd+bwd"
    grad_x = x_kind == "dense"  # seeds of a first hop are constants
    log(f"  {op_key} x={x_kind} B={batch} {mode}")
    reference_out = None
    for prov in providers:
        if not prov.applies(kb, x_kind) or (cfg.providers and prov.name not in cfg.providers):
            continue
        rec = dict(kb=kb_name, num_entities=kb.num_entities, num_relations=kb.num_relations, num_facts=kb.num_facts,
                   op=op_key, k=k, x=x_kind, batch=batch, mode=mode, provider=prov.name, note=prov.note)
        result["records"].append(rec)
        need = prov.extra_bytes(kb, batch, k, backward)
        if need > budget:
            rec["skipped"] = f"needs about {need / 2**30:.1f} GiB of intermediates, over the {budget / 2**30:.1f} GiB budget"
            log(f"    {prov.name:24s} skipped: {rec['skipped']}")
            continue

        def call():
            return run(prov, ctx, xs, rs, backward, grad_x)

        try:
            out = call()  # warm-up, and the output to compare
        except (RuntimeError, MemoryError) as e:
            rec["skipped"] = f"failed: {str(e).splitlines()[0][:200]}"
            log(f"    {prov.name:24s} {rec['skipped']}")
            continue
        y = (out[0] if backward else out).detach()
        if reference_out is None:
            reference_out = y  # the first provider is ours
        if prov.same_op and y.numel():
            scale = reference_out.abs().max().clamp_min(1e-30)
            rec["max_rel_diff"] = float(((y - reference_out).abs().max() / scale).item())
        del out, y
        timing = time_call(call, device, repeats=cfg.repeats, warmup=0)
        rec.update(median_ms=timing.median_ms, p25_ms=timing.p25_ms, p75_ms=timing.p75_ms,
                   min_ms=timing.min_ms, max_ms=timing.max_ms, repeats=timing.repeats)
        rec["peak_bytes"] = peak_memory_bytes(call, device)
        rec["facts_per_s"] = kb.num_facts * k / (timing.median_ms * 1e-3)
        if x_kind == "dense":
            gbps = traffic_bytes(kb, batch, k, backward) / (timing.median_ms * 1e-3) / 1e9
            rec["effective_gbps"] = gbps
            rec["fraction_of_copy_bw"] = gbps / result["copy_bandwidth_gbps"]
        mem = rec["peak_bytes"]
        log(f"    {prov.name:24s} {timing.median_ms:10.2f} ms [{timing.p25_ms:.2f}-{timing.p75_ms:.2f}]"
            f"  peak {mem / 2**20 if mem is not None else float('nan'):9.1f} MiB  max rel diff {rec.get('max_rel_diff', float('nan')):.1e}")
