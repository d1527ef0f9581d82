"""Quick benchmark (``make demo``): fused ``gankernels.mmd2`` against the eager cdist/exp code.

    python -m bench.quick [--threads T]

Biased MMD^2, Gaussian((1, 2, 4, 8, 16)), float32, N = M in {1024, 4096},
D = 64, forward and forward+backward; median wall time of a few repeats
after one warm-up call (a call slower than the per-case budget is timed once,
cold), the speedup, and the largest absolute difference between the two
implementations' values (and, for fwd+bwd, of the gradients w.r.t. x and y,
relative to the largest gradient entry).  About 30-60 s on 2 cores.
The full benchmark of every op, with torch.compile, KeOps, memory, a
roofline and a float64 reference, is ``gankernels bench`` (``--help``).
"""
from __future__ import annotations

import argparse
import time

import torch

import gankernels as gk

from gankernels.bench.machine import cpu_model, percentile
from gankernels.bench.registry import make_pair as make_inputs
from gankernels.reference import eager_mmd2_gaussian as eager_mmd2

SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)
SIZES = (1024, 4096)
DIM = 64
BUDGET_S = 3.0   # timed seconds per case after the warm-up
MAX_REPS = 7


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1.0 else f"{s:.2f} s"


def adaptive_reps(first_s: float, budget_s: float, max_reps: int) -> int:
    """How many timed repeats fit in ``budget_s`` after a warm-up call that took ``first_s``."""
    return int(max(1, min(max_reps, budget_s // max(first_s, 1e-9))))


def _run(fn, x, y, mode):
    if mode == "fwd":
        with torch.no_grad():
            return fn(x, y).item(), None
    xr, yr = x.detach().clone().requires_grad_(True), y.detach().clone().requires_grad_(True)
    v = fn(xr, yr)
    v.backward()
    return v.item(), torch.cat([xr.grad, yr.grad])


def _measure(fn, x, y, mode):
    t0 = time.perf_counter()
    value, grad = _run(fn, x, y, mode)
    first = time.perf_counter() - t0
    if first > BUDGET_S:  # slow: the warm-up call is the one sample
        return [first], value, grad
    times = []
    for _ in range(adaptive_reps(first, BUDGET_S, MAX_REPS)):
        t0 = time.perf_counter()
        value, grad = _run(fn, x, y, mode)
        times.append(time.perf_counter() - t0)
    return times, value, grad


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's current setting)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernel = gk.Gaussian(sigmas=SIGMAS)
    impls = {
        "fused": lambda a, b: gk.mmd2(a, b, kernel, estimator="biased"),
        "eager": lambda a, b: eager_mmd2(a, b, SIGMAS),
    }
    print(f"gankernels quick benchmark: biased mmd2, Gaussian{SIGMAS}, float32, D = {DIM}")
    print(f"CPU: {cpu_model()} | torch threads: {torch.get_num_threads()} | torch {torch.__version__}")
    print("median of repeats after a warm-up (n = repeats; a call over "
          f"{BUDGET_S:.0f} s is timed once, cold)\n")
    head = f"{'N = M':>6} {'mode':>7} | {'fused':>10} {'n':>2} | {'eager':>10} {'n':>2} | {'speedup':>8} | {'|Δ value|':>9} | {'rel Δ grad':>10}"
    print(head)
    print("-" * len(head))
    t_start = time.perf_counter()
    for n in SIZES:
        x, y = make_inputs(n, n, DIM)
        for mode in ("fwd", "fwdbwd"):
            res = {}
            for name, fn in impls.items():
                times, value, grad = _measure(fn, x, y, mode)
                res[name] = (percentile(times, 50), len(times), value, grad)
            (tf, nf, vf, gf), (te, ne, ve, ge) = res["fused"], res["eager"]
            dgrad = (f"{((gf - ge).abs().max() / ge.abs().max()).item():10.2e}" if gf is not None else f"{'-':>10}")
            label = "fwd" if mode == "fwd" else "fwd+bwd"
            print(f"{n:>6} {label:>7} | {fmt_time(tf):>10} {nf:>2} | {fmt_time(te):>10} {ne:>2} | "
                  f"{te / tf:7.1f}x | {abs(vf - ve):9.2e} | {dgrad}", flush=True)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s.  Full benchmark: gankernels bench --help")


if __name__ == "__main__":
    main()
