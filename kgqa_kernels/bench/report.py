"""Markdown tables, the benchmark targets (speed and memory against torch.sparse), and a plot, from a results dict."""
from __future__ import annotations

from collections import defaultdict


def _find(records, **want):
    for r in records:
        if all(r.get(k) == v for k, v in want.items()) and "median_ms" in r:
            return r
    return None


def evaluate_targets(result, kb="powerlaw-10M", batch=64) -> list:
    """The CPU targets, each from ratios of one run: (name, measured, goal, passed or None)."""
    recs = result["records"]
    base = dict(kb=kb, batch=batch)
    out = []

    def add(name, value, goal, passed, detail):
        out.append(dict(target=name, measured=value, goal=goal, passed=passed, detail=detail))

    ours = _find(recs, op="follow", x="dense", mode="fwd+bwd", provider="kgqa:cpu", **base)
    sparse = [r for r in (_find(recs, op="follow", x="dense", mode="fwd+bwd", provider=f"torch.sparse-{t}", **base)
                          for t in ("coo", "csr")) if r]
    if ours and sparse:
        fastest = min(sparse, key=lambda r: r["median_ms"])
        leanest = min(sparse, key=lambda r: r["peak_bytes"])
        speed = fastest["median_ms"] / ours["median_ms"]
        add("follow fwd+bwd vs torch.sparse (fastest of COO/CSR): speed-up", f"{speed:.1f}x", ">= 10x", speed >= 10,
            f"{ours['median_ms']:.0f} ms vs {fastest['median_ms']:.0f} ms ({fastest['provider']})")
        mem = ours["peak_bytes"] / leanest["peak_bytes"]
        add("follow fwd+bwd peak memory / torch.sparse (leanest of COO/CSR)", f"1/{1 / mem:.0f}", "<= 1/10", mem <= 0.1,
            f"{ours['peak_bytes'] / 2**20:.0f} MiB vs {leanest['peak_bytes'] / 2**20:.0f} MiB ({leanest['provider']})")
    else:
        add("follow fwd+bwd vs torch.sparse", "not measured", ">= 10x, <= 1/10 memory", None, "")

    ours = _find(recs, op="follow", x="dense", mode="forward", provider="kgqa:cpu", **base)
    floor = _find(recs, op="follow", x="dense", mode="forward", provider="csr-spmm-floor", **base)
    if ours and floor:
        ratio = ours["median_ms"] / floor["median_ms"]
        add("follow forward / plain CSR SpMM floor", f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5,
            f"{ours['median_ms']:.0f} ms vs {floor['median_ms']:.0f} ms")
    else:
        add("follow forward / CSR SpMM floor", "not measured", "<= 1.5x", None, "")

    push = _find(recs, op="follow", x="one-hot", mode="forward", provider="kgqa:cpu", **base)
    pull = _find(recs, op="follow", x="one-hot", mode="forward", provider="kgqa:cpu-pull", **base)
    sparse_x = _find(recs, op="follow", x="one-hot", mode="forward", provider="kgqa:cpu-sparse-x", **base)
    if push and pull:
        speed = pull["median_ms"] / push["median_ms"]
        detail = (f"dense one-hot x, auto direction: {push['median_ms']:.2f} ms vs pull {pull['median_ms']:.0f} ms; "
                  f"max rel diff {pull['max_rel_diff']:.0e}")
        if sparse_x:
            detail += f"; seeds as sparse x: {sparse_x['median_ms']:.2f} ms ({pull['median_ms'] / sparse_x['median_ms']:.0f}x)"
        add("first hop: push / dense pull, same input", f"{speed:.0f}x", ">= 50x", speed >= 50, detail)
    else:
        add("first hop push vs pull", "not measured", ">= 50x", None, "")

    for mode in ("forward", "fwd+bwd"):
        fused = _find(recs, op="follow_intersect-2", x="dense", mode=mode, provider="kgqa:cpu-fused", **base)
        unfused = _find(recs, op="follow_intersect-2", x="dense", mode=mode, provider="kgqa:cpu-unfused", **base)
        if fused and unfused:
            speed = unfused["median_ms"] / fused["median_ms"]
            mem = fused["peak_bytes"] / unfused["peak_bytes"]
            add(f"follow_intersect k=2 fused vs unfused, {mode}", f"{speed:.2f}x faster, {mem:.2f}x memory",
                "faster, less memory", speed > 1 and mem < 1,
                f"{fused['median_ms']:.0f} ms / {fused['peak_bytes'] / 2**20:.0f} MiB vs "
                f"{unfused['median_ms']:.0f} ms / {unfused['peak_bytes'] / 2**20:.0f} MiB")
        else:
            add(f"follow_intersect k=2 fused vs unfused, {mode}", "not measured", "faster, less memory", None, "")
    return out


