"""Forward accuracy of the pairwise reductions against the materialised-Gram oracle.

Every public op x kernel family x dtype on odd shapes (N, M in {1, 3, 127, 1023},
D in {1, 3, 300}, N != M), non-contiguous inputs and weights None / [M] / [M, C].
Oracle: gankernels.reference in float64 on the (rounded) inputs.  Low precision:
error <= 2x that of the same reference run in the low dtype, plus a small atol
(conftest.assert_accurate).  The big 1023 x 300 shapes run for a few kernels only.
"""
from __future__ import annotations

import math

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from conftest import (
    DTYPES, KERNELS, LOW_DTYPES, assert_accurate, dtype_id, flow_scale, input_scale, kernel_id,
    make_input, make_weights, mmd2_grad_scale, mmd2_scale, sum_scale, to64, witness_scale,
)
from gankernels.kernels import (
    Energy, Gaussian, InverseMultiquadric, Laplacian, Linear, Polyharmonic, Polynomial, RationalQuadratic,
)

kernels = pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)

# (N, M, D, weights, layout of x, layout of y)
SUM_CASES = [
    (1, 3, 1, None, "C", "C"),
    (3, 1, 300, "M", "T", "C"),
    (127, 3, 3, "MC", "S", "R"),
    (3, 127, 300, "M", "R", "T"),
    (127, 1023, 1, "MC", "T", "S"),
]
FLOW_CASES = [
    (1, 3, 1, None, "C", "C"),
    (3, 1, 300, "M", "T", "C"),
    (127, 3, 3, "M", "S", "R"),
    (3, 127, 300, None, "R", "T"),
    (127, 1023, 1, "M", "T", "S"),
]
# (N, M, D, layout x, layout y)
MMD_CASES = [
    (1, 3, 1, "C", "C"),          # biased only
    (3, 127, 3, "T", "C"),
    (127, 3, 300, "S", "R"),
    (3, 1023, 1, "R", "T"),
]
# (K, N, M, D)
WITNESS_CASES = [
    (1, 3, 127, 3),
    (127, 3, 1, 300),
    (3, 1023, 127, 1),
]

BIG_KERNELS = [Gaussian((1, 2, 4, 8, 16)), InverseMultiquadric(scales=(0.5, 1.0), beta=-0.5), Energy(), Polynomial(3)]


def _case_id(case):
    return "x".join(str(c) for c in case)


def _inputs(kernel, n, m, d, dtype, lx="C", ly="C", seed=0):
    sc = input_scale(kernel, d)
    x = make_input(n, d, dtype, lx, seed=seed, scale=sc)
    # a small shift keeps the two sets distinct in distribution (mmd2 clearly nonzero)
    y = make_input(m, d, dtype, ly, seed=seed + 1, scale=sc, shift=0.3 * sc)
    return x, y


def _check_weighted(op, kernel, dtype, n, m, d, wkind, lx, ly):
    """``op`` ("kernel_sum" or "kernel_flow") against the float64 oracle and the plain formula in ``dtype``."""
    scale = {"kernel_sum": sum_scale, "kernel_flow": flow_scale}[op]
    x, y = _inputs(kernel, n, m, d, dtype, lx, ly)
    w = make_weights(m, wkind, dtype)
    out = getattr(gk, op)(x, y, kernel, w)
    oracle = getattr(ref, op)(to64(x), to64(y), kernel, to64(w))
    naive = None if dtype == torch.float64 else getattr(ref, op)(x, y, kernel, w)
    assert_accurate(out, oracle, naive, dtype, scale(x, y, kernel, w), op)


def _check_mmd2(kernel, dtype, n, m, d, lx, ly, estimator):
    x, y = _inputs(kernel, n, m, d, dtype, lx, ly)
    out = gk.mmd2(x, y, kernel, estimator=estimator)
    oracle = ref.mmd2(to64(x), to64(y), kernel, estimator)
    naive = None if dtype == torch.float64 else ref.mmd2(x, y, kernel, estimator)
    assert_accurate(out, oracle, naive, dtype, mmd2_scale(x, y, kernel), f"mmd2 {estimator}")


# ----------------------------------------------------------------------------- the oracle itself

