"""mmd2 on clustered features far from the origin, against the same op on centred normal data.

MMD-GAN critics emit clamped encoder features: a few tight clusters, all far from the origin.  The
engine's expansion ||a||^2 + ||b||^2 - 2 a.b loses bits there, and pairs that lose too many are
recomputed from exact differences; this script measures how much that costs, for three inputs of the
same size (N = M, D, the 5-bandwidth Gaussian mixture):

* ``normal``: standard normal x and y (the usual benchmark input);
* ``clustered``: 8 clusters (spread 0.2 per coordinate) of features in [0, 4]^D, as a critic with
  clamped outputs produces;
* ``clustered-centred``: the same features minus their common mean (what a user could do by hand).

    python -m bench.bench_clustered [--n 4096] [--d 64] [--threads 2] [--reps 5] [--json PATH]

Times are the median of ``--reps`` timed calls after one warm-up, wall clock, ``--threads`` threads.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

import gankernels as gk
from gankernels.bench import machine


def inputs(kind: str, n: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    centres = torch.rand(8, d, generator=g) * 4.0

    def draw():
        pick = torch.randint(0, 8, (n,), generator=g)
        return (centres[pick] + 0.2 * torch.randn(n, d, generator=g)).clamp(0.0, 4.0)

    x, y = draw(), draw()
    if kind == "clustered-centred":
        mu = torch.cat([x, y]).mean(0)
        x, y = x - mu, y - mu
    return x, y


def timed(fn, reps: int) -> float:
    return statistics.median(machine.wall_times(fn, reps)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    kernel = gk.Gaussian((1.0, 2.0, 4.0, 8.0, 16.0))
    rows = []
    for kind in ("normal", "clustered", "clustered-centred"):
        x, y = inputs(kind, args.n, args.d)
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        fwd = timed(lambda: gk.mmd2(x, y, kernel), args.reps)
        both = timed(lambda: torch.autograd.grad(gk.mmd2(xr, yr, kernel), (xr, yr)), args.reps)
        only_x = timed(lambda: torch.autograd.grad(gk.mmd2(xr, y, kernel), (xr,)), args.reps)
        rows.append(dict(input=kind, n=args.n, d=args.d, threads=args.threads, fwd_ms=round(fwd, 1),
                         fwdbwd_ms=round(both, 1), fwdbwd_x_only_ms=round(only_x, 1)))
        print(f"{kind:>18}: fwd {fwd:8.1f} ms   fwd+bwd (x, y) {both:8.1f} ms   fwd+bwd (x only) {only_x:8.1f} ms",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
