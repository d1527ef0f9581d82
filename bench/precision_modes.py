"""The error of each dot-product precision mode on the CUDA path, emulated on the CPU.

Tensor-core TF32 keeps 10 explicit mantissa bits of each fp32 operand; 3xTF32 splits each operand into
a TF32 high part and a TF32 low part and sums hi*hi + hi*lo + lo*hi in fp32.  This script emulates both
with exact fp64 products of the rounded operands, forms the squared distances ||a||^2 + ||b||^2 - 2 a.b
as the Triton kernels do, and reports the error of a Gaussian kernel sum against float64:

    python -m bench.precision_modes [--n 1024] [--d 64] [--offset 0,10]

(no GPU needed; the numbers are properties of the arithmetic, not of a device).
"""
from __future__ import annotations

import argparse

import torch


def tf32(t: torch.Tensor) -> torch.Tensor:
    """Round fp32 values to TF32 (10 explicit mantissa bits, round to nearest even)."""
    bits = t.float().view(torch.int32)
    lsb = (bits >> 13) & 1
    rounded = (bits + 0x0FFF + lsb) & ~0x1FFF
    return rounded.view(torch.float32)


def dots(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    a, b = a.float(), b.float()
    if mode == "ieee":
        return (a.double() @ b.double().T).float()  # fp32 FMA accumulation is within a few ulps of this
    if mode == "tf32":
        return (tf32(a).double() @ tf32(b).double().T).float()
    ah, bh = tf32(a), tf32(b)
    al, bl = tf32(a - ah), tf32(b - bh)
    return (ah.double() @ bh.double().T + ah.double() @ bl.double().T + al.double() @ bh.double().T).float()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--offset", default="0,10")
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    print("| offset | mode | max rel. error of z (pairs) | rel. error of sum_j k(x_i, y_j), Gaussian(sigma = sqrt(D)) |")
    print("|---:|---|---:|---:|")
    for off in (float(v) for v in args.offset.split(",")):
        x = (off + torch.randn(args.n, args.d, generator=g)).float()
        y = (off + torch.randn(args.n, args.d, generator=g)).float()
        z64 = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1)
        k64 = torch.exp(-z64 / (2 * args.d)).sum(1)
        xn = (x.double() ** 2).sum(1).float()
        yn = (y.double() ** 2).sum(1).float()
        for mode in ("ieee", "tf32x3", "tf32"):
            z = (xn[:, None] + yn[None] - 2 * dots(x, y, mode)).clamp_min(0).double()
            k = torch.exp(-z / (2 * args.d)).sum(1)
            ez = float(((z - z64).abs() / z64).max())
            ek = float(((k - k64).abs() / k64).max())
            print(f"| {off:g} | {mode} | {ez:.1e} | {ek:.1e} |")


if __name__ == "__main__":
    main()
