"""CPU benchmark of the smoothed score and the Langevin ops (issue 3).

Three parts, each compared in the same process on the same inputs:

1. ``smoothed_score`` forward and forward+backward (gradient w.r.t. x and y of
   ``sum(score * g)``), N = M in --sizes, D in --dims, float32: the fused op vs
   eager PyTorch (``cdist`` + ``softmax`` + matmul, as eager code writes it),
   ``torch.compile`` of that eager code, and KeOps (``sumsoftmaxweight``) when
   installed.  sigma = sqrt(D) / 2 (x ~ N(0, I), y ~ N(0.25, 1.1^2 I): the
   softmax is neither one-hot nor flat).
2. ``langevin_step`` on 10^7 floats: achieved memory bandwidth (bytes a pass
   must move / time: 12 bytes per element, read x and drift, write the result)
   against a plain ``copy_`` of 10^7 floats (8 bytes per element), plus the
   eager ``x + eta * drift + sqrt(2 eta tau) * randn_like(x)``.
3. A 100-step ``kde_langevin`` chain (10 sigmas x 10 steps, 2-D grid data) vs
   the same chain written in eager PyTorch (eager score + ``randn`` per step).

Timing: median and p20-p80 of repeated calls after one warm-up call (for
torch.compile the warm-up includes compiling; reported separately), within
--budget-s seconds per case.  A case whose warm-up exceeds --slow-s is reported
from that single call; a case predicted to exceed the memory cap is skipped
with a reason.

    python -m bench.bench_score --md bench/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

from .common import (
    cpu_mhz, cpu_model, git_revision, logical_cpus, percentile, simd_summary, time_calls, write_section,
)

SECTION = "## CPU: smoothed_score and Langevin (issue 3)"


# ----------------------------------------------------------------------------- implementations

def eager_score(x, y, sigma):
    logits = -torch.cdist(x, y) ** 2 / (2.0 * sigma * sigma)
    p = torch.softmax(logits, dim=1)
    return (p @ y - x) / (sigma * sigma)


def keops_score_factory():
    from pykeops.torch import LazyTensor

    def keops_score(x, y, sigma):
        xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
        logits = -xi.sqdist(yj) / (2.0 * sigma * sigma)
        return (logits.sumsoftmaxweight(yj, axis=1) - x) / (sigma * sigma)

    return keops_score


def build(impl: str) -> Callable:
    import gankernels as gk
    if impl == "fused":
        return gk.smoothed_score
    if impl == "eager":
        return eager_score
    if impl == "compile":
        torch._dynamo.reset()  # a fresh cache per case: otherwise the recompile limit sends later cases to eager
        return torch.compile(eager_score, dynamic=False)
    if impl == "keops":
        return keops_score_factory()
    raise ValueError(impl)


def keops_available() -> bool:
    try:
        import pykeops  # noqa: F401
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------- timing

def measure(fn: Callable[[], object], budget_s: float, slow_s: float, max_reps: int = 10,
            warmup_is_compile: bool = False) -> Dict:
    """Median of repeated calls after a warm-up call.  A warm-up slower than ``slow_s`` is the one sample,
    except when it includes compiling (``warmup_is_compile``): then one more call is timed."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if warmup_is_compile and first > slow_s:
        t0 = time.perf_counter()
        fn()
        second = time.perf_counter() - t0
        return dict(median=second, p20=second, p80=second, reps=1, first=first, note="1 call after compiling")
    if first > slow_s:
        return dict(median=first, p20=first, p80=first, reps=1, first=first, note="1 call")
    reps = int(max(3, min(max_reps, budget_s // max(first, 1e-9))))
    ts = time_calls(fn, reps)
    return dict(median=percentile(ts, 50), p20=percentile(ts, 20), p80=percentile(ts, 80), reps=reps, first=first,
                note="")


def inputs(n: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed * 7919 + n * 31 + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 1.1 * torch.randn(n, d, generator=g, dtype=torch.float64) + 0.25
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.float(), y.float(), w.float()


def score_case(impl: str, n: int, d: int, mode: str, args) -> Dict:
    row = dict(part="score", impl=impl, n=n, d=d, mode=mode)
    gram_bytes = 4.0 * n * n * (3 if mode == "fwd" else 8)  # dense temporaries alive at the peak (eager)
    if impl in ("eager", "compile") and gram_bytes > args.mem_cap_gb * 1024 ** 3:
        return dict(row, median=float("nan"), note=f"skipped: ~{gram_bytes / 1024 ** 3:.0f} GB of N x N temporaries")
    x, y, g = inputs(n, d)
    sigma = math.sqrt(d) / 2.0
    try:
        f = build(impl)
    except Exception as e:  # keops missing or failing to build
        return dict(row, median=float("nan"), note=f"unavailable: {type(e).__name__}")
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return f(x, y, sigma)
    else:
        def call():
            xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
            out = f(xr, yr, sigma)
            return torch.autograd.grad((out * g).sum(), (xr, yr))
    try:
        r = measure(call, args.budget_s, args.slow_s, warmup_is_compile=impl in ("compile", "keops"))
    except Exception as e:
        return dict(row, median=float("nan"), note=f"failed: {type(e).__name__}: {str(e)[:80]}")
    row.update(r)
    if impl == "compile":
        row["compile_s"] = max(0.0, r["first"] - r["median"])
    # accuracy against float64 (eager formula in fp64; at the largest size only the fused row is checked on rows)
    if n <= args.check_max:
        rows = slice(0, min(n, 512))
        with torch.no_grad():
            ref = eager_score(x[rows].double(), y.double(), sigma)
            out = f(x[rows], y, sigma).double() if impl != "keops" else f(x, y, sigma)[rows].double()
        row["err"] = float((out - ref).abs().max() / ref.abs().max())
    return row


def langevin_rows(args) -> List[Dict]:
    import gankernels as gk
    n = args.langevin_elems
    x = torch.randn(n)
    d = torch.randn(n)
    dst = torch.empty(n)
    out = []
    gen = torch.Generator().manual_seed(0)

    def add(name, fn, bytes_moved):
        r = measure(fn, args.budget_s, args.slow_s, max_reps=30)
        out.append(dict(part="langevin_step", impl=name, n=n, bytes=bytes_moved, **r,
                        gbps=bytes_moved / r["median"] / 1e9))

    add("copy_ (reference)", lambda: dst.copy_(x), 8 * n)
    add("fused langevin_step_ (in place)", lambda: gk.langevin_step_(dst, d, 1e-3, generator=gen), 12 * n)
    add("fused langevin_step", lambda: gk.langevin_step(x, d, 1e-3, generator=gen), 12 * n)
    add("eager x + eta d + sqrt(2 eta) randn", lambda: x + 1e-3 * d + math.sqrt(2e-3) * torch.randn_like(x), 12 * n)
    return out


def kde_chain_rows(args) -> List[Dict]:
    import gankernels as gk
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(-4, 4, 5)
    centres = torch.cartesian_prod(t, t)
    n = args.chain_n
    data = centres[torch.randint(25, (n,), generator=g)] + 0.05 * torch.randn(n, 2, generator=g)
    x0 = 4 * torch.randn(n, 2, generator=g)
    sigmas = torch.logspace(math.log10(4), math.log10(0.01), 10).tolist()
    steps, eps = 10, 5e-5

    def eager_chain():
        x = x0.clone()
        for s in sigmas:
            alpha = eps * s * s / sigmas[-1] ** 2
            for _ in range(steps):
                x = x + 0.5 * alpha * eager_score(x, data, s) + math.sqrt(alpha) * torch.randn_like(x)
        return x

    rows = []
    for name, fn in (("fused kde_langevin", lambda: gk.kde_langevin(x0, data, sigmas, steps, eps, generator=g)),
                     ("eager chain", eager_chain)):
        r = measure(fn, args.budget_s, args.slow_s)
        rows.append(dict(part="kde_chain", impl=name, n=n, d=2, steps=len(sigmas) * steps, **r))
    return rows


# ----------------------------------------------------------------------------- report

def fmt_ms(s) -> str:
    if s is None or not isinstance(s, (int, float)) or not math.isfinite(s):
        return "nan"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def render(result: Dict) -> str:
    m = result["machine"]
    L = [SECTION, ""]
    L.append(f"- CPU: {m['cpu']} ({m['simd']}, {m['logical_cpus']} logical CPUs); threads: {m['threads']}")
    L.append(f"- torch {m['torch']}; git {m['git']}; {m['date']}; command: `{m['command']}`")
    if m.get("note"):
        L.append(f"- {m['note']}")
    L.append("- timing: median (p20–p80) ms after one warm-up call; compile s = first call − median")
    L.append("")
    L.append("### smoothed_score, float32, sigma = sqrt(D) / 2")
    L.append("")
    L.append("| N = M | D | mode | impl | median ms | p20–p80 | n | fused speedup | rel. err vs fp64 | compile s | note |")
    L.append("|---:|---:|---|---|---:|---|---:|---:|---:|---:|---|")
    rows = [r for r in result["rows"] if r["part"] == "score"]
    for r in rows:
        fused = next((q for q in rows if q["impl"] == "fused" and q["n"] == r["n"] and q["d"] == r["d"]
                      and q["mode"] == r["mode"]), None)
        sp = "—"
        if r["impl"] != "fused" and fused and math.isfinite(r.get("median", float("nan"))):
            sp = f"{r['median'] / fused['median']:.1f}×"
        err = f"{r['err']:.1e}" if "err" in r else "—"
        comp = f"{r['compile_s']:.1f}" if "compile_s" in r else "—"
        L.append(f"| {r['n']} | {r['d']} | {'fwd+bwd' if r['mode'] == 'fwdbwd' else 'fwd'} | {r['impl']} | "
                 f"{fmt_ms(r.get('median'))} | {fmt_ms(r.get('p20'))}–{fmt_ms(r.get('p80'))} | {r.get('reps', '')} | "
                 f"{sp} | {err} | {comp} | {r.get('note', '')} |")
    L.append("")
    lrows = [r for r in result["rows"] if r["part"] == "langevin_step"]
    if lrows:
        copy = lrows[0]
        L.append(f"### langevin_step on {lrows[0]['n']:.0e} float32 elements")
        L.append("")
        L.append("| impl | median ms | bytes moved | GB/s | of copy_ GB/s |")
        L.append("|---|---:|---:|---:|---:|")
        for r in lrows:
            L.append(f"| {r['impl']} | {fmt_ms(r['median'])} | {r['bytes'] / 1e6:.0f} MB | {r['gbps']:.2f} | "
                     f"{100 * r['gbps'] / copy['gbps']:.0f} % |")
        L.append("")
    crows = [r for r in result["rows"] if r["part"] == "kde_chain"]
    if crows:
        L.append(f"### {crows[0]['steps']}-step annealed kde_langevin chain, N = M = {crows[0]['n']}, D = 2")
        L.append("")
        L.append("| impl | median ms | per step ms | speedup |")
        L.append("|---|---:|---:|---:|")
        for r in crows:
            L.append(f"| {r['impl']} | {fmt_ms(r['median'])} | {fmt_ms(r['median'] / r['steps'])} | "
                     f"{r['median'] / crows[0]['median']:.1f}× |")
        L.append("")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4096,16384")
    ap.add_argument("--dims", default="2,64")
    ap.add_argument("--impl", default="fused,eager,compile,keops")
    ap.add_argument("--modes", default="fwd,fwdbwd")
    ap.add_argument("--parts", default="score,langevin,chain")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=5.0)
    ap.add_argument("--slow-s", type=float, default=5.0)
    ap.add_argument("--mem-cap-gb", type=float, default=12.0)
    ap.add_argument("--check-max", type=int, default=16384)
    ap.add_argument("--langevin-elems", type=int, default=10_000_000)
    ap.add_argument("--chain-n", type=int, default=4096)
    ap.add_argument("--note", default="", help="a line for the report (e.g. other load on the machine)")
    ap.add_argument("--out", default="bench/results_score_cpu.json")
    ap.add_argument("--md", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    impls = [i for i in args.impl.split(",") if i != "keops" or keops_available()]
    rows: List[Dict] = []
    if "score" in parts:
        for n in map(int, args.sizes.split(",")):
            for d in map(int, args.dims.split(",")):
                for mode in args.modes.split(","):
                    for impl in impls:
                        r = score_case(impl, n, d, mode, args)
                        print(f"[score] N={n} D={d} {mode} {impl}: {fmt_ms(r.get('median'))} ms {r.get('note', '')}",
                              file=sys.stderr, flush=True)
                        rows.append(r)
    if "langevin" in parts:
        rows += langevin_rows(args)
    if "chain" in parts:
        rows += kde_chain_rows(args)
    result = dict(machine=dict(cpu=cpu_model(), simd=simd_summary(), logical_cpus=logical_cpus(),
                               threads=args.threads, torch=torch.__version__, git=git_revision(),
                               date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               mhz=cpu_mhz(), note=args.note,
                               command="python -m bench.bench_score " + " ".join(argv or sys.argv[1:])),
                  rows=rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    text = render(result)
    print(text)
    if args.md:
        write_section(args.md, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
