"""Output of ``gankernels bench``: terminal table, markdown, JSON, CSV and the scaling plot.

JSON (``schema`` "gankernels-bench/1"): ``{"schema", "meta", "rows"}``; ``meta`` holds the
machine, versions, roofline ceilings, settings and the command; each row has the
fields of ``runner.ROW_FIELDS`` (times in seconds, memory in MiB, nan written as
null).  CSV: one line per row, the same fields, nan as "nan".
"""
from __future__ import annotations

import csv
import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .registry import IMPLS, OPS, VARIANT_OF, VARIANTS
from .runner import ROW_FIELDS
from ..train.runfiles import json_safe

MODE_LABEL = {"fwd": "fwd", "bwd": "bwd", "fwdbwd": "fwd+bwd"}
FAIL_LABEL = {"oom": "OOM", "too slow": "too slow", "unavailable": "n/a", "failed": "failed"}
HEADER_CONSTANTS = ("kernel", "dtype", "device")   # columns shown only when they vary


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_ms(seconds) -> str:
    if not _finite(seconds):
        return "nan"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def fmt_num(v, spec: str = ".3g", missing: str = "nan") -> str:
    return format(v, spec) if _finite(v) else missing


def fmt_mb(v) -> str:
    if not _finite(v):
        return "nan"
    return f"{v:.3g}" if v < 1000 else f"{v:.0f}"


def fmt_n(n: int) -> str:
    return f"{n:,}"


# ----------------------------------------------------------------------------- tables

def _varying(rows: Sequence[Dict], key: str) -> bool:
    return len({r.get(key) for r in rows if r.get(key)}) > 1


def _roof(r: Dict) -> str:
    return f"{100 * r['roofline_frac']:.0f}% {r['roofline_bound']}" if _finite(r.get("roofline_frac")) else "—"


def impl_label(r: Dict) -> str:
    """The impl column: ``eager`` / ``compile`` of an op with a distance matrix say that they are the cdist
    variant (the names predate the expansion variant; old JSON keeps reading the same)."""
    from .registry import OPS
    spec = OPS.get(r["op"])
    if r["impl"] in ("eager", "compile") and spec is not None and spec.eager_dist is not None:
        return f"{r['impl']} (cdist)"
    return r["impl"]


def main_table(rows: Sequence[Dict]) -> Tuple[List[str], List[List[str]]]:
    """Every row: time, throughput, roofline fraction, memory, error, and the fused speedup on baseline rows."""
    extra = [k for k in HEADER_CONSTANTS if _varying(rows, k)]
    head = (["op", "mode", "N", "M", "D"] + extra + ["impl", "median ms", "p20–p80 ms", "n", "fused speedup",
            "Mpairs/s", "GFLOP/s", "roofline", "peak MB", "rel err", "note"])
    body = []
    for r in rows:
        ok = r["status"] == "ok"
        roof = _roof(r)
        body.append([r["op"], MODE_LABEL[r["mode"]], fmt_n(r["n"]), fmt_n(r["m"]), str(r["d"])]
                    + [str(r[k]) for k in extra]
                    + [impl_label(r), fmt_ms(r["median_s"]),
                       f"{fmt_ms(r['p20_s'])}–{fmt_ms(r['p80_s'])}" if ok else "nan", str(r.get("reps", 0)),
                       f"{r['fused_speedup']:.1f}×" if _finite(r.get("fused_speedup")) else "—",
                       fmt_num(r["pairs_per_s"] / 1e6 if _finite(r.get("pairs_per_s")) else None,
                               missing="—" if ok else "nan"),
                       fmt_num(r["gflops"]), roof if ok else "nan", fmt_mb(r["peak_mem_mb"]),
                       fmt_num(r["err_rel"], ".1e", missing="—" if ok else "nan"),
                       (r.get("note") or "") if ok else r["reason"]])
    return head, body


def _case_key(r: Dict) -> Tuple:
    return r["group"], r["op"], r["mode"], r["n"], r["m"], r["d"], r["dtype"], r["device"], r["kernel"]


