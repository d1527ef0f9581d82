"""Exact KID with its standard error (``gankernels.kid``, all pairs, fused engine) against torchmetrics'
``KernelInceptionDistance`` default protocol (100 subsets of 1,000 per set, mean and std over subsets), and
against the exact KID's previous two-pass path (``--no-two-pass`` skips it).

    python -m bench.bench_kid --n 10000 --d 2048 [--m M] [--subsets 100] [--subset-size 1000] [--reps 1]
                              [--threads T] [--json out.json]

Inputs: |N(0, I)| real and |N(0.1, I)| fake features (non-negative, like Inception pool features), float32,
CPU.  Both sides are timed from features to (mean, std), each ``--reps`` times (median).  torchmetrics runs on
identity features (its ``update`` only stores them); the time is its ``compute``.  Work: the exact estimate
visits each unordered pair of the N + M points once (``ksum_and_square``: the kernel and its square from one
tile; the two-pass path: twice, ``ksum`` with the kernel and with its square); the subset protocol evaluates
3 x subset_size^2 pairs per subset (two of them symmetric blocks it computes in full).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--m", type=int, default=None)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--subsets", type=int, default=100)
    ap.add_argument("--subset-size", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json")
    ap.add_argument("--note", default="")
    ap.add_argument("--no-two-pass", action="store_true", help="skip the previous two-pass exact path")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import gankernels as gk
    from gankernels import variance as V
    from torchmetrics.image.kid import KernelInceptionDistance

    m = args.m or args.n
    g = torch.Generator().manual_seed(0)
    real = torch.randn(args.n, args.d, generator=g).abs()
    fake = (torch.randn(m, args.d, generator=g) + 0.1).abs()

    def fused():
        return gk.kid(real, fake)

    def two_pass():  # kid's exact branch with the variance's moments from two ksum calls (the autograd path)
        mmd2, var = V.variance_from_moments(*V._moments(real, fake, gk.Polynomial(3), fused=False), "complete")
        return mmd2.float(), var.clamp_min(0.0).sqrt().float()

    def subsets():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=args.subsets,
                                             subset_size=args.subset_size)
            metric.update(real, real=True)
            metric.update(fake, real=False)
            torch.manual_seed(0)
            return metric.compute()

    rows = []
    impls = [("gankernels.kid exact (all pairs)", fused)]
    if not args.no_two_pass:
        impls.append(("exact, previous two-pass path", two_pass))
    impls.append((f"torchmetrics KID {args.subsets} subsets of {args.subset_size}", subsets))
    for name, fn in impls:
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            mean, std = fn()
            times.append(time.perf_counter() - t0)
        rows.append({"impl": name, "median_s": statistics.median(times), "times_s": times,
                     "kid": float(mean), "std": float(std)})
        print(f"{name:45s} {statistics.median(times):9.2f} s   KID {float(mean):.6f} +- {float(std):.6f}", flush=True)
    ratio = rows[-1]["median_s"] / rows[0]["median_s"]
    print(f"speedup of the exact fused KID over the subset protocol: {ratio:.2f}x  (N = {args.n}, M = {m}, "
          f"D = {args.d}, torch threads {torch.get_num_threads()})")
    ratio_two = rows[1]["median_s"] / rows[0]["median_s"] if len(rows) == 3 else None
    if ratio_two is not None:
        print(f"speedup of the one-pass exact KID over the two-pass path: {ratio_two:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "m": m, "d": args.d, "threads": torch.get_num_threads(), "note": args.note,
                       "torch": torch.__version__, "rows": rows, "speedup": ratio,
                       "speedup_over_two_pass": ratio_two}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