# The per-shape CPU targets (the suite's family runs measure them; docs/benchmarks.md): with a
# row-major x [B, E] and a materialised upstream gradient, forward + backward at least this many
# times faster than torch.sparse's ReifKB in CSR, and at most this fraction of its peak memory;
# forward at most this multiple of the plain CSR SpMM floor on its best layout.
SHAPE_SPEEDUP_GOAL = 10.0
SHAPE_MEMORY_GOAL = 0.1
SHAPE_FLOOR_GOAL = 1.2
SHAPE_X = "dense-rowmajor"
SHAPE_BACKWARD_MODE = "fwd+bwd-grad"
FLOORS = ("csr-spmm-floor", "csr-spmm-floor-bi")  # x as given, x copied to batch-innermost


def evaluate_shape_targets(result, batch=64, ours="kgqa:cpu", baseline="torch.sparse-csr") -> list:
    """Per KB of the run, the three targets, each a ratio of two records of this run: dicts with
    kb, num_facts, and for "speedup", "memory", "floor" a (value, passed or None, detail)."""
    recs = result["records"]
    rows = []
    for kb in result["kbs"]:
        base = dict(kb=kb["name"], batch=batch, op="follow", x=SHAPE_X)
        row = dict(kb=kb["name"], num_facts=kb["num_facts"])
        mine = _find(recs, mode=SHAPE_BACKWARD_MODE, provider=ours, **base)
        theirs = _find(recs, mode=SHAPE_BACKWARD_MODE, provider=baseline, **base)
        if mine and theirs:
            speed = theirs["median_ms"] / mine["median_ms"]
            row["speedup"] = (speed, speed >= SHAPE_SPEEDUP_GOAL,
                              f"{mine['median_ms']:,.0f} vs {theirs['median_ms']:,.0f} ms")
            if mine["peak_bytes"] is not None and theirs["peak_bytes"]:
                mem = mine["peak_bytes"] / theirs["peak_bytes"]
                row["memory"] = (mem, mem <= SHAPE_MEMORY_GOAL,
                                 f"{mine['peak_bytes'] / 2**20:,.0f} vs {theirs['peak_bytes'] / 2**20:,.0f} MiB")
        else:
            why = _why_missing(recs, mode=SHAPE_BACKWARD_MODE, provider=baseline, **base) if mine else ""
            row["speedup"] = row["memory"] = (None, None, why)
        row.setdefault("memory", (None, None, "peak memory not measured"))
        mine = _find(recs, mode="forward", provider=ours, **base)
        floors = [r for r in (_find(recs, mode="forward", provider=f, **base) for f in FLOORS) if r]
        if mine and floors:
            best = min(floors, key=lambda r: r["median_ms"])
            ratio = mine["median_ms"] / best["median_ms"]
            row["floor"] = (ratio, ratio <= SHAPE_FLOOR_GOAL,
                            f"{mine['median_ms']:,.0f} vs {best['median_ms']:,.0f} ms ({best['provider']})")
        else:
            row["floor"] = (None, None, "")
        rows.append(row)
    return rows


def _why_missing(records, **want):
    """A skipped record's reason, if the run skipped what was wanted."""
    for r in records:
        if all(r.get(k) == v for k, v in want.items()) and "skipped" in r:
            return f"{r['provider']} {r['skipped']}"
    return ""