def test_reference_values_match_spec_formulas():
    """Spot values of reference.gram, from docs/MATH.md §1 by hand (u = (3, 4), r = 5, s = 25)."""
    a = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    b = torch.zeros(1, 2, dtype=torch.float64)
    e = math.exp
    cases = [
        (Gaussian((1, 2)), e(-25 / 2) + e(-25 / 8)),
        (RationalQuadratic(alphas=(0.5, 2.0), lengthscale=2.0), (1 + 25 / 4) ** -0.5 + (1 + 25 / 16) ** -2),
        (InverseMultiquadric(scales=(0.5, 1.0), beta=-1.5), (0.25 + 25) ** -1.5 + 26 ** -1.5),
        (Laplacian((0.5, 2)), e(-10) + e(-2.5)),
        (Energy(), -5.0),
        (Polyharmonic(1), 5.0),
        (Polyharmonic(3), 125.0),
        (Polyharmonic(2), 25 * math.log(5)),
        (Polyharmonic(2, eps=0.1), (25.01) * math.log(25.01) / 2),
        (Polyharmonic(-1, eps=1.0), 26 ** -0.5),
        (Polynomial(3), 1.0),  # a . b = 0
        (Linear(), 0.0),
    ]
    for kernel, value in cases:
        got = ref.gram(kernel, a, b).item()
        assert got == pytest.approx(value, rel=1e-12), kernel
    b2 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)  # a . b2 = 11, D = 2
    assert ref.gram(Polynomial(3), a, b2).item() == pytest.approx((11 / 2 + 1) ** 3)
    assert ref.gram(Polynomial(2, gamma=0.5, coef0=0.1), a, b2).item() == pytest.approx((5.5 + 0.1) ** 2)
    assert ref.gram(Linear(), a, b2).item() == pytest.approx(11.0)
    # the kink conventions: value is the limit, gradient 0 at coincident points
    for kernel, value in [(Laplacian((0.5, 2)), 2.0), (Energy(), 0.0), (Polyharmonic(1), 0.0), (Polyharmonic(2), 0.0)]:
        p = a.clone().requires_grad_(True)
        k = ref.gram(kernel, p, a)
        (g,) = torch.autograd.grad(k.sum(), p)
        assert k.item() == value and torch.equal(g, torch.zeros_like(g)), kernel


@kernels
def test_reference_flow_matches_spec_gradient_column(kernel):
    """reference.kernel_flow (autograd) equals the closed-form grad_a k column of docs/MATH.md §1."""
    x = make_input(5, 3, seed=3)
    y = make_input(7, 3, seed=4, shift=0.2)
    w = make_weights(7, "M")
    u = x[:, None, :] - y[None]
    s = (u ** 2).sum(-1)
    r = s.sqrt()
    if isinstance(kernel, Gaussian):
        c = -sum(sig ** -2 * torch.exp(-s / (2 * sig ** 2)) for sig in kernel.sigmas)
    elif isinstance(kernel, RationalQuadratic):
        ell = kernel.lengthscale
        c = -sum(ell ** -2 * (1 + s / (2 * a * ell ** 2)) ** (-a - 1) for a in kernel.alphas)
    elif isinstance(kernel, InverseMultiquadric):
        c = sum(2 * kernel.beta * (cc ** 2 + s) ** (kernel.beta - 1) for cc in kernel.scales)
    elif isinstance(kernel, Laplacian):
        c = -sum(torch.exp(-r / sig) / (sig * r) for sig in kernel.sigmas)
    elif isinstance(kernel, Energy):
        c = -1 / r
    elif isinstance(kernel, Polyharmonic):
        rho = (s + kernel.eps ** 2).sqrt()
        k = kernel.k
        c = k * rho ** (k - 2) if k % 2 else rho ** (k - 2) * (k * rho.log() + 1)
    if kernel.radial:
        expected = ((c * w)[:, :, None] * u).sum(1)
    elif isinstance(kernel, Polynomial):
        gamma = 1 / 3 if kernel.gamma is None else kernel.gamma
        cc = kernel.degree * gamma * (gamma * x @ y.T + kernel.coef0) ** (kernel.degree - 1)
        expected = (cc * w) @ y
    else:
        expected = (w[:, None] * y).sum(0).expand(5, 3)
    torch.testing.assert_close(ref.kernel_flow(x, y, kernel, w), expected, rtol=1e-12, atol=1e-12)


def test_reference_eager_baseline_matches_oracle():
    x, y = make_input(64, 5, seed=0), make_input(50, 5, seed=1, shift=0.5)
    sig = (1, 2, 4, 8, 16)
    torch.testing.assert_close(ref.eager_mmd2_gaussian(x, y, sig), ref.mmd2(x, y, Gaussian(sig)))
    torch.testing.assert_close(ref.eager_mmd2_gaussian(x, y, 2.0), ref.mmd2(x, y, Gaussian(2.0)))


