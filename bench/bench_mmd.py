"""CPU benchmark of the biased MMD^2 (issue 2): fused gankernels.mmd2 vs eager / torch.compile / KeOps.

    python -m bench.bench_mmd [--sizes 4096,16384] [--dims 2,64,256]
                              [--impl fused,eager,compile,keops] [--modes fwd,fwdbwd]
                              [--threads 2] [--out bench/results_mmd_cpu.json] [--md FILE]
                              [--mem-cap-gb 16] [--time-limit 300] [--budget-s 6]

What is measured
    Biased MMD^2 with Gaussian((1, 2, 4, 8, 16)) (the sum over bandwidths), float32,
    N = M points of dimension D, ``torch.set_num_threads(--threads)``:

    fused    gankernels.mmd2(x, y, Gaussian(...), "biased")        (C++ tiled engine, O(N D) memory)
    eager    cdist(a, b)**2 -> sum_s exp(-d / 2 s^2) -> means, for XX, YY, XY (bench/common.py)
    compile  torch.compile(eager), one compile per process; compile time is recorded apart
             (first call minus the steady median) and excluded from the timings; the inductor
             cache is a fresh directory per run, so it is a cold compile
    keops    pykeops.torch.LazyTensor: per block sum_ij exp(-sqdist * g).sum() with g = 1/(2 s^2)
             a 5-vector, Sum reductions; backward by torch autograd through the KeOps reductions.
             Its first-call overhead (code generation + C++ compile, or loading from
             ~/.cache/keops*) is reported like the compile time.
    modes    fwd     = value only (no autograd graph)
             fwdbwd  = value + backward to x and y (fresh leaves each call)

Protocol
    Every (impl, N, D, mode) case runs in a fresh child process (``--single``), so that its
    peak resident memory (``ru_maxrss``, which includes the ~0.3 GB of the torch runtime)
    belongs to that case alone.  Inputs are generated deterministically from (N, D, seed), so
    all implementations see bitwise the same data (a checksum per row is verified).
    Timing: one warm-up call (two for compile, and for keops unless the same (D, mode) already
    ran in this run, so its formulas are in the KeOps disk cache), then as many timed calls as
    fit in ``--budget-s`` (at most ``--max-reps``); median, p20, p80 of them.  A case whose last
    warm-up call takes more than ``--slow-s`` (default: the budget) is timed by that single call
    (for fused / eager it is the first call of the process; at those sizes, seconds per call,
    one-time start-up costs are negligible, and eager allocates fresh N x M buffers every call).
    Skips: eager / compile are not run when their estimated Gram memory exceeds ``--mem-cap-gb``
    (estimate: (N^2 + N M + M^2) * 4 bytes * temporaries, temporaries = eager fwd 4, eager
    fwd+bwd 8 (the exp outputs, cdist and pow are kept for backward), compile fwd 2, compile
    fwd+bwd 4 -- measured ~2, ~7.5, ~1.1, ~1.8 at N = 4096, rounded up); a case predicted, from the same impl at a
    smaller N (time x pair-count ratio), to exceed ``--time-limit`` is not run; a child that runs
    past ``--time-limit`` is killed; one that dies (OOM killer, crash, allocation failure under
    its RLIMIT_DATA of mem-cap + 4 GB) gives a nan row with the reason, never a crash here.
    Accuracy: a reference child evaluates the value and the gradients in float64 with the fused
    op (and, for N <= --eager-ref-max, the eager code in float64 too: their agreement is reported).
    Each row gives |value - ref| and max|grad - ref| / max|ref grad|.

Flop model (what GFLOP/s counts)
    pairs P = N^2 + N M + M^2 -- the entries of the three Gram blocks XX, YY, XY.
    fwd     2 D flops per pair: the dot product / squared distance of the pair.
    fwd+bwd 6 D flops per pair: 2 D forward + 4 D backward (the gradient of a pair w.r.t. both
            points: one D-length multiply-add each).
    Not counted: the exponentials (5 per pair) and the other O(1)-per-pair scalar work, which
    dominate at small D (D = 2 is exp-bound).  The same model flops are used for every
    implementation, so "GFLOP/s" is an implementation-independent throughput (model flops /
    median time); "Mpairs/s" is P / median time.

Fraction of the fp32 peak (fused only)
    The fused engine works on [x; y] (L = N + M points) in self mode with 128 x 128 tiles,
    visiting only the tiles J >= I: U = sum of bi * bj over those tiles (~L^2 / 2) pairs, whose
    dot products are tile GEMMs (for D > 8; for D <= 8 they are exact differences, not GEMMs).
    Executed dot-product flops: fwd 2 D U; fwd+bwd 2 D U + backward (z recomputed 2 D U, row-side
    flow GEMM 2 D U, mirrored column-side flow GEMM 2 D U_offdiag).  Executed GFLOP/s is reported
    as a fraction of (a) the empirical fp32 GEMM peak, torch.mm of 2048 x 2048 at the same thread
    count, and (b) the theoretical FMA peak threads x 2 FMA pipes x 8 fp32 lanes (AVX2) x 2 flops
    x clock ("cpu MHz" of /proc/cpuinfo).  The exponentials are not in the count.
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

from .common import (
    REPO, SIGMAS, checksum, cpu_mhz, cpu_model, eager_mmd2, fmt_time, git_revision, logical_cpus, make_inputs,
    percentile, simd_summary, write_section,
)

IMPLS = ("fused", "eager", "compile", "keops")
MODES = ("fwd", "fwdbwd")
GIB = 1024 ** 3
# Gram temporaries alive at the peak, per block entry (see the module docstring)
# (measured at N = 4096, D = 2..256, as (peak RSS - runtime) / (P * 4 bytes): eager fwd ~2, fwd+bwd ~7.5,
# compile fwd ~1.1, fwd+bwd ~1.8; the factors below round those up)
GRAM_TEMPORARIES = {("eager", "fwd"): 4, ("eager", "fwdbwd"): 8, ("compile", "fwd"): 2, ("compile", "fwdbwd"): 4}
FUSED_TILE = 128          # csrc/engine.h kTileI (self mode uses square tiles of this size)
FUSED_SMALL_D = 8         # csrc/engine.h kSmallD: no GEMM for D <= this
SECTION = "## CPU: mmd2 (issue 2)"


# ============================================================================= models

def model_pairs(n: int, m: int) -> int:
    return n * n + n * m + m * m


def model_flops(n: int, m: int, d: int, mode: str) -> float:
    return float((2 if mode == "fwd" else 6) * d * model_pairs(n, m))


def fused_tile_pairs(n: int, m: int, tile: int = FUSED_TILE):
    """(U, U_diag): pairs in the tiles J >= I over L = n + m points, and in the diagonal tiles."""
    L = n + m
    sizes = [min(tile, L - i0) for i0 in range(0, L, tile)]
    total = sum(sizes)
    u, u_diag, suffix = 0, 0, total
    for b in sizes:
        u += b * suffix        # tile row I against all tiles J >= I
        u_diag += b * b
        suffix -= b
    return u, u_diag


def fused_exec_flops(n: int, m: int, d: int, mode: str) -> float:
    u, u_diag = fused_tile_pairs(n, m)
    fwd = 2.0 * d * u
    if mode == "fwd":
        return fwd
    return fwd + 2.0 * d * u + 2.0 * d * u + 2.0 * d * (u - u_diag)


def gram_mem_estimate(impl: str, n: int, m: int, mode: str) -> float:
    """Estimated peak bytes of the dense Gram temporaries of eager / compile (0 for the others)."""
    t = GRAM_TEMPORARIES.get((impl, mode))
    return 0.0 if t is None else float(model_pairs(n, m)) * 4.0 * t


def theoretical_peak_gflops(threads: int) -> Optional[float]:
    mhz = cpu_mhz()
    if mhz is None:
        return None
    return threads * 2 * 8 * 2 * mhz / 1e3


# ============================================================================= child side

def _set_memory_limit(gb: float) -> None:
    import resource
    lim = int(gb * GIB)
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (lim, lim))
    except (ValueError, OSError):
        pass


def _maxrss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _keops_mmd2_factory(sigmas):
    from pykeops.torch import LazyTensor

    def block_mean(a, b, g):
        ai, bj = LazyTensor(a[:, None, :]), LazyTensor(b[None, :, :])
        k = (-(ai.sqdist(bj) * LazyTensor(g))).exp().sum()  # sum over the bandwidths: scalar per (i, j)
        return k.sum(dim=1).sum() / (a.shape[0] * b.shape[0])

    def keops_mmd2(x, y):
        import torch
        g = torch.tensor([1.0 / (2.0 * s * s) for s in sigmas], dtype=x.dtype, device=x.device)
        return block_mean(x, x, g) + block_mean(y, y, g) - 2.0 * block_mean(x, y, g)

    return keops_mmd2


def _build(impl: str, sigmas):
    import torch
    import gankernels as gk
    if impl == "fused":
        kernel = gk.Gaussian(sigmas=sigmas)
        return lambda a, b: gk.mmd2(a, b, kernel, estimator="biased")
    if impl == "eager":
        return lambda a, b: eager_mmd2(a, b, sigmas)
    if impl == "compile":
        return torch.compile(lambda a, b: eager_mmd2(a, b, sigmas), dynamic=False)
    if impl == "keops":
        return _keops_mmd2_factory(sigmas)
    raise ValueError(f"unknown impl {impl!r}")


def _one_call(fn, x, y, mode: str):
    import torch
    if mode == "fwd":
        with torch.no_grad():
            v = fn(x, y)
        return float(v), None
    xr, yr = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    v = fn(xr, yr)
    v.backward()
    return float(v.detach()), torch.cat([xr.grad, yr.grad])


def _child_case(a) -> Dict:
    import torch
    t_start = time.perf_counter()
    out: Dict = {"impl": a.impl, "n": a.n, "m": a.n, "d": a.d, "mode": a.mode, "threads": torch.get_num_threads()}
    x, y = make_inputs(a.n, a.n, a.d, a.seed)
    out["input_checksum"] = checksum(x, y)
    fn = _build(a.impl, SIGMAS)
    out["base_rss_mb"] = _maxrss_mb()
    compiles = a.impl == "compile" or (a.impl == "keops" and not a.keops_warm)
    warm = []
    t0 = time.perf_counter()
    value, grad = _one_call(fn, x, y, a.mode)
    warm.append(time.perf_counter() - t0)
    if compiles:  # the first call compiled: one more warm-up to know the steady cost
        t0 = time.perf_counter()
        value, grad = _one_call(fn, x, y, a.mode)
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
            value, grad = _one_call(fn, x, y, a.mode)
            times.append(time.perf_counter() - t0)
    med = percentile(times, 50)
    out.update(status="ok", reason="", note=note, times_s=times, reps=len(times), median_s=med,
               p20_s=percentile(times, 20), p80_s=percentile(times, 80), first_call_s=warm[0],
               compile_s=(warm[0] - med) if compiles else None, value=value,
               peak_rss_mb=_maxrss_mb())
    if a.ref and os.path.exists(a.ref):
        ref = torch.load(a.ref)
        out["err_value"] = abs(value - ref["value"])
        if grad is not None and ref.get("grad") is not None:
            g64 = ref["grad"]
            out["err_grad"] = float((grad.double() - g64).abs().max())
            out["err_grad_rel"] = out["err_grad"] / max(float(g64.abs().max()), 1e-300)
    return out


def _child_ref(a) -> Dict:
    """float64 reference: the fused op (value + gradients), and the eager code for small N."""
    import torch
    x, y = make_inputs(a.n, a.n, a.d, a.seed)
    out: Dict = {"impl": "ref64", "n": a.n, "m": a.n, "d": a.d, "input_checksum": checksum(x, y)}
    t0 = time.perf_counter()
    fused = _build("fused", SIGMAS)
    value, grad = _one_call(fused, x.double(), y.double(), "fwdbwd" if a.ref_grads else "fwd")
    out.update(status="ok", reason="", value=value, ref_time_s=time.perf_counter() - t0)
    if a.n <= a.eager_ref_max:
        ev, eg = _one_call(lambda p, q: eager_mmd2(p, q, SIGMAS), x.double(), y.double(),
                           "fwdbwd" if a.ref_grads else "fwd")
        out["eager64_value"] = ev
        out["fused64_vs_eager64"] = abs(ev - value)
        if grad is not None:
            out["fused64_vs_eager64_grad_rel"] = float((grad - eg).abs().max() / grad.abs().max())
    torch.save({"value": value, "grad": grad}, a.ref)
    return out


def _child_gemm(a) -> Dict:
    import torch
    n = 2048
    g = torch.Generator().manual_seed(0)
    p, q = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.mm(p, q, out=c)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        torch.mm(p, q, out=c)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"impl": "gemm", "status": "ok", "n": n, "times_s": times, "median_s": percentile(times, 50),
            "gflops": flops / percentile(times, 50) / 1e9, "gflops_best": flops / min(times) / 1e9}


def child_main(a) -> int:
    _set_memory_limit(a.rlimit_gb)
    out: Dict
    try:
        import torch
        torch.set_num_threads(a.threads)
        if a.impl == "gemm":
            out = _child_gemm(a)
        elif a.impl == "ref64":
            out = _child_ref(a)
        elif a.impl == "keops" and _keops_import_error():
            out = {"status": "failed", "reason": "pykeops unavailable: " + _keops_import_error()}
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


def _keops_import_error() -> str:
    """'' when pykeops imports (and can build for the CPU), else the reason."""
    try:
        import pykeops  # noqa: F401
        from pykeops.torch import LazyTensor  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"[:200]
    return ""


# ============================================================================= parent side

def _nan_row(impl, n, d, mode, status, reason) -> Dict:
    return {"impl": impl, "n": n, "m": n, "d": d, "mode": mode, "status": status, "reason": reason,
            "median_s": float("nan"), "p20_s": float("nan"), "p80_s": float("nan"), "reps": 0}


def _run_child(args, impl, n, d, mode, tmp, ref_path=None, ref_grads=False, keops_warm=False) -> Dict:
    """Runs one --single child; always returns a dict (status ok / failed / too slow)."""
    tag = f"{impl}_{n}_{d}_{mode}"
    jpath = os.path.join(tmp, tag + ".json")
    log = os.path.join(tmp, tag + ".log")
    cmd = [sys.executable, "-m", "bench.bench_mmd", "--single", "--impl", impl, "--n", str(n), "--d", str(d),
           "--mode", mode, "--threads", str(args.threads), "--seed", str(args.seed), "--json-out", jpath,
           "--budget-s", str(args.budget_s), "--max-reps", str(args.max_reps), "--slow-s", str(args.slow_s),
           "--time-limit", str(args.time_limit), "--rlimit-gb", str(args.mem_cap_gb + 4),
           "--eager-ref-max", str(args.eager_ref_max)]
    if ref_path:
        cmd += ["--ref", ref_path]
    if ref_grads:
        cmd += ["--ref-grads"]
    if keops_warm:
        cmd += ["--keops-warm"]
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor_cache"), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=args.time_limit)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and its own children (compile workers)
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
    if rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
        why = f"killed by {sig}" + (" (likely the OOM killer)" if rc == -signal.SIGKILL else "")
    else:
        why = f"exited with code {rc}"
    try:
        with open(log) as f:
            tail = [ln.strip() for ln in f.read().splitlines() if ln.strip()][-1:]
    except OSError:
        tail = []
    row = _nan_row(impl, n, d, mode, "failed", "failed: " + why + (f"; last output: {tail[0][:150]}" if tail else ""))
    row["wall_s"] = wall
    return row


def _predict_time(rows: List[Dict], impl: str, n: int, d: int, mode: str, slow_s: float) -> Optional[float]:
    """Predicted child seconds from the same impl at the largest smaller N (time x pair ratio)."""
    prev = [r for r in rows if r["impl"] == impl and r["d"] == d and r["mode"] == mode and r["n"] < n
            and r.get("status") == "ok" and math.isfinite(r.get("median_s", float("nan")))]
    if not prev:
        return None
    p = max(prev, key=lambda r: r["n"])
    call = p["median_s"] * model_pairs(n, n) / model_pairs(p["n"], p["n"])
    calls = 1 if call > slow_s else 2
    if impl == "compile":  # keops at a larger N runs with its formulas cached (--keops-warm)
        calls += 1
    overhead = max(p.get("compile_s") or 0.0, 0.0) if impl == "compile" else 0.0
    return 5.0 + overhead + calls * call


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fmt_row_progress(r: Dict) -> str:
    s = f"  {r['impl']:>8} N={r['n']:<6} D={r['d']:<4} {r['mode']:<7} "
    if r.get("status") == "ok":
        s += f"median {fmt_time(r['median_s'])} (n={r['reps']})"
        if r.get("err_value") is not None:
            s += f" err {r['err_value']:.1e}"
        s += f" rss {r.get('peak_rss_mb', float('nan')):.0f} MB"
        if r.get("compile_s") is not None:
            s += f" compile {r['compile_s']:.1f} s"
    else:
        s += r.get("reason", r.get("status", "?"))
    return s + f"  [{r.get('wall_s', 0.0):.0f} s]"


def run_all(args) -> Dict:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dims = [int(s) for s in args.dims.split(",") if s]
    impls = [s for s in args.impl.split(",") if s]
    modes = [s for s in args.modes.split(",") if s]
    for i in impls:
        if i not in IMPLS:
            raise SystemExit(f"unknown impl {i!r}; choose from {IMPLS}")
    for mo in modes:
        if mo not in MODES:
            raise SystemExit(f"unknown mode {mo!r}; choose from {MODES}")
    import torch
    meta = {
        "benchmark": "biased mmd2, Gaussian(sigmas=(1, 2, 4, 8, 16)), float32, N = M",
        "cpu": cpu_model(), "simd": simd_summary(), "logical_cpus": logical_cpus(), "cpu_mhz": cpu_mhz(),
        "threads": args.threads, "torch": torch.__version__, "git": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.bench_mmd " + " ".join(sys.argv[1:]),
        "sizes": sizes, "dims": dims, "impls": impls, "modes": modes, "mem_cap_gb": args.mem_cap_gb,
        "time_limit_s": args.time_limit, "budget_s": args.budget_s, "max_reps": args.max_reps,
        "slow_s": args.slow_s, "seed": args.seed,
    }
    try:
        import importlib.metadata as md
        meta["pykeops"] = md.version("pykeops")
    except Exception:  # noqa: BLE001
        meta["pykeops"] = None
    result = {"meta": meta, "gemm": None, "refs": [], "rows": []}
    tmp = tempfile.mkdtemp(prefix="bench_mmd_")
    t_all = time.perf_counter()
    try:
        _progress(f"bench_mmd: {meta['cpu']}, {args.threads} threads, torch {meta['torch']}, git {meta['git']}")
        gemm = _run_child(args, "gemm", 2048, 2048, "fwd", tmp)
        result["gemm"] = gemm
        theo = theoretical_peak_gflops(args.threads)
        result["gemm"]["theoretical_gflops"] = theo
        if gemm.get("status") == "ok":
            _progress(f"  fp32 GEMM 2048^3: {gemm['gflops']:.1f} GFLOP/s (theoretical {theo or float('nan'):.1f})")
        rows: List[Dict] = result["rows"]
        for n in sizes:
            for d in dims:
                ref_path = os.path.join(tmp, f"ref_{n}_{d}.pt")
                ref = _run_child(args, "ref64", n, d, "fwdbwd", tmp, ref_path=ref_path,
                                 ref_grads="fwdbwd" in modes)
                result["refs"].append(ref)
                if ref.get("status") != "ok":
                    _progress(f"  ref64 N={n} D={d}: {ref.get('reason')} (errors will be nan)")
                    ref_path = None
                else:
                    extra = ""
                    if ref.get("fused64_vs_eager64") is not None:
                        extra = f", |fused64 - eager64| = {ref['fused64_vs_eager64']:.1e}"
                    _progress(f"  ref64 N={n} D={d}: {ref['value']:.10f} [{ref['wall_s']:.0f} s]{extra}")
                for mode in modes:
                    for impl in impls:
                        est = gram_mem_estimate(impl, n, n, mode)
                        pred = _predict_time(rows, impl, n, d, mode, args.slow_s)
                        if est > args.mem_cap_gb * GIB:
                            row = _nan_row(impl, n, d, mode, "skipped",
                                           f"skipped: estimated {est / GIB:.1f} GB > cap {args.mem_cap_gb:g} GB")
                        elif pred is not None and pred > args.time_limit:
                            row = _nan_row(impl, n, d, mode, "too slow",
                                           f"too slow: estimated {pred:.0f} s > limit {args.time_limit:.0f} s")
                        else:
                            warm = impl == "keops" and any(
                                r["impl"] == "keops" and r["d"] == d and r["mode"] == mode
                                and r.get("status") == "ok" for r in rows)
                            row = _run_child(args, impl, n, d, mode, tmp, ref_path=ref_path, keops_warm=warm)
                        row["mem_estimate_gb"] = est / GIB if est else None
                        if (row.get("input_checksum") and ref.get("input_checksum")
                                and row["input_checksum"] != ref["input_checksum"]):
                            row["note"] = (row.get("note", "") + " INPUT MISMATCH").strip()
                        rows.append(row)
                        _progress(_fmt_row_progress(row))
                        _write_json(args.out, result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    meta["total_wall_s"] = time.perf_counter() - t_all
    _progress(f"total {meta['total_wall_s']:.0f} s")
    _write_json(args.out, result)
    return result


def _write_json(path: Optional[str], result: Dict) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(path + ".tmp", path)


# ============================================================================= report

def _f(v, fmt, missing="nan"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return missing
    return format(v, fmt)


def _ms(v):
    if v is None or not math.isfinite(v):
        return "nan"
    return f"{v * 1e3:.3g}" if v < 1 else f"{v * 1e3:.0f}"


def render_markdown(result: Dict) -> str:
    meta, rows, gemm = result["meta"], result["rows"], result.get("gemm") or {}
    order = {i: k for k, i in enumerate(IMPLS)}
    rows = sorted(rows, key=lambda r: (r["n"], r["d"], MODES.index(r["mode"]), order.get(r["impl"], 9)))
    by_key = {(r["impl"], r["n"], r["d"], r["mode"]): r for r in rows}
    L: List[str] = []
    L.append(SECTION)
    L.append("")
    L.append(f"- CPU: {meta['cpu']} ({meta['simd']}, {meta['logical_cpus']} logical CPUs, "
             f"cpu MHz {_f(meta.get('cpu_mhz'), '.0f')}); threads: {meta['threads']}")
    L.append(f"- torch {meta['torch']}; pykeops {meta.get('pykeops') or 'not installed'}; "
             f"git {meta['git']}; {meta['date']}")
    L.append(f"- {meta['benchmark']}; command: `{meta['command']}`")
    theo = gemm.get("theoretical_gflops")
    if gemm.get("status") == "ok":
        L.append(f"- fp32 GEMM peak (torch.mm 2048², {meta['threads']} threads): {gemm['gflops']:.1f} GFLOP/s "
                 f"median ({gemm['gflops_best']:.1f} best); theoretical {_f(theo, '.1f')} GFLOP/s = "
                 f"{meta['threads']} cores × 2 FMA pipes × 8 fp32 lanes × 2 flops × {_f(meta.get('cpu_mhz'), '.0f')} MHz")
    L.append(f"- timing: median (p20–p80) of n calls after warm-up, in ms; per-case budget {meta['budget_s']:g} s, "
             f"cap {meta['mem_cap_gb']:g} GB, limit {meta['time_limit_s']:g} s; each case in a fresh process")
    L.append("- GFLOP/s = model flops / median: pairs P = N² + NM + M² (the XX, YY, XY Gram blocks), "
             "2·D flops per pair fwd, 6·D fwd+bwd; exponentials not counted. "
             "err = |value − float64 reference|; grad err = max|Δgrad| / max|grad|. "
             "RSS = peak resident set of the case's process (incl. ~0.3 GB torch runtime). "
             "compile s = first call − median (torch.compile: cold inductor cache; keops: code generation "
             "and build, ~0 when its disk cache already holds the formulas, \"cached\" when not measured).")
    if meta.get("total_wall_s"):
        L.append(f"- total wall time of the run: {meta['total_wall_s'] / 60:.1f} min")
    L.append("")
    L.append("| N = M | D | mode | impl | median ms | p20–p80 ms | n | vs eager | Mpairs/s | GFLOP/s | err value "
             "| grad err | peak RSS MB | compile s | note |")
    L.append("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        n, d, mode = r["n"], r["d"], r["mode"]
        ok = r.get("status") == "ok"
        med = r.get("median_s", float("nan")) if ok else float("nan")
        eager = by_key.get(("eager", n, d, mode))
        sp = "—"
        if ok and eager and eager.get("status") == "ok" and r["impl"] != "eager":
            sp = f"{eager['median_s'] / med:.1f}×"
        note = r.get("note", "") if ok else r.get("reason", r.get("status", ""))
        L.append("| " + " | ".join([
            str(n), str(d), "fwd+bwd" if mode == "fwdbwd" else "fwd", r["impl"],
            _ms(med), f"{_ms(r.get('p20_s'))}–{_ms(r.get('p80_s'))}" if ok else "nan",
            str(r.get("reps", 0)), sp,
            _f(model_pairs(n, n) / med / 1e6 if ok else None, ".3g"),
            _f(model_flops(n, n, d, mode) / med / 1e9 if ok else None, ".3g"),
            _f(r.get("err_value"), ".1e", "—" if ok else "nan"),
            _f(r.get("err_grad_rel"), ".1e", "—"),
            _f(r.get("peak_rss_mb"), ".0f"),
            _f(max(r["compile_s"], 0.0) if r.get("compile_s") is not None else None, ".1f",
               "cached" if (ok and r["impl"] == "keops") else "—"),
            note.replace("|", "/"),
        ]) + " |")
    # fused speedups
    others = [i for i in meta["impls"] if i != "fused"]
    if "fused" in meta["impls"] and others:
        L.append("")
        L.append("Fused speedup (other impl's median / fused median; nan where the other was not run):")
        L.append("")
        L.append("| N = M | D | mode | " + " | ".join(f"vs {o}" for o in others) + " |")
        L.append("|---:|---:|---|" + "---:|" * len(others))
        for n in meta["sizes"]:
            for d in meta["dims"]:
                for mode in meta["modes"]:
                    fr = by_key.get(("fused", n, d, mode))
                    if not fr or fr.get("status") != "ok":
                        continue
                    cells = []
                    for o in others:
                        orow = by_key.get((o, n, d, mode))
                        cells.append(f"{orow['median_s'] / fr['median_s']:.1f}×" if orow and orow.get("status") == "ok"
                                     else "nan")
                    L.append(f"| {n} | {d} | {'fwd+bwd' if mode == 'fwdbwd' else 'fwd'} | " + " | ".join(cells) + " |")
    # fused vs peak
    if "fused" in meta["impls"]:
        L.append("")
        L.append("Fused op: executed dot-product GFLOP/s against the fp32 peak (tile GEMMs of the self-mode "
                 f"engine over [x; y], tiles J ≥ I of {FUSED_TILE}²; fwd 2·D·U, fwd+bwd 2·D·U + 4·D·U + "
                 "2·D·U_offdiag; exponentials not counted; D ≤ 8 uses no GEMM and is exp-bound):")
        L.append("")
        L.append("| N = M | D | mode | tile pairs U | exec GFLOP/s | of GEMM peak | of theoretical |")
        L.append("|---:|---:|---|---:|---:|---:|---:|")
        g = gemm.get("gflops") if gemm.get("status") == "ok" else None
        for r in rows:
            if r["impl"] != "fused" or r.get("status") != "ok":
                continue
            n, d, mode = r["n"], r["d"], r["mode"]
            ex = fused_exec_flops(n, n, d, mode) / r["median_s"] / 1e9
            u, _ = fused_tile_pairs(n, n)
            L.append(f"| {n} | {d} | {'fwd+bwd' if mode == 'fwdbwd' else 'fwd'} | {u:.3g} | {ex:.1f} | "
                     f"{_f(ex / g * 100 if g else None, '.0f')}% | {_f(ex / theo * 100 if theo else None, '.0f')}% |")
    refs = [r for r in result.get("refs", []) if r.get("fused64_vs_eager64") is not None]
    if refs:
        L.append("")
        L.append("float64 reference check (fused fp64 vs eager fp64): " + "; ".join(
            f"N={r['n']} D={r['d']}: |Δvalue| {r['fused64_vs_eager64']:.1e}"
            + (f", grad {r['fused64_vs_eager64_grad_rel']:.1e}" if r.get("fused64_vs_eager64_grad_rel") is not None
               else "") for r in refs))
    return "\n".join(L) + "\n"


def write_md(path: str, text: str) -> None:
    """Writes the section into ``path``: replaces an existing "## CPU: mmd2 (issue 2)" section, else appends."""
    write_section(path, SECTION, text)


# ============================================================================= CLI

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="CPU benchmark of biased mmd2: fused vs eager / compile / keops",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--sizes", default="4096,16384", help="N = M values, comma separated")
    ap.add_argument("--dims", default="2,64,256", help="D values, comma separated")
    ap.add_argument("--impl", default=",".join(IMPLS), help="subset of fused,eager,compile,keops")
    ap.add_argument("--modes", default=",".join(MODES), help="subset of fwd,fwdbwd")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results_mmd_cpu.json", help="JSON results ('' for none)")
    ap.add_argument("--md", default=None, help="write/replace the markdown section in this file")
    ap.add_argument("--from-json", default=None, help="only render the markdown of an existing results JSON")
    ap.add_argument("--mem-cap-gb", type=float, default=16.0)
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds per case (child wall clock)")
    ap.add_argument("--budget-s", type=float, default=6.0, help="timed seconds per case after warm-up")
    ap.add_argument("--max-reps", type=int, default=10)
    ap.add_argument("--slow-s", type=float, default=None,
                    help="a warm-up call longer than this is the one sample (default: --budget-s)")
    ap.add_argument("--eager-ref-max", type=int, default=4096, help="largest N with an eager float64 cross-check")
    ap.add_argument("--seed", type=int, default=0)
    # child-only
    ap.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--d", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--ref-grads", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rlimit-gb", type=float, default=20.0, help=argparse.SUPPRESS)
    ap.add_argument("--keops-warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.slow_s is None:
        args.slow_s = args.budget_s
    if args.single:
        args.impl = args.impl.strip()
        return child_main(args)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        result = run_all(args)
    text = render_markdown(result)
    print(text)
    if args.md:
        write_md(args.md, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