def best_variant(impls: Dict[str, Dict], family: str) -> Tuple[Optional[Dict], str]:
    """The faster ``ok`` row of a baseline family's variants in one case (``VARIANTS``: eager = cdist or
    expansion, compile = the same under torch.compile) and its label: "cdist" / "expansion" when both ran,
    "cdist only" / "expansion only" when one did, "" when the op forms no distance matrix (one dense
    formula, no variants).  (None, failure label) when none ran: the common failure ("OOM", "too slow",
    "no double backward", ...) or "failed" when they differ; (None, "") when the family was not asked for."""
    rows = [impls[i] for i in VARIANTS[family] if i in impls]
    ok = [r for r in rows if r["status"] == "ok" and _finite(r.get("median_s"))]
    if not ok:
        labels = {_fail_label(r) for r in rows}
        if not labels:
            return None, ""
        return None, labels.pop() if len(labels) == 1 else "failed"
    best = min(ok, key=lambda r: r["median_s"])
    others = [r for r in rows if r is not best]
    if len(ok) == 1 and (all(_no_distance_matrix(r) for r in others) if others else _formula_only(best["op"])):
        return best, ""
    return best, VARIANT_OF[best["impl"]] + ("" if len(ok) > 1 else " only")


def _formula_only(op: str) -> bool:
    """An op whose dense code forms no distance matrix (kid, pulling_away, langevin_step): one formula."""
    spec = OPS.get(op)
    return spec is not None and spec.eager_dist is None


def _no_distance_matrix(r: Dict) -> bool:
    return r["status"] == "unavailable" and "no distance matrix" in r.get("reason", "")


def _fail_label(r: Dict) -> str:
    if "double backward" in r.get("reason", ""):  # torch.compile's aot_autograd: a flow's backward
        return "no double backward"
    return FAIL_LABEL.get(r["status"], "failed")


def _speedup_cell(r: Optional[Dict], label: str, fused_s: float) -> str:
    if r is None:
        return label or "—"
    return f"{r['median_s'] / fused_s:.1f}×" + (f" ({label})" if label else "")


def summary_table(rows: Sequence[Dict]) -> Tuple[List[str], List[List[str]]]:
    """One line per case with a fused row: fused time, its speedup against each baseline, memory, roofline.

    The eager and torch.compile baselines each come in two variants (squared distances by ``cdist`` or by
    the expansion |a|^2 + |b|^2 - 2 a.b); the table has one column per family, "vs best eager" and
    "vs best compile": the ratio against the faster variant of that case, which it names ("27.3× (expansion)";
    "(cdist only)" where only one variant ran, e.g. results written before the expansion variant existed)."""
    fams = [f for f in VARIANTS if any(r["impl"] in VARIANTS[f] for r in rows)]
    members = {i for f in VARIANTS for i in VARIANTS[f]}
    others = [i for i in IMPLS if i != "fused" and i not in members and any(r["impl"] == i for r in rows)]
    by_case: Dict[Tuple, Dict[str, Dict]] = {}
    for r in rows:
        by_case.setdefault(_case_key(r), {})[r["impl"]] = r
    extra = [k for k in HEADER_CONSTANTS if _varying(rows, k)]
    head = (["op", "mode", "N", "M", "D"] + extra + ["fused ms"] + [f"vs best {f}" for f in fams]
            + [f"vs {b}" for b in others] + ["fused MB", "eager MB", "fused roofline"])
    body = []
    for key, impls in by_case.items():
        f = impls.get("fused")
        if not f or f["status"] != "ok":
            continue
        cells = [_speedup_cell(*best_variant(impls, fam), f["median_s"]) for fam in fams]
        for b in others:
            r = impls.get(b)
            if r is None:
                cells.append("—")
            elif r["status"] == "ok":
                cells.append(f"{r['fused_speedup']:.1f}×")
            else:
                cells.append(FAIL_LABEL.get(r["status"], r["status"]))
        e, elabel = best_variant(impls, "eager")
        body.append([f["op"], MODE_LABEL[f["mode"]], fmt_n(f["n"]), fmt_n(f["m"]), str(f["d"])]
                    + [str(f[k]) for k in extra] + [fmt_ms(f["median_s"])] + cells
                    + [fmt_mb(f["peak_mem_mb"]), fmt_mb(e["peak_mem_mb"]) if e else (elabel or "—"), _roof(f)])
    return head, body