# ----------------------------------------------------------------------------- kernel_sum

@kernels
@dtypes
@pytest.mark.parametrize("case", SUM_CASES, ids=_case_id)
def test_kernel_sum(kernel, dtype, case):
    _check_weighted("kernel_sum", kernel, dtype, *case)


BIG_CASES = [pytest.param(k, dt, id=f"{dtype_id(dt)}-{kernel_id(k)}")
             for k in BIG_KERNELS for dt in DTYPES if dt == torch.float32 or k is BIG_KERNELS[0]]


@pytest.mark.parametrize("kernel,dtype", BIG_CASES)
def test_kernel_sum_big(kernel, dtype):
    _check_weighted("kernel_sum", kernel, dtype, 1023, 127, 300, "MC", "T", "C")


def test_kernel_sum_output_shapes():
    x, y = make_input(4, 3), make_input(6, 3, seed=1)
    k = Gaussian()
    assert gk.kernel_sum(x, y, k).shape == (4,)
    assert gk.kernel_sum(x, y, k, torch.ones(6, dtype=torch.float64)).shape == (4,)
    assert gk.kernel_sum(x, y, k, torch.ones(6, 2, dtype=torch.float64)).shape == (4, 2)
    assert gk.kernel_sum(x, y, k, torch.ones(6, 1, dtype=torch.float64)).shape == (4, 1)


