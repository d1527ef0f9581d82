"""A/B of the engine's tile GEMM: run once as is and once with ``GANKERNELS_GEMM=blas`` (MKL's sgemm), same build.

    OMP_NUM_THREADS=2 python -m bench.ab_tile_gemm
    GANKERNELS_GEMM=blas OMP_NUM_THREADS=2 python -m bench.ab_tile_gemm

Prints the median of 7 calls (after one warm-up), in ms, of mmd2 fwd and fwd+bwd, kernel_sum fwd, exact kid and
smoothed_score fwd+bwd at N = M = 4,096, D = 64 (Gaussian(sigmas=(1, 2, 4, 8, 16)); smoothed_score sigma = 4).
Alternate the two runs: this is a quick check, ``gankernels bench`` is the record (bench/RESULTS.md).
"""
import os
import time

import torch

import gankernels as gk


def median_ms(f, reps=7):
    f()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2] * 1e3


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    x = torch.randn(4096, 64, requires_grad=True)
    y = torch.randn(4096, 64, requires_grad=True)
    xd, yd = x.detach(), y.detach()
    k = gk.Gaussian(sigmas=(1., 2., 4., 8., 16.))
    cases = {
        "mmd2 fwd": lambda: gk.mmd2(xd, yd, k),
        "mmd2 fwd+bwd": lambda: gk.mmd2(x, y, k).backward(),
        "kernel_sum fwd": lambda: gk.kernel_sum(xd, yd, k),
        "kid": lambda: gk.kid(xd, yd),
        "smoothed_score fwd+bwd": lambda: gk.smoothed_score(x, y, sigma=4.0).sum().backward(),
    }
    gemm = os.environ.get("GANKERNELS_GEMM", "default")
    print(f"GANKERNELS_GEMM={gemm}: " + ", ".join(f"{name} {median_ms(f):.1f}" for name, f in cases.items()))


if __name__ == "__main__":
    main()