def headline_table(rows: Sequence[Dict]) -> Tuple[List[str], List[List[str]]]:
    """The README's headline table: per case the fused time, the best eager and best torch.compile times
    (faster of the cdist and expansion variants, named), KeOps, the two ratios and the memory of fused and
    best eager."""
    by_case: Dict[Tuple, Dict[str, Dict]] = {}
    for r in rows:
        by_case.setdefault(_case_key(r), {})[r["impl"]] = r
    head = ["op", "mode", "gankernels ms", "best eager ms", "best torch.compile ms", "KeOps ms", "vs best eager",
            "vs best compile", "memory fused / eager"]
    body = []
    for key, impls in by_case.items():
        f = impls.get("fused")
        if not f or f["status"] != "ok":
            continue
        e, elabel = best_variant(impls, "eager")
        c, clabel = best_variant(impls, "compile")
        k = impls.get("keops")

        def ms(r, label=""):
            if r is None:
                return label or "—"
            return fmt_ms(r["median_s"]) + (f" ({label})" if label else "")
        kms = "—" if k is None else (fmt_ms(k["median_s"]) if k["status"] == "ok" else FAIL_LABEL.get(k["status"]))
        mem = f"{fmt_mb(f['peak_mem_mb'])} MB / " + (f"{fmt_mb(e['peak_mem_mb'])} MB" if e else (elabel or "—"))
        body.append([f"`{f['op']}`", MODE_LABEL[f["mode"]], f"**{fmt_ms(f['median_s'])}**", ms(e, elabel),
                     ms(c, clabel), kms, _speedup_cell(e, elabel, f["median_s"]),
                     _speedup_cell(c, clabel, f["median_s"]), mem])
    return head, body


def _series(rows: Sequence[Dict]) -> Dict[Tuple, List[Dict]]:
    """Rows of one group by everything but N (and M when M = N): the series of a scaling sweep."""
    out: Dict[Tuple, List[Dict]] = {}
    for r in rows:
        key = (r["op"], r["mode"], r["d"], r["dtype"], r["device"], r["kernel"], r["m"] if r["m"] != r["n"] else None,
               r["group"])
        out.setdefault(key, []).append(r)
    return {k: sorted(v, key=lambda r: r["n"]) for k, v in out.items() if len({r["n"] for r in v}) >= 3}


def sweep_lines(rows: Sequence[Dict], mem_cap_gb: Optional[float]) -> List[str]:
    """For each scaling series: per implementation, the largest N that ran and what stopped it."""
    lines = []
    for (op, mode, d, dtype, device, kernel, _, _), series in _series(rows).items():
        parts = []
        for impl in IMPLS:
            rs = [r for r in series if r["impl"] == impl]
            ok = [r for r in rs if r["status"] == "ok"]
            if not ok:
                continue
            last = ok[-1]
            s = f"{impl} up to N = {fmt_n(last['n'])} (peak {fmt_mb(last['peak_mem_mb'])} MB)"
            stop = next((r for r in rs if r["n"] > last["n"] and r["status"] != "ok"), None)
            if stop:
                s += f", at N = {fmt_n(stop['n'])}: {stop['reason']}"
            parts.append(s)
        cap = f" under a {mem_cap_gb:g} GB cap" if mem_cap_gb else ""
        lines.append(f"{op} {MODE_LABEL[mode]}, D = {d}, {dtype}{cap}: " + "; ".join(parts) + ".")
    return lines


def format_text(head: List[str], body: List[List[str]]) -> str:
    widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h) for i, h in enumerate(head)]
    left = {"op", "mode", "impl", "note", "kernel", "dtype", "device"}
    def line(cells):
        return "  ".join(c.ljust(w) if h in left else c.rjust(w) for c, w, h in zip(cells, widths, head)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(c) for c in body])


def format_markdown(head: List[str], body: List[List[str]]) -> str:
    left = {"op", "mode", "impl", "note", "kernel", "dtype", "device"}
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if h in left else "---:" for h in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in cells) + " |" for cells in body]
    return "\n".join(lines)