@pytest.mark.parametrize("kernel", [Gaussian((1, 2)), Laplacian((0.5, 2)), Energy(), Polyharmonic(1), Polynomial(3)],
                         ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("same", ["same_tensor", "clone"])
def test_coincident_points(kernel, dtype, same):
    """kernel_sum / kernel_flow(x, x): every i = j pair is coincident (s = 0 exactly).

    The typical K_xx call.  For the kink kernels the value there is the limit and the
    flow term is 0 (kernels.py); an |a|^2 + |b|^2 - 2 a.b expansion leaves s ~ eps |a|^2
    instead of 0, i.e. r ~ sqrt(eps) |a|, which this test exposes.
    """
    sc = input_scale(kernel, 4)
    x = make_input(33, 4, dtype, scale=sc)
    y = x if same == "same_tensor" else x.clone()
    w = make_weights(33, "M", dtype)
    naive = None if dtype == torch.float64 else ref.kernel_sum(x, y, kernel, w)
    assert_accurate(gk.kernel_sum(x, y, kernel, w), ref.kernel_sum(to64(x), to64(y), kernel, to64(w)), naive,
                    dtype, sum_scale(x, y, kernel, w), "kernel_sum(x, x)")
    naive = None if dtype == torch.float64 else ref.kernel_flow(x, y, kernel, w)
    assert_accurate(gk.kernel_flow(x, y, kernel, w), ref.kernel_flow(to64(x), to64(y), kernel, to64(w)), naive,
                    dtype, flow_scale(x, y, kernel, w), "kernel_flow(x, x)")


# ----------------------------------------------------------------------------- kernel_flow

@kernels
@dtypes
@pytest.mark.parametrize("case", FLOW_CASES, ids=_case_id)
def test_kernel_flow(kernel, dtype, case):
    _check_weighted("kernel_flow", kernel, dtype, *case)


@pytest.mark.parametrize("kernel,dtype", [c for c in BIG_CASES if c.values[1] in (torch.float32, torch.bfloat16)
                                           and not isinstance(c.values[0], Polynomial)])
def test_kernel_flow_big(kernel, dtype):
    _check_weighted("kernel_flow", kernel, dtype, 127, 1023, 300, "M", "S", "C")


def test_kernel_flow_is_gradient_of_kernel_sum():
    """docs/MATH.md §2: d/dx_i sum_j w_j k(x_i, y_j) = kernel_flow(x, y, w)_i."""
    x = make_input(9, 4).requires_grad_(True)
    y = make_input(11, 4, seed=2)
    w = make_weights(11, "M")
    for kernel in KERNELS:
        (g,) = torch.autograd.grad(gk.kernel_sum(x, y, kernel, w).sum(), x)
        torch.testing.assert_close(gk.kernel_flow(x.detach(), y, kernel, w), g, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- mmd2

# the unbiased estimator needs N, M >= 2 (N = 1 is tested in test_errors)
MMD_ESTIMATOR_CASES = [pytest.param(case, est, id=f"{_case_id(case)}-{est}")
                       for case in MMD_CASES for est in ("biased", "unbiased")
                       if est == "biased" or min(case[0], case[1]) >= 2]


@kernels
@dtypes
@pytest.mark.parametrize("case,estimator", MMD_ESTIMATOR_CASES)
def test_mmd2(kernel, dtype, case, estimator):
    _check_mmd2(kernel, dtype, *case, estimator)


@pytest.mark.parametrize("kernel,estimator", [(Gaussian((1, 2, 4, 8, 16)), "biased"), (Energy(), "unbiased")],
                         ids=["Gaussian-biased", "Energy-unbiased"])
def test_mmd2_big(kernel, estimator):
    _check_mmd2(kernel, torch.float32, 1023, 127, 300, "T", "C", estimator)


@pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
@pytest.mark.parametrize("dtype", LOW_DTYPES + [torch.float64], ids=dtype_id)
def test_mmd2_gradient_accuracy(kernel, dtype):
    """First-order gradients of mmd2 (the MMD-GAN generator/critic signal) in every dtype."""
    x, y = _inputs(kernel, 127, 3, 3, dtype, "T", "C")
    for estimator in ("biased", "unbiased"):
        xr, yr = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        gx, gy = torch.autograd.grad(gk.mmd2(xr, yr, kernel, estimator=estimator), (xr, yr))
        x64, y64 = to64(x).requires_grad_(True), to64(y).requires_grad_(True)
        ox, oy = torch.autograd.grad(ref.mmd2(x64, y64, kernel, estimator), (x64, y64))
        nx = ny = None
        if dtype != torch.float64:
            xn, yn = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
            nx, ny = torch.autograd.grad(ref.mmd2(xn, yn, kernel, estimator), (xn, yn))
        scale = mmd2_grad_scale(x, y, kernel)
        assert_accurate(gx, ox, nx, dtype, scale, f"d mmd2 {estimator} / dx")
        assert_accurate(gy, oy, ny, dtype, scale, f"d mmd2 {estimator} / dy")


def test_mmd2_identical_sets():
    """mmd2(x, x): biased is 0 up to rounding; unbiased is the (negative) U-statistic of the formula."""
    x = make_input(50, 4, scale=0.5)
    for kernel in KERNELS:
        torch.testing.assert_close(gk.mmd2(x, x, kernel), ref.mmd2(x, x, kernel), rtol=0, atol=1e-9)
        torch.testing.assert_close(gk.mmd2(x, x, kernel, estimator="unbiased"),
                                   ref.mmd2(x, x, kernel, "unbiased"), rtol=1e-9, atol=1e-10)


def test_mmd2_returns_0dim():
    x, y = make_input(5, 2), make_input(6, 2, seed=1)
    out = gk.mmd2(x, y, Gaussian())
    assert out.dim() == 0 and out.dtype == torch.float64


def test_mmd2_unbiased_can_be_negative():
    """docs/MATH.md §2: the U-statistic can be negative; that is correct."""
    x = make_input(40, 2, seed=5)
    y = make_input(40, 2, seed=6)
    vals = [gk.mmd2(x, y[torch.randperm(40, generator=torch.Generator().manual_seed(s))[:20]], Gaussian(),
                    estimator="unbiased").item() for s in range(4)]
    refs = [ref.mmd2(x, y[torch.randperm(40, generator=torch.Generator().manual_seed(s))[:20]], Gaussian(),
                     "unbiased").item() for s in range(4)]
    assert vals == pytest.approx(refs, rel=1e-9, abs=1e-12)


def test_mmd_loss_module():
    x, y = make_input(20, 3), make_input(17, 3, seed=1, shift=0.5)
    for estimator in ("biased", "unbiased"):
        loss = gk.nn.MMDLoss(Gaussian((1, 2, 4, 8, 16)), estimator=estimator)
        assert isinstance(loss, torch.nn.Module)
        torch.testing.assert_close(loss(x, y), gk.mmd2(x, y, Gaussian((1, 2, 4, 8, 16)), estimator=estimator))
    assert isinstance(repr(gk.nn.MMDLoss(Gaussian(1.0))), str)
    torch.testing.assert_close(gk.nn.MMDLoss(Energy())(x, y), ref.mmd2(x, y, Energy()), rtol=1e-9, atol=1e-10)


# ----------------------------------------------------------------------------- witness

@kernels
@dtypes
@pytest.mark.parametrize("case", WITNESS_CASES, ids=_case_id)
def test_witness(kernel, dtype, case):
    k_, n, m, d = case
    sc = input_scale(kernel, d)
    z = make_input(k_, d, dtype, "T", seed=7, scale=sc)
    x = make_input(n, d, dtype, "S", seed=8, scale=sc)
    y = make_input(m, d, dtype, "C", seed=9, scale=sc, shift=0.3 * sc)
    out = gk.witness(z, x, y, kernel)
    oracle = ref.witness(to64(z), to64(x), to64(y), kernel)
    naive = None if dtype == torch.float64 else ref.witness(z, x, y, kernel)
    assert_accurate(out, oracle, naive, dtype, witness_scale(z, x, y, kernel), "witness")


# ----------------------------------------------------------------------------- top-level API surface

def test_kernels_reexported():
    for name in ("Gaussian", "RationalQuadratic", "InverseMultiquadric", "Laplacian", "Energy",
                 "Polyharmonic", "Polynomial", "Linear"):
        assert getattr(gk, name) is getattr(gk.kernels, name)
    for name in ("kernel_sum", "kernel_flow", "mmd2", "witness", "kid"):
        assert callable(getattr(gk, name))


# ----------------------------------------------------------------------------- CUDA (Triton engine)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=dtype_id)
def test_cuda_matches_oracle(kernel, dtype):
    """The same accuracy rule on CUDA; the naive same-dtype reference runs on the CPU."""
    x, y = _inputs(kernel, 127, 300, 3, dtype, "T", "C")
    w = make_weights(300, "M", dtype)
    xc, yc, wc = x.cuda(), y.cuda(), w.cuda()
    low = dtype != torch.float64

    out = gk.kernel_sum(xc, yc, kernel, wc)
    assert out.is_cuda
    assert_accurate(out.cpu(), ref.kernel_sum(to64(x), to64(y), kernel, to64(w)),
                    ref.kernel_sum(x, y, kernel, w) if low else None, dtype, sum_scale(x, y, kernel, w), "cuda kernel_sum")
    assert_accurate(gk.kernel_flow(xc, yc, kernel, wc).cpu(), ref.kernel_flow(to64(x), to64(y), kernel, to64(w)),
                    ref.kernel_flow(x, y, kernel, w) if low else None, dtype, flow_scale(x, y, kernel, w),
                    "cuda kernel_flow")
    for est in ("biased", "unbiased"):
        assert_accurate(gk.mmd2(xc, yc, kernel, estimator=est).cpu(), ref.mmd2(to64(x), to64(y), kernel, est),
                        ref.mmd2(x, y, kernel, est) if low else None, dtype, mmd2_scale(x, y, kernel), f"cuda mmd2 {est}")
    z = x[:5]
    assert_accurate(gk.witness(z.cuda(), xc, yc, kernel).cpu(), ref.witness(to64(z), to64(x), to64(y), kernel),
                    ref.witness(z, x, y, kernel) if low else None, dtype, witness_scale(z, x, y, kernel), "cuda witness")
    xr, yr = xc.detach().requires_grad_(True), yc.detach().requires_grad_(True)
    gx, gy = torch.autograd.grad(gk.mmd2(xr, yr, kernel), (xr, yr))
    x64, y64 = to64(x).requires_grad_(True), to64(y).requires_grad_(True)
    ox, oy = torch.autograd.grad(ref.mmd2(x64, y64, kernel), (x64, y64))
    nx = ny = None
    if low:
        xn, yn = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
        nx, ny = torch.autograd.grad(ref.mmd2(xn, yn, kernel), (xn, yn))
    scale = mmd2_grad_scale(x, y, kernel)
    assert_accurate(gx.cpu(), ox, nx, dtype, scale, "cuda d mmd2 / dx")
    assert_accurate(gy.cpu(), oy, ny, dtype, scale, "cuda d mmd2 / dy")


def test_gaussian_from_gamma_is_exp_of_minus_gamma_d2():
    x = make_input(7, 3)
    y = make_input(5, 3, seed=3)
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    want = (torch.exp(-0.5 * d2) + torch.exp(-2.0 * d2)).sum(1)
    torch.testing.assert_close(gk.kernel_sum(x, y, gk.Gaussian.from_gamma((0.5, 2.0))), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="gammas"):
        gk.Gaussian.from_gamma(-1.0)
