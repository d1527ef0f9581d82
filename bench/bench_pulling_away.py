"""CPU benchmark of the EBGAN pulling-away term (issue 4): fused gankernels.pulling_away vs eager / torch.compile.

    python -m bench.bench_pulling_away [--sizes 1024,8192,32768] [--dims 64,256]
                                       [--impl eager,compile,gram,covariance] [--modes fwd,fwdbwd]
                                       [--threads 2] [--out bench/results_pulling_away_cpu.json] [--md FILE]
                                       [--mem-cap-gb 14] [--time-limit 240] [--budget-s 5] [--note TEXT]

What is measured
    PT = sum_{i != j} (sh_i . sh_j)^2 / (N (N - 1)), sh_i = s_i / max(|s_i|, 1e-8), float32 codes
    s [N, D] ~ N(0, 1) (drawn in float64 from a seed fixed by (N, D), then cast), with
    ``torch.set_num_threads(--threads)``:

    eager       the common public formulation: normalise the rows, sim = Sh Sh^T (N x N),
                sum(sim ** 2) - sum(diag(sim) ** 2), divided by N (N - 1)
    compile     torch.compile(eager), inductor, one cold compile per process (cache in a fresh
                directory); compile time = first call - steady median, excluded from the timings
    gram        gankernels.pulling_away(s, algorithm="gram")        O(N^2 D), fused tiles
    covariance  gankernels.pulling_away(s, algorithm="covariance")  O(N D^2), D x D accumulation
    auto        ``algorithm="auto"`` picks covariance when 2 D <= N, which is every shape of the
                default grid; the table marks the picked algorithm with *
    modes       fwd = value only (no autograd graph); fwdbwd = value + gradient w.r.t. s

Protocol (as bench/bench_mmd.py)
    Every (impl, N, D, mode) case runs in a fresh child process, so its memory is its own.
    Peak memory: VmHWM of /proc/self/status (peak resident set of the child's process image,
    which unlike ru_maxrss does not inherit the parent's), and "extra" = peak - resident set
    just before the first call (inputs and torch runtime excluded): the memory of the op itself.
    Timing: one warm-up call (two for compile), then as many calls as fit in --budget-s
    (at most --max-reps); median, p20, p80.  A warm-up longer than --slow-s is the one sample.
    Skips: eager / compile are not run when their estimated N x N temporaries exceed --mem-cap-gb
    (estimate N^2 * 4 bytes * temporaries: eager fwd 3, fwd+bwd 6, compile fwd 2, fwd+bwd 3,
    measured at N = 8192 and rounded up); a case predicted (from the same impl at the largest
    smaller N, scaling the time by N^2, or by N for covariance) to exceed --time-limit is not run;
    a child past --time-limit is killed; a failed child is a nan row with the reason.
    Accuracy: a float64 reference child computes the value and gradient with the fused op in
    float64 (covariance when 2 D <= N, else Gram), and for N <= --eager-ref-max also the eager
    code in float64 (their agreement is reported).  err = |value - ref| / ref; grad err =
    max |grad - ref grad| / max |ref grad|.

Flop models (executed multiply-adds x 2 of each implementation, for "GFLOP/s")
    eager, compile   fwd 2 N^2 D (Sh Sh^T)                 fwdbwd 6 N^2 D (+ two N x N x D GEMMs)
    gram             fwd N^2 D (tiles J >= I only)          fwdbwd 5 N^2 D (+ P and P Sh per row tile)
    covariance       fwd 2 N D^2 (G = Sh^T Sh)              fwdbwd 6 N D^2 (+ G again and Sh G)
    The fp32 GEMM peak is measured as in bench_mmd (torch.mm 2048^3, same threads).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from .bench_mmd import _child_gemm, _f, _ms, _set_memory_limit, _write_json, theoretical_peak_gflops
from gankernels.bench.machine import cpu_mhz, cpu_model, git_revision, logical_cpus, percentile, simd_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def checksum(s: torch.Tensor) -> str:
    """A short fingerprint of the codes (separate processes must have used the same inputs)."""
    t = s.double()
    return f"{float(t.sum()) + 0.5 * float((t * t).sum()):.10e}"

IMPLS = ("eager", "compile", "gram", "covariance")
MODES = ("fwd", "fwdbwd")
GIB = 1024 ** 3
EPS = 1e-8
# N x N fp32 temporaries alive at the peak, measured at N = 8192 D = 64 as extra RSS / (N^2 * 4 bytes):
# eager fwd ~2.0, fwd+bwd ~5.1, compile fwd ~1.2, fwd+bwd ~2.2; rounded up
N2_TEMPORARIES = {("eager", "fwd"): 3, ("eager", "fwdbwd"): 6, ("compile", "fwd"): 2, ("compile", "fwdbwd"): 3}
SECTION = "## CPU: pulling_away (issue 4)"


# ============================================================================= baseline, inputs, models

def eager_pulling_away(s, eps: float = EPS):
    """The common public formulation: normalise, Sh Sh^T (N x N), square, remove the diagonal."""
    sh = s / s.norm(dim=1, keepdim=True).clamp_min(eps)
    sim = sh @ sh.t()
    n = s.shape[0]
    return ((sim ** 2).sum() - (sim.diagonal() ** 2).sum()) / (n * (n - 1))


def make_codes(n: int, d: int, seed: int = 0):
    import torch
    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7919 + d)
    return torch.randn(n, d, generator=g, dtype=torch.float64).to(torch.float32)


def auto_algorithm(n: int, d: int) -> str:
    from gankernels.pulling_away import choose_algorithm
    return choose_algorithm(n, d)


def model_flops(impl: str, n: int, d: int, mode: str) -> float:
    if impl in ("eager", "compile"):
        return (2.0 if mode == "fwd" else 6.0) * n * n * d
    if impl == "gram":
        return (1.0 if mode == "fwd" else 5.0) * n * n * d
    return (2.0 if mode == "fwd" else 6.0) * n * d * d


def mem_estimate(impl: str, n: int, mode: str) -> float:
    return float(n) * n * 4.0 * N2_TEMPORARIES.get((impl, mode), 0)


# ============================================================================= child side

def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _build(impl: str):
    import torch
    import gankernels as gk
    if impl == "eager":
        return eager_pulling_away
    if impl == "compile":
        return torch.compile(eager_pulling_away, dynamic=False)
    if impl in ("gram", "covariance"):
        return lambda s: gk.pulling_away(s, EPS, impl)
    raise ValueError(f"unknown impl {impl!r}")


def _one_call(fn, s, mode: str):
    import torch
    if mode == "fwd":
        with torch.no_grad():
            return float(fn(s)), None
    sr = s.detach().requires_grad_(True)
    v = fn(sr)
    v.backward()
    return float(v.detach()), sr.grad


def _child_case(a) -> Dict:
    import torch
    t_start = time.perf_counter()
    out: Dict = {"impl": a.impl, "n": a.n, "d": a.d, "mode": a.mode, "threads": torch.get_num_threads(),
                 "loadavg": os.getloadavg()[0]}
    s = make_codes(a.n, a.d, a.seed)
    out["input_checksum"] = checksum(s)
    fn = _build(a.impl)
    base = _status_mb("VmRSS")
    compiles = a.impl == "compile"
    warm = []
    for _ in range(2 if compiles else 1):
        t0 = time.perf_counter()
        value, grad = _one_call(fn, s, a.mode)
        warm.append(time.perf_counter() - t0)
    note = ""
    if warm[-1] > a.slow_s:
        times = [warm[-1]]
        note = "1 call" + ("" if compiles else " (cold)")
    else:
        left = a.time_limit - (time.perf_counter() - t_start) - 5.0
        reps = int(max(1, min(a.max_reps, a.budget_s // warm[-1], left // warm[-1])))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            value, grad = _one_call(fn, s, a.mode)
            times.append(time.perf_counter() - t0)
    med = percentile(times, 50)
    peak = _status_mb("VmHWM")
    out.update(status="ok", reason="", note=note, times_s=times, reps=len(times), median_s=med,
               p20_s=percentile(times, 20), p80_s=percentile(times, 80), first_call_s=warm[0],
               compile_s=(warm[0] - med) if compiles else None, value=value,
               peak_rss_mb=peak, base_rss_mb=base, extra_rss_mb=peak - base)
    if a.ref and os.path.exists(a.ref):
        ref = torch.load(a.ref)
        out["err_value"] = abs(value - ref["value"]) / max(abs(ref["value"]), 1e-300)
        if grad is not None and ref.get("grad") is not None:
            g64 = ref["grad"]
            out["err_grad_rel"] = float((grad.double() - g64).abs().max()) / max(float(g64.abs().max()), 1e-300)
    return out


def _child_ref(a) -> Dict:
    import torch
    import gankernels as gk
    s = make_codes(a.n, a.d, a.seed).double()
    out: Dict = {"impl": "ref64", "n": a.n, "d": a.d, "input_checksum": checksum(s.float())}
    alg = auto_algorithm(a.n, a.d)
    t0 = time.perf_counter()
    value, grad = _one_call(lambda t: gk.pulling_away(t, EPS, alg), s, "fwdbwd")
    out.update(status="ok", reason="", value=value, algorithm=alg, ref_time_s=time.perf_counter() - t0)
    if a.n <= a.eager_ref_max:
        ev, eg = _one_call(eager_pulling_away, s, "fwdbwd")
        out["fused64_vs_eager64"] = abs(ev - value) / abs(value)
        out["fused64_vs_eager64_grad_rel"] = float((grad - eg).abs().max() / grad.abs().max())
    torch.save({"value": value, "grad": grad}, a.ref)
    return out


def child_main(a) -> int:
    _set_memory_limit(a.rlimit_gb)
    try:
        import torch
        torch.set_num_threads(a.threads)
        if a.impl == "gemm":
            out = _child_gemm(a)
        elif a.impl == "ref64":
            out = _child_ref(a)
        else:
            out = _child_case(a)
    except MemoryError as e:
        out = {"status": "failed", "reason": f"out of memory (limit {a.rlimit_gb:g} GB): {e}"[:300]}
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")
        if "memory" in msg.lower() and ("alloc" in msg.lower() or "enough" in msg.lower()):
            msg = f"out of memory (limit {a.rlimit_gb:g} GB): " + msg
        out = {"status": "failed", "reason": msg[:300]}
    with open(a.json_out, "w") as f:
        json.dump(out, f)
    return 0


# ============================================================================= parent side

def _nan_row(impl, n, d, mode, status, reason) -> Dict:
    return {"impl": impl, "n": n, "d": d, "mode": mode, "status": status, "reason": reason,
            "median_s": float("nan"), "p20_s": float("nan"), "p80_s": float("nan"), "reps": 0}


def _run_child(args, impl, n, d, mode, tmp, ref_path=None) -> Dict:
    """One --single child; always returns a dict (status ok / failed / too slow)."""
    tag = f"{impl}_{n}_{d}_{mode}"
    jpath, log = os.path.join(tmp, tag + ".json"), os.path.join(tmp, tag + ".log")
    cmd = [sys.executable, "-m", "bench.bench_pulling_away", "--single", "--impl", impl, "--n", str(n),
           "--d", str(d), "--mode", mode, "--threads", str(args.threads), "--seed", str(args.seed),
           "--json-out", jpath, "--budget-s", str(args.budget_s), "--max-reps", str(args.max_reps),
           "--slow-s", str(args.slow_s), "--time-limit", str(args.time_limit),
           "--rlimit-gb", str(args.mem_cap_gb + 4), "--eager-ref-max", str(args.eager_ref_max)]
    if ref_path:
        cmd += ["--ref", ref_path]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor_cache"), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=args.time_limit)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and its compile workers
            except ProcessLookupError:
                pass
            proc.wait()
            row = _nan_row(impl, n, d, mode, "too slow", f"too slow: killed after {args.time_limit:.0f} s")
            row["wall_s"] = time.perf_counter() - t0
            return row
    wall = time.perf_counter() - t0
    if os.path.exists(jpath):
        with open(jpath) as f:
            row = json.load(f)
        base = _nan_row(impl, n, d, mode, row.get("status", "failed"), row.get("reason", ""))
        base.update(row)
        base["wall_s"] = wall
        return base
    why = f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
    row = _nan_row(impl, n, d, mode, "failed", "failed: " + why)
    row["wall_s"] = wall
    return row


def _predict_time(rows: List[Dict], impl: str, n: int, d: int, mode: str, slow_s: float) -> Optional[float]:
    prev = [r for r in rows if r["impl"] == impl and r["d"] == d and r["mode"] == mode and r["n"] < n
            and r.get("status") == "ok"]
    if not prev:
        return None
    p = max(prev, key=lambda r: r["n"])
    ratio = (n / p["n"]) if impl == "covariance" else (n / p["n"]) ** 2
    call = p["median_s"] * ratio
    calls = (1 if call > slow_s else 2) + (1 if impl == "compile" else 0)
    return 5.0 + max(p.get("compile_s") or 0.0, 0.0) + calls * call


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_all(args) -> Dict:
    sizes = [int(v) for v in args.sizes.split(",") if v]
    dims = [int(v) for v in args.dims.split(",") if v]
    impls = [v for v in args.impl.split(",") if v]
    modes = [v for v in args.modes.split(",") if v]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f"unknown impl {i!r}; choose from {IMPLS}")
    for mo in modes:
        if mo not in MODES:
            raise SystemExit(f"unknown mode {mo!r}; choose from {MODES}")
    import torch
    meta = {
        "benchmark": "pulling_away (EBGAN PT, eps = 1e-8), float32 codes s [N, D] ~ N(0, 1)",
        "cpu": cpu_model(), "simd": simd_summary(), "logical_cpus": logical_cpus(), "cpu_mhz": cpu_mhz(),
        "threads": args.threads, "torch": torch.__version__, "git": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.bench_pulling_away " + " ".join(sys.argv[1:]),
        "sizes": sizes, "dims": dims, "impls": impls, "modes": modes, "mem_cap_gb": args.mem_cap_gb,
        "time_limit_s": args.time_limit, "budget_s": args.budget_s, "note": args.note,
        "auto": {f"{n}x{d}": auto_algorithm(n, d) for n in sizes for d in dims},
    }
    result = {"meta": meta, "gemm": None, "refs": [], "rows": []}
    tmp = tempfile.mkdtemp(prefix="bench_pa_")
    t_all = time.perf_counter()
    try:
        _progress(f"bench_pulling_away: {meta['cpu']}, {args.threads} threads, torch {meta['torch']}")
        result["gemm"] = _run_child(args, "gemm", 2048, 2048, "fwd", tmp)
        result["gemm"]["theoretical_gflops"] = theoretical_peak_gflops(args.threads)
        rows: List[Dict] = result["rows"]
        for n in sizes:
            for d in dims:
                ref_path = os.path.join(tmp, f"ref_{n}_{d}.pt")
                ref = _run_child(args, "ref64", n, d, "fwdbwd", tmp, ref_path=ref_path)
                result["refs"].append(ref)
                if ref.get("status") != "ok":
                    _progress(f"  ref64 N={n} D={d}: {ref.get('reason')}")
                    ref_path = None
                for mode in modes:
                    for impl in impls:
                        est = mem_estimate(impl, n, mode)
                        pred = _predict_time(rows, impl, n, d, mode, args.slow_s)
                        if est > args.mem_cap_gb * GIB:
                            row = _nan_row(impl, n, d, mode, "skipped",
                                           f"skipped: estimated {est / GIB:.1f} GB > cap {args.mem_cap_gb:g} GB")
                        elif pred is not None and pred > args.time_limit:
                            row = _nan_row(impl, n, d, mode, "too slow",
                                           f"too slow: estimated {pred:.0f} s > limit {args.time_limit:.0f} s")
                        else:
                            row = _run_child(args, impl, n, d, mode, tmp, ref_path=ref_path)
                        if (row.get("input_checksum") and ref.get("input_checksum")
                                and row["input_checksum"] != ref["input_checksum"]):
                            row["note"] = (row.get("note", "") + " INPUT MISMATCH").strip()
                        rows.append(row)
                        _progress(f"  {impl:>10} N={n:<6} D={d:<4} {mode:<7} "
                                  + (f"median {_ms(row['median_s'])} ms (n={row['reps']}), extra "
                                     f"{row.get('extra_rss_mb', float('nan')):.0f} MB, err "
                                     f"{row.get('err_value', float('nan')):.1e}" if row.get("status") == "ok"
                                     else row.get("reason", "")) + f"  [{row.get('wall_s', 0.0):.0f} s]")
                        _write_json(args.out, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["total_wall_s"] = time.perf_counter() - t_all
    _write_json(args.out, result)
    return result


# ============================================================================= report

def render_markdown(result: Dict) -> str:
    meta, gemm = result["meta"], result.get("gemm") or {}
    order = {i: k for k, i in enumerate(IMPLS)}
    rows = sorted(result["rows"], key=lambda r: (r["n"], r["d"], MODES.index(r["mode"]), order.get(r["impl"], 9)))
    by_key = {(r["impl"], r["n"], r["d"], r["mode"]): r for r in rows}
    g_peak = gemm.get("gflops") if gemm.get("status") == "ok" else None
    L: List[str] = [SECTION, ""]
    L.append(f"- CPU: {meta['cpu']} ({meta['simd']}, {meta['logical_cpus']} logical CPUs, "
             f"cpu MHz {_f(meta.get('cpu_mhz'), '.0f')}); threads: {meta['threads']}")
    L.append(f"- torch {meta['torch']}; git {meta['git']}; {meta['date']}")
    L.append(f"- {meta['benchmark']}; command: `{meta['command']}`")
    if meta.get("note"):
        L.append(f"- note: {meta['note']}")
    if g_peak:
        L.append(f"- fp32 GEMM peak (torch.mm 2048², {meta['threads']} threads): {g_peak:.1f} GFLOP/s median")
    L.append("- eager = normalise, Sh Shᵀ (N × N), square, remove the diagonal; compile = torch.compile of it "
             "(compile time excluded); gram / covariance = `gankernels.pulling_away(s, algorithm=...)`; "
             "auto = the algorithm `algorithm=\"auto\"` picks (marked *)")
    L.append(f"- timing: median (p20–p80) of n calls after warm-up, ms; budget {meta['budget_s']:g} s per case, "
             f"cap {meta['mem_cap_gb']:g} GB, limit {meta['time_limit_s']:g} s; each case in a fresh process. "
             "GFLOP/s: each implementation's executed flops (bench module docstring) / median. err = "
             "|value − ref| / ref, grad err = max|Δgrad| / max|ref grad|, against a float64 reference. "
             "peak = peak RSS of the case's process (VmHWM, incl. ~0.3 GB torch runtime); extra = peak − "
             "RSS before the first call (the op's own memory); load = 1-minute load average of the machine "
             "when the case started (2 logical CPUs: above ~1 other jobs compete with the 2 threads)")
    if meta.get("total_wall_s"):
        L.append(f"- total wall time of the run: {meta['total_wall_s'] / 60:.1f} min")
    L.append("")
    L.append("| N | D | mode | impl | median ms | p20–p80 ms | n | vs eager | vs compile | GFLOP/s | % GEMM peak "
             "| err | grad err | peak MB | extra MB | compile s | load | note |")
    L.append("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n, d, mode, impl = r["n"], r["d"], r["mode"], r["impl"]
        ok = r.get("status") == "ok"
        med = r["median_s"] if ok else float("nan")

        def vs(other):
            o = by_key.get((other, n, d, mode))
            if ok and impl != other and o and o.get("status") == "ok":
                return f"{o['median_s'] / med:.1f}×"
            return "—"

        gf = model_flops(impl, n, d, mode) / med / 1e9 if ok else None
        name = impl + ("*" if meta["auto"].get(f"{n}x{d}") == impl else "")
        L.append("| " + " | ".join([
            str(n), str(d), "fwd+bwd" if mode == "fwdbwd" else "fwd", name, _ms(med),
            f"{_ms(r.get('p20_s'))}–{_ms(r.get('p80_s'))}" if ok else "nan", str(r.get("reps", 0)),
            vs("eager"), vs("compile"), _f(gf, ".3g"), _f(gf / g_peak * 100 if (gf and g_peak) else None, ".0f"),
            _f(r.get("err_value"), ".1e", "—" if ok else "nan"), _f(r.get("err_grad_rel"), ".1e", "—"),
            _f(r.get("peak_rss_mb"), ".0f"), _f(r.get("extra_rss_mb"), ".0f"),
            _f(max(r["compile_s"], 0.0) if r.get("compile_s") is not None else None, ".1f", "—"),
            _f(r.get("loadavg"), ".1f", "—"),
            (r.get("note", "") if ok else r.get("reason", r.get("status", ""))).replace("|", "/"),
        ]) + " |")
    extrapolated = []
    for r in rows:  # eager cases too big to run: N^2 extrapolation from the largest smaller N
        if r["impl"] != "eager" or r.get("status") == "ok":
            continue
        n, d, mode = r["n"], r["d"], r["mode"]
        prev = [p for p in rows if p["impl"] == "eager" and p["d"] == d and p["mode"] == mode
                and p["n"] < n and p.get("status") == "ok"]
        best = [by_key.get((i, n, d, mode)) for i in ("covariance", "gram")]
        best = [b for b in best if b and b.get("status") == "ok"]
        if not prev or not best:
            continue
        p = max(prev, key=lambda q: q["n"])
        est = p["median_s"] * (n / p["n"]) ** 2
        fast = min(best, key=lambda b: b["median_s"])
        extrapolated.append(
            f"N={n} D={d} {'fwd+bwd' if mode == 'fwdbwd' else 'fwd'}: eager not run ({r.get('reason', '')}); "
            f"extrapolated from N={p['n']} (× {(n / p['n']) ** 2:.0f}): ~{est:.0f} s, i.e. "
            f"~{est / fast['median_s']:.0f}× the fused {fast['impl']} ({_ms(fast['median_s'])} ms, "
            f"peak RSS {_f(fast.get('peak_rss_mb'), '.0f')} MB)")
    if extrapolated:
        L.append("")
        L.append("Eager cases over the memory cap (not measured; the eager time scales as N² at these sizes): "
                 + "; ".join(extrapolated))
    refs = [r for r in result.get("refs", []) if r.get("fused64_vs_eager64") is not None]
    if refs:
        L.append("")
        L.append("float64 reference check (fused fp64 vs eager fp64, relative): " + "; ".join(
            f"N={r['n']} D={r['d']} ({r['algorithm']}): value {r['fused64_vs_eager64']:.1e}, "
            f"grad {r['fused64_vs_eager64_grad_rel']:.1e}" for r in refs))
    return "\n".join(L) + "\n"


def write_md(path: str, text: str) -> None:
    """Replaces this benchmark's section of ``path`` if present, else appends it."""
    old = open(path).read() if os.path.exists(path) else ""
    if SECTION in old:
        start = old.index(SECTION)
        nxt = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt != -1 else "")
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "# gankernels benchmark results\n\n") + text
    with open(path, "w") as f:
        f.write(new)


# ============================================================================= CLI

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="CPU benchmark of pulling_away: fused vs eager / compile",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sizes", default="1024,8192,32768")
    ap.add_argument("--dims", default="64,256")
    ap.add_argument("--impl", default=",".join(IMPLS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results_pulling_away_cpu.json", help="JSON results ('' for none)")
    ap.add_argument("--md", default=None, help="write/replace the markdown section in this file")
    ap.add_argument("--from-json", default=None, help="only render the markdown of an existing results JSON")
    ap.add_argument("--mem-cap-gb", type=float, default=14.0)
    ap.add_argument("--time-limit", type=float, default=240.0)
    ap.add_argument("--budget-s", type=float, default=5.0)
    ap.add_argument("--max-reps", type=int, default=10)
    ap.add_argument("--slow-s", type=float, default=None, help="default: --budget-s")
    ap.add_argument("--eager-ref-max", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="free text for the report (e.g. other load on the machine)")
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--d", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--rlimit-gb", type=float, default=20.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.slow_s is None:
        args.slow_s = args.budget_s
    if args.single:
        return child_main(args)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
        if args.note:
            result["meta"]["note"] = args.note
    else:
        result = run_all(args)
    text = render_markdown(result)
    print(text)
    if args.md:
        write_md(args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