def header_lines(result: Dict) -> List[str]:
    m, rows = result["meta"], result["rows"]
    c = m.get("ceilings") or {}
    s = m.get("settings") or {}
    hw = m["device_name"]
    if m.get("device", "cpu") == "cpu":
        hw += f" ({m['simd']}, {m['logical_cpus']} logical CPUs, cpu MHz {fmt_num(m.get('cpu_mhz'), '.0f')})"
    opt = ", ".join(f"{k} {m.get(k) or 'not installed'}" for k in ("pykeops", "geomloss", "torchmetrics"))
    lines = [
        f"hardware: {hw}; torch threads: {m['threads']}",
        f"software: torch {m['torch']}, triton {m.get('triton') or 'not installed'}, gankernels {m['gankernels']} "
        f"(git {m['git']}); {opt}",
    ]
    if c:
        lines.append(f"roofline ceilings (measured at start, fastest of 10 calls): fp32 GEMM "
                     f"{c['gemm_flops'] / 1e9:.1f} GFLOP/s (torch.mm {c['gemm_n']}²), "
                     f"copy {c['copy_bytes_per_s'] / 1e9:.1f} GB/s "
                     f"({c['copy_elems']:,} fp32, read + write)")
    if s:
        lines.append(f"protocol: median (p20–p80) of n calls after warm-up, {s['budget_s']:g} s per case "
                     f"(a call over {s['slow_s']:g} s is timed once); peak MB = memory the call adds "
                     f"({next((r['mem_source'] for r in rows if r['mem_source']), '')}); "
                     f"memory cap {s['mem_cap_gb']:g} GB, "
                     f"time limit {s['time_limit_s']:g} s per case; rel err = max|Δ| / max|float64 reference| "
                     f"(N ≤ {s['check_max_n']:,})")
    for k in HEADER_CONSTANTS:
        vals = sorted({str(r[k]) for r in rows if r[k]})
        if len(vals) == 1:
            lines.append(f"{k}: {vals[0]}")
    lines.append("throughput: Mpairs/s = kernel evaluations / median; GFLOP/s = model flops / median "
                 "(gankernels/bench/registry.py); roofline = roofline time / median, bound by the larger of "
                 "model flops / GEMM rate and model bytes / copy bandwidth")
    if m.get("command"):
        lines.append(f"command: `{m['command']}`")
    lines.append(f"date: {m.get('date', '')}; total wall time {m.get('total_wall_s', 0) / 60:.1f} min")
    if m.get("note"):
        lines.append(f"note: {m['note']}")
    return lines


def _groups(rows: Sequence[Dict]) -> Dict[str, List[Dict]]:
    out: Dict[str, List[Dict]] = {}
    for r in rows:
        out.setdefault(r.get("group") or "", []).append(r)
    return out


def render_text(result: Dict) -> str:
    groups = _groups(result["rows"])
    cap = (result["meta"].get("settings") or {}).get("mem_cap_gb")
    out = ["gankernels bench", *("  " + ln for ln in header_lines(result))]
    for name, rows in groups.items():
        out += ["", f"== {name} =="] if len(groups) > 1 else [""]
        out += [format_text(*main_table(rows))]
        head, body = summary_table(rows)
        if body:
            out += ["", "fused speedup (baseline median / fused median; vs best eager / compile: the faster of "
                    "the cdist and expansion variants, named):", format_text(head, body)]
        out += ["", *sweep_lines(rows, cap)] if sweep_lines(rows, cap) else []
    return "\n".join(out) + "\n"


def render_markdown(result: Dict, heading: str, plot_path: Optional[str] = None) -> str:
    groups = _groups(result["rows"])
    cap = (result["meta"].get("settings") or {}).get("mem_cap_gb")
    out = [heading, "", *("- " + ln for ln in header_lines(result)), ""]
    full = []
    for name, rows in groups.items():
        if len(groups) > 1:
            out += [f"### {name}", ""]
        head, body = summary_table(rows)
        if body:
            out += ["Fused speedup (baseline median / fused median; vs best eager / vs best compile: against the "
                    "faster of the cdist and expansion variants of that case, named in brackets; OOM: out of "
                    "memory under the cap; n/a: not installed or not applicable):", "", format_markdown(head, body),
                    ""]
        sweeps = sweep_lines(rows, cap)
        if sweeps:
            out += ["Scaling: " + " ".join(sweeps), ""]
            if plot_path:
                out += [f"![scaling plot]({plot_path})", ""]
        full += ([f"All rows{' (' + name + ')' if len(groups) > 1 else ''}:", "", format_markdown(*main_table(rows)),
                  ""])
    return "\n".join(out + full)


# ----------------------------------------------------------------------------- files

def write_json(result: Dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(json_safe(result), f, indent=1, allow_nan=False)
        f.write("\n")


def read_json(path: str) -> Dict:
    """A results file back, with null numbers as nan again."""
    with open(path) as f:
        result = json.load(f)
    for r in result["rows"]:
        for k in ROW_FIELDS:
            if r.get(k) is None and k not in ("triton", "group"):
                r[k] = float("nan")
        r.setdefault("group", "")
    return result


def write_csv(result: Dict, path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW_FIELDS), extrasaction="ignore")
        w.writeheader()
        for r in result["rows"]:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in ROW_FIELDS})