def _shape_target_lines(result) -> list:
    met = {True: "yes", False: "**no**", None: "-"}
    lines = [
        "", "## Targets per KB shape", "",
        f"B = 64, x row-major [B, E] (`{SHAPE_X}`), each ratio from this run. Forward + backward "
        f"(`{SHAPE_BACKWARD_MODE}`: `out.backward(g)`, g a materialised row-major [B, E] gradient) against "
        f"torch.sparse's ReifKB in CSR: at least {SHAPE_SPEEDUP_GOAL:g}x faster and at most "
        f"1/{1 / SHAPE_MEMORY_GOAL:g} of its peak memory. Forward: at most {SHAPE_FLOOR_GOAL:g}x the plain CSR "
        "SpMM floor on its best layout (the faster of x as given and x copied to batch-innermost outside "
        "the timing). The targets are set at 10M facts.",
        "",
        f"| KB | facts | fwd+bwd speed-up (>= {SHAPE_SPEEDUP_GOAL:g}x) | met | fwd+bwd peak memory "
        f"(<= 1/{1 / SHAPE_MEMORY_GOAL:g}) | met | forward / floor (<= {SHAPE_FLOOR_GOAL:g}x) | met |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(entry, fmt):
        value, passed, detail = entry
        text = "not measured" if value is None else fmt(value)
        if detail:
            text += f": {detail}"
        return f"{text} | {met[passed]}"

    for row in evaluate_shape_targets(result):
        lines.append(f"| {row['kb']} | {row['num_facts']:,} | {cell(row['speedup'], lambda v: f'{v:.1f}x')} | "
                     f"{cell(row['memory'], lambda v: f'1/{1 / v:.1f}' if v > 0 else '0')} | "
                     f"{cell(row['floor'], lambda v: f'{v:.2f}x')} |")
    return lines


def _diff(r):
    return f"{r['max_rel_diff']:.0e}" if "max_rel_diff" in r else "-"


def _mib(b):
    return "n/a" if b is None else f"{b / 2**20:,.1f}"


def is_port(record) -> bool:
    """A record of the ports suite (bench/ports.py): op "port:<name>"."""
    return record["op"].startswith("port:")


def _ports_lines(result) -> list:
    """The ports suite's table: per port and size, ours on each backend and the original."""
    recs = [r for r in result["records"] if is_port(r)]
    if not recs:
        return []
    lines = ["", "## Ports against their original formulations", "",
             "The ports in examples/ (`kgqa-bench --suite ports`): one forward + backward from a materialised "
             "upstream gradient into every trainable tensor (fact weights included), ours and the original "
             "pure-torch formulation on the same model and inputs. Speed-up: the original's median over ours. "
             "Max rel diff: against the original (grads: the largest over the gradients).", "",
             "| port | size | facts | batch | provider | median ms [p25-p75] | n | peak MiB | speed-up | max rel diff "
             "| note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in recs:
        head = f"| {r['op'][len('port:'):]} | {r['kb']} | {r['num_facts']:,} | {r['batch']} | {r['provider']} |"
        if "median_ms" not in r:
            lines.append(f"{head} skipped | | | | | {r.get('skipped', '')} |")
            continue
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else "-"
        diff = _diff(r) + (f" (grads {r['max_rel_diff_grad']:.0e})" if "max_rel_diff_grad" in r else "")
        lines.append(f"{head} {r['median_ms']:,.2f} [{r['p25_ms']:,.2f}-{r['p75_ms']:,.2f}] | {r.get('repeats', '-')} | "
                     f"{_mib(r['peak_bytes'])} | {speed} | {diff} | {r['note']} |")
    return lines


def _run_lines(result) -> list:
    """How the run measured (runs since the time budget per case; older results say nothing), and
    whether it was cut short."""
    c = result.get("config", {})
    lines = []
    if result.get("interrupted"):
        lines += [f"**Interrupted {result['interrupted']}**: the tables hold the cases measured before it.", ""]
    if "case_seconds" in c:
        lines += [f"Each provider: a warm-up call, then up to {c['repeats']} timed calls per workload (n), fewer "
                  f"(at least {min(c['min_repeats'], c['repeats'])}) once its timed calls took {c['case_seconds']:g} s; "
                  "peak memory is read around its first timed call.", ""]
    return lines


def markdown(result) -> str:
    m = result["machine"]
    lines = [
        "# kgqa-kernels benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), torch {m['torch']}, "
        f"device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}. Measured copy bandwidth "
        f"{result['copy_bandwidth_gbps']:.1f} GB/s (read + write). Run {result['started']}.",
        "",
        *_run_lines(result),
        "Times are medians over the repeats [25th-75th percentile]; peak memory is what one call adds above "
        "its live inputs (CPU: resident-set high-water mark; CUDA: max_memory_allocated). Effective bandwidth "
        "counts the least traffic a pull over all facts needs (indices + one x row per fact + the output; the "
        "backward adds dx and dr), so it compares providers on the same work. Max rel diff: against the first "
        "provider of the table (ours); (grads ...): the largest over the gradients of x and each r.",
        "",
        "x: `dense` batch-innermost (as follow returns it), `dense-rowmajor` a row-major [B, E] x, half zeros "
        "(`-nograd`: x needs no gradient), `one-hot` one seed per example. Modes: `forward` (under no_grad), "
        "`fwd+bwd` (backward of out.sum()), `fwd+bwd-grad` (out.backward(g), g a materialised row-major "
        "[B, E] tensor), `2-hop-...` (follow(follow(x, r1), r2), every provider chaining its own output).",
        "",
    ]
    op_records = [r for r in result["records"] if not is_port(r)]
    if op_records or len(op_records) == len(result["records"]):  # a ports run has no op targets
        lines += ["## Targets", "", "| target | measured | goal | met | detail |", "|---|---|---|---|---|"]
        for t in evaluate_targets(result):
            met = {True: "yes", False: "**no**", None: "-"}[t["passed"]]
            lines.append(f"| {t['target']} | {t['measured']} | {t['goal']} | {met} | {t['detail']} |")
        lines += _shape_target_lines(result)
    lines += ["", "## KBs", "", "| KB | entities | relations | facts | build (s) |", "|---|---|---|---|---|"]
    for kb in result["kbs"]:
        lines.append(f"| {kb['name']} | {kb['num_entities']:,} | {kb['num_relations']:,} | {kb['num_facts']:,} | "
                     f"{kb['build_seconds']:.1f} |")
    lines += _ports_lines(result)
    groups = defaultdict(list)
    for r in op_records:
        groups[(r["kb"], r["op"], r["x"], r["batch"], r["mode"])].append(r)
    for (kb, *_), recs in groups.items():
        lines += ["", f"### {kb}: {workload_title(recs[0])}", "",
                  "| provider | median ms [p25-p75] | n | peak MiB | facts/s | eff. GB/s (% copy) | max rel diff | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in recs:
            if "median_ms" not in r:
                lines.append(f"| {r['provider']} | skipped | | | | | | {r.get('skipped', '')} |")
                continue
            bw = (f"{r['effective_gbps']:.1f} ({100 * r['fraction_of_copy_bw']:.0f}%)" if "effective_gbps" in r else "-")
            diff = _diff(r) + (f" (grads {r['max_rel_diff_grad']:.0e})" if "max_rel_diff_grad" in r else "")
            lines.append(
                f"| {r['provider']} | {r['median_ms']:,.2f} [{r['p25_ms']:,.2f}-{r['p75_ms']:,.2f}] | "
                f"{r.get('repeats', '-')} | {_mib(r['peak_bytes'])} | {r['facts_per_s']:.2e} | {bw} | {diff} | "
                f"{r['note']} |")
    return "\n".join(lines) + "\n"


def workload_title(record) -> str:
    """A workload as the report names it (without the KB): "follow, x dense, B=64, fwd+bwd"."""
    if is_port(record):
        return f"port {record['op'][len('port:'):]}, B={record['batch']}, {record['mode']}"
    return f"{record['op']}, x {record['x']}, B={record['batch']}, {record['mode']}"


def workloads(result) -> list:
    """The measured records grouped by workload (op, x, batch, mode), in the order they ran:
    [(title, records)]."""
    groups = {}
    for r in result["records"]:
        if "median_ms" in r:
            groups.setdefault(workload_title(r), []).append(r)
    return list(groups.items())


# Peak memory is read from the resident-set size, in pages: a call that adds less than a page reads
# as 0, drawn at one page so that a log scale can show it.
_PAGE_MIB = 4096 / 2**20


def _ms_label(ms: float) -> str:
    return f" {ms:,.0f}" if ms >= 100 else f" {ms:.3g}"


def plot_figure(result):
    """A matplotlib figure with a row per workload the run measured: the median time (left) and
    the peak memory (right) of each provider, a bar per KB, so a run of one KB reads as well as a
    run of several. None when nothing was measured. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = workloads(result)
    if not rows:
        return None
    kbs = [kb["name"] for kb in result["kbs"]]
    kbs += sorted({r["kb"] for _, recs in rows for r in recs} - set(kbs))
    colors = {kb: plt.cm.tab10(i % 10) for i, kb in enumerate(kbs)}
    facts = {kb["name"]: kb["num_facts"] for kb in result["kbs"]}
    layout = []  # per row: providers in first-seen order (ours first), KBs present
    for _, recs in rows:
        provs = list(dict.fromkeys(r["provider"] for r in recs))
        row_kbs = [kb for kb in kbs if any(r["kb"] == kb for r in recs)]
        layout.append((provs, row_kbs))
    # Laid out by hand, in inches (tight_layout took half the plot's time): per row a title, the
    # bars (0.22 in each) and the ticks and label below them.
    # Each panel has the providers' names on its left, about 0.07 in a character at this size.
    title_in, below_in, top_in, panel_in = 0.3, 0.6, 0.8, 4.7
    names_in = max(1.6, 0.2 + 0.07 * max(len(p) for provs, _ in layout for p in provs))
    width = 2 * (names_in + panel_in) + 0.3
    heights = [max(0.22 * len(p) * len(k), 0.45) for p, k in layout]
    height = top_in + sum(title_in + h + below_in for h in heights)
    fig = plt.figure(figsize=(width, height))
    axes, top = [], height - top_in
    for h in heights:
        top -= title_in + h
        axes.append([fig.add_axes([left / width, top / height, panel_in / width, h / height])
                     for left in (names_in, 2 * names_in + panel_in)])
        top -= below_in
    for (title, recs), (provs, row_kbs), ax_row in zip(rows, layout, axes):
        bar = 0.8 / len(row_kbs)
        by_key = {(r["provider"], r["kb"]): r for r in recs}
        for j, kb in enumerate(row_kbs):
            ys, times, mems = [], [], []
            for i, prov in enumerate(provs):
                r = by_key.get((prov, kb))
                if r is not None:
                    ys.append(i + (j - (len(row_kbs) - 1) / 2) * bar)
                    times.append(r["median_ms"])
                    mems.append(r["peak_bytes"] / 2**20 if r["peak_bytes"] is not None else None)
            ax_row[0].barh(ys, times, height=bar, color=colors[kb])
            for y, t in zip(ys, times):
                ax_row[0].annotate(_ms_label(t), (t, y), va="center", fontsize=7)
            shown = [(y, m) for y, m in zip(ys, mems) if m is not None]
            ax_row[1].barh([y for y, _ in shown], [max(m, _PAGE_MIB) for _, m in shown], height=bar, color=colors[kb])
            for y, m in shown:
                ax_row[1].annotate(f" {m:,.3g}" if m >= _PAGE_MIB else " < 1 page", (max(m, _PAGE_MIB), y),
                                   va="center", fontsize=7)
        for ax, xlabel in zip(ax_row, ("median time (ms), log scale", "peak memory of the call (MiB), log scale")):
            ax.set_xscale("log")
            # No minor ticks (drawing them took most of the plot's time): the bars carry their values.
            ax.minorticks_off()
            ax.set_yticks(range(len(provs)))
            ax.set_yticklabels(provs, fontsize=8)
            ax.set_ylim(len(provs) - 0.5, -0.5)  # ours (the first provider) on top, as in the tables
            ax.set_xlabel(xlabel, fontsize=8)
            ax.grid(True, axis="x", alpha=0.3)
        # Room on the right of the longest bar for its value.
        times = [r["median_ms"] for r in recs]
        ax_row[0].set_xlim(min(times) / 2, max(times) * 5)
        mems = [max(r["peak_bytes"] or 0, 4096) / 2**20 for r in recs]
        ax_row[1].set_xlim(_PAGE_MIB / 2, max(mems) * 5)
        ax_row[0].set_title(title, fontsize=10, loc="left")
        ax_row[1].set_title("peak memory", fontsize=9, loc="left")
    m = result["machine"]
    fig.suptitle(f"kgqa-kernels vs torch baselines ({m['cpu']}, {m['device']}): every workload of the run",
                 y=1 - 0.2 / height)
    fig.legend(handles=[Patch(color=colors[kb], label=f"{kb} ({facts[kb]:,} facts)" if kb in facts else kb)
                        for kb in kbs], loc="upper center", ncol=min(len(kbs), 4), fontsize=8,
               bbox_to_anchor=(0.5, 1 - 0.35 / height))
    return fig


def plot(result, path) -> tuple:
    """Draws plot_figure to path: (True, "") or (False, why not)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return False, "matplotlib is not installed (pip install 'kgqa-kernels[bench]')"
    fig = plot_figure(result)
    if fig is None:
        return False, "nothing was measured"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True, ""
