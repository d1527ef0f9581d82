"""Inputs real GAN code produces that once gave silently wrong answers: features far from the origin,
tiny batches, near-duplicates with a small bandwidth, overflowing norms and infinite rows.

Each case compares the fused float32 gradient with the float64 reference and with eager float32
autograd of the dense exact-difference formula (the accuracy rule: within 2x eager's error plus a
small atol), on the C++ engine; ``test_properties.py`` covers the same ground with random draws.
"""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref

EPS32 = torch.finfo(torch.float32).eps


def _grads(fn, x, y):
    a = x.detach().clone().requires_grad_(True)
    b = y.detach().clone().requires_grad_(True)
    return torch.autograd.grad(fn(a, b), (a, b))


def _rel(a, b):
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.parametrize("offset,sigma,n,d,near", [
    (0.0, 1.0, 8, 16, False),      # the self pairs' zero flow carried the rounding
    (100.0, 1.0, 8, 16, False),
    (1e3, 1.0, 8, 16, False),
    (1e4, 3e-3, 8, 16, True),      # near-duplicates far from the origin, tiny bandwidth
    (0.0, 1.0, 200, 64, False),    # the tile GEMM path (D > 8)
    (100.0, (1.0, 2.0, 4.0, 8.0, 16.0), 200, 64, False),
])
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd2_gradient_far_from_origin(offset, sigma, n, d, near, estimator):
    g = torch.Generator().manual_seed(0)
    x = offset + torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x + 1e-3 * torch.randn(n, d, generator=g, dtype=torch.float64) if near else \
        offset + torch.randn(n, d, generator=g, dtype=torch.float64)
    x32, y32 = x.float(), y.float()
    kernel = gk.Gaussian(sigma)
    oracle = _grads(lambda a, b: ref.mmd2(a, b, kernel, estimator), x32.double(), y32.double())
    eager = _grads(lambda a, b: ref.mmd2(a, b, kernel, estimator), x32, y32)
    fused = _grads(lambda a, b: gk.mmd2(a, b, kernel, estimator), x32, y32)
    for f, e, o in zip(fused, eager, oracle):
        assert _rel(f, o) <= 2 * _rel(e, o) + 64 * EPS32, (_rel(f, o), _rel(e, o))


@pytest.mark.parametrize("d", [3, 20])
def test_overflowing_norms_give_the_same_answer_on_every_path(d):
    """|x| ~ 1e20 in float32: |x|^2 overflows; the value must be the kernel's limit on both the
    exact-difference path (D <= 8) and the expansion path (D > 8), not NaN."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, d, generator=g) * 1e20
    y = torch.randn(5, d, generator=g) * 1e20
    for kernel in (gk.Gaussian(1.0), gk.Laplacian(1.0), gk.RationalQuadratic(), gk.InverseMultiquadric()):
        assert torch.equal(gk.kernel_sum(x, y, kernel), torch.zeros(6)), kernel
        # only the self pairs survive: phi(0) (1/N + 1/M)
        want = ref.kernel_sum(torch.zeros(1, 1), torch.zeros(1, 1), kernel).item() * (1 / 6 + 1 / 5)
        assert gk.mmd2(x, y, kernel).item() == pytest.approx(want, rel=1e-6), kernel


@pytest.mark.parametrize("d", [3, 20])
def test_infinite_row_gives_the_limit_on_every_path(d):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, d, generator=g)
    y = torch.randn(5, d, generator=g)
    x[2, 0] = float("inf")
    out = gk.kernel_sum(x, y, gk.Gaussian(1.0))
    want = ref.kernel_sum(x.double(), y.double(), gk.Gaussian(1.0))
    assert out[2].item() == 0.0
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-7)
    xn = x.clone()
    xn[4, 1] = float("nan")
    out = gk.kernel_sum(xn, y, gk.Gaussian(1.0))
    assert torch.isnan(out[4]) and torch.isfinite(out[torch.arange(6) != 4]).all()