# ----------------------------------------------------------------------------- plot

COLORS = {"fused": "tab:red", "eager": "tab:blue", "compile": "tab:green", "keops": "tab:purple",
          "eager-expansion": "tab:cyan", "compile-expansion": "tab:gray",
          "geomloss": "tab:brown", "torchmetrics": "tab:orange", "fused-gram": "tab:pink",
          "fused-covariance": "tab:olive"}
MEM_FLOOR_MB = 0.01


def plot(result: Dict, path: str) -> int:
    """Log-log time and peak memory against N, one line per implementation, for every scaling series
    (3 or more sizes); failed points are markers on the top edge (x: out of memory, >: too slow).
    Returns the number of series plotted (0: no file written)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    series = _series(result["rows"])
    if not series:
        return 0
    meta = result["meta"]
    cap_gb = (meta.get("settings") or {}).get("mem_cap_gb")
    fig, axes = plt.subplots(len(series), 2, figsize=(12, 4.6 * len(series)), squeeze=False)
    fmt_x = FuncFormatter(lambda v, _: f"{v / 1024:g}k" if v >= 1024 else f"{v:g}")
    fmt_t = FuncFormatter(lambda v, _: f"{v * 1e3:g} ms" if v < 1 else f"{v:g} s")
    fmt_m = FuncFormatter(lambda v, _: f"{v / 1000:g} GB" if v >= 1000 else f"{v:g} MB")
    for key, (ax_t, ax_m) in zip(series, axes):
        op, mode, d, dtype, device, kernel, m_fixed, _ = key
        rows = series[key]
        ns = sorted({r["n"] for r in rows})
        for impl in [i for i in IMPLS if any(r["impl"] == i for r in rows)]:
            rs = [r for r in rows if r["impl"] == impl]
            ok = [r for r in rs if r["status"] == "ok"]
            style = dict(color=COLORS.get(impl), marker="o", ms=4, lw=2 if impl == "fused" else 1.3, label=impl)
            if ok:
                ax_t.plot([r["n"] for r in ok], [r["median_s"] for r in ok], **style)
                ax_m.plot([r["n"] for r in ok], [max(r["peak_mem_mb"], MEM_FLOOR_MB) for r in ok], **style)
            for r in rs:
                marker = {"oom": "X", "too slow": ">"}.get(r["status"])
                if marker:
                    for ax in (ax_t, ax_m):
                        ax.plot([r["n"]], [0.96], marker=marker, ms=10, color=COLORS.get(impl), ls="none",
                                transform=ax.get_xaxis_transform(), clip_on=False)
        what = f"{op} {MODE_LABEL[mode]}, D = {d}, {dtype}" + (f", M = {m_fixed}" if m_fixed else ", M = N")
        for ax in (ax_t, ax_m):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(ns)
            ax.xaxis.set_major_formatter(fmt_x)
            ax.set_xlabel("N (points per set)")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(what, fontsize=10)
        for ax, fmt in ((ax_t, fmt_t), (ax_m, fmt_m)):
            ax.yaxis.set_major_formatter(fmt)
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax_t.set_ylabel("median time per call")
        ax_m.set_ylabel("peak memory added by the call")
        ax_m.annotate(f"values below {MEM_FLOOR_MB:g} MB are drawn at {MEM_FLOOR_MB:g} MB", (0.99, 0.01),
                      xycoords="axes fraction", ha="right", va="bottom", fontsize=7, color="gray")
        if cap_gb:
            ax_m.axhline(cap_gb * 1024, color="gray", ls="--", lw=1)
            ax_m.annotate(f"memory cap {cap_gb:g} GB", (ns[0], cap_gb * 1024), fontsize=8, color="gray",
                          xytext=(0, 3), textcoords="offset points")
        handles, _ = ax_t.get_legend_handles_labels()
        handles += [Line2D([], [], marker="X", color="k", ls="none", label="out of memory"),
                    Line2D([], [], marker=">", color="k", ls="none", label="too slow (time limit)")]
        ax_t.legend(handles=handles, fontsize=8, loc="upper left")
    threads = f" (torch threads: {meta['threads']})"
    hw = meta["device_name"] + (threads if meta.get("device", "cpu") == "cpu" else "")
    fig.suptitle(f"gankernels bench — {hw}, torch {meta['torch']}, git {meta['git']}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return len(series)
