"""Extreme but valid kernel parameters and exact polynomial degrees.

Both engines are checked: the C++ CPU engine through the public API, and the
Triton engine (``-m triton``, ``TRITON_INTERPRET=1`` on CPU) through its op
functions (gankernels.triton_pairwise / triton_score).

Oracle: an independent evaluation with Python's ``decimal`` module -- exact
squared distances and dot products of the (exactly converted) float inputs,
phi and phi' from the formulas of docs/ENGINE.md in 60 significant digits and
an exponent range far beyond float64.  It shares no code with the engines or
with ``gankernels.reference`` (whose float64 formulas themselves overflow for,
e.g., sigma = 1e-200: 1 / (2 sigma^2) = inf).

Inputs are small multiples of 1/4, so that every squared distance and dot
product is exact in fp32 on both engines (the Triton expansion
|a|^2 + |b|^2 - 2 a.b included): the checks measure the evaluation of the
kernel, not the rounding of z.  One row of y coincides with one row of x
(z = 0 outside self mode).

What is checked, per parameter set (only values that are representable in
the dtype are compared; none of the chosen ones overflow):

* ``kernel_sum`` (weighted) and ``kernel_flow`` against the oracle, finite;
* the biased ``mmd2`` and its gradient (the self-mode sum and its backward);
* ``smoothed_score(x, x, 1e-20)`` is 0 (and its log-normaliser 0), not NaN;
* Polynomial: degree 2**24 + 1 differs from 2**24 (exact degree), degree
  10**12 returns quickly (repeated squaring; in a subprocess with a timeout, so
  that the old per-unit loop fails instead of hanging), degrees above 2**53 are
  a ValueError.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from decimal import Decimal, localcontext
from pathlib import Path

import pytest
import torch

from gankernels import kernel_flow, kernel_sum, mmd2, smoothed_score
from gankernels.kernels import (
    Gaussian,
    InverseMultiquadric,
    Laplacian,
    Polynomial,
    RationalQuadratic,
)

ROOT = Path(__file__).resolve().parents[1]
_INTERP = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

# ----------------------------------------------------------------------------- inputs (exact in fp32)

X = [[0.0, 0.0, 0.0], [0.5, -0.25, 1.0], [1.25, 0.5, -0.75], [-1.0, 0.75, 0.25], [0.25, 1.5, -0.5]]
Y = [[0.5, -0.25, 1.0], [-0.75, 0.0, 0.5], [1.0, 1.0, 1.0], [0.25, -1.25, 0.0]]  # Y[0] = X[1]
W = [0.5, -1.25, 2.0, 0.75]

# fp32: every one overflows or underflows a derived constant in fp32 (1 / (2 sigma^2) = 5e59, 1 / s, c^2, ...)
KERNELS_F32 = [
    Gaussian(1e-30),
    Gaussian((1e-30, 1.0)),
    Gaussian(1e-19),            # 1 / (2 sigma^2) = 5e37 fits, its square does not
    Laplacian(1e-40),
    Laplacian((1e-40, 0.7)),
    RationalQuadratic(lengthscale=1e-30),
    RationalQuadratic(alphas=(0.5, 1e6)),  # alpha = 1e6: the Gaussian limit (1 + z / 2 alpha)^-alpha
    InverseMultiquadric(scales=1e-30),
    InverseMultiquadric(scales=1e30),
    InverseMultiquadric(scales=(1e-12, 1.0), beta=-1.5),
    InverseMultiquadric(scales=1e20, beta=-0.9),  # c^2 overflows, c^(2 beta) = 1e-36 fits
]
# fp64: the same, beyond float64's range of 1 / (2 sigma^2) etc.
KERNELS_F64 = [
    Gaussian(1e-200),
    Gaussian((1e-200, 1.0)),
    Gaussian(1e-30),
    Laplacian(1e-310),
    RationalQuadratic(lengthscale=1e-200),
    InverseMultiquadric(scales=1e-200),
    InverseMultiquadric(scales=1e200),
    InverseMultiquadric(scales=(1e-100, 2.0), beta=-1.5),
]
CASES = [(k, torch.float32) for k in KERNELS_F32] + [(k, torch.float64) for k in KERNELS_F64]
CASE_IDS = [f"{repr(k).replace(' ', '')}-{str(dt)[6:]}" for k, dt in CASES]

TOL = {torch.float32: (2e-5, 1e-6), torch.float64: (1e-12, 1e-13)}  # (rtol, atol relative to the term scale)


def _tensor(rows, dtype):
    return torch.tensor(rows, dtype=torch.float64).to(dtype)


# ----------------------------------------------------------------------------- decimal oracle

def _D(v) -> Decimal:
    return Decimal(float(v))


def _phi(family: int, params, z: Decimal):
    """(phi(z), phi'(z)) in decimal (docs/ENGINE.md, table of families)."""
    P = [_D(p) for p in params]
    zero = Decimal(0)
    if family == 0:
        terms = [(-z / (2 * s * s)).exp() for s in P]
        return sum(terms, zero), sum((-t / (2 * s * s) for t, s in zip(terms, P)), zero)
    if family == 1:
        l = P[0]
        val = d1 = zero
        for a in P[1:]:
            B = 1 + z / (2 * a * l * l)
            val += B ** (-a)
            d1 -= B ** (-a - 1) / (2 * l * l)
        return val, d1
    if family == 2:
        beta = P[0]
        val = d1 = zero
        for c in P[1:]:
            q = c * c + z
            val += q ** beta
            d1 += beta * q ** (beta - 1)
        return val, d1
    if family == 3:
        r = z.sqrt()
        val = d1 = zero
        for s in P:
            e = (-r / s).exp()
            val += e
            if r > 0:
                d1 -= e / (2 * s * r)
        return val, d1
    if family == 6:
        n, g, c0 = int(params[0]), P[1], P[2]
        base = g * z + c0
        return base ** n, n * g * base ** (n - 1)
    raise ValueError(family)


def _rows_dec(t):
    return [[_D(v) for v in row] for row in t.detach().double().tolist()]


def oracle_sum_flow(family, params, x, y, w, radial=True):
    """(sum_j w_j k(x_i, y_j), sum_j w_j grad_1 k(x_i, y_j)) as float64 tensors, plus the term scales."""
    with localcontext() as ctx:
        ctx.prec = 60
        xd, yd, wd = _rows_dec(x), _rows_dec(y), [_D(v) for v in w.detach().double().tolist()]
        S, F, s_scale, f_scale = [], [], 0.0, 0.0
        for a in xd:
            s = Decimal(0)
            f = [Decimal(0)] * len(a)
            sa, fa = Decimal(0), Decimal(0)
            for b, wj in zip(yd, wd):
                if radial:
                    z = sum(((ai - bi) ** 2 for ai, bi in zip(a, b)), Decimal(0))
                    grad = [2 * (ai - bi) for ai, bi in zip(a, b)]  # d z / d a
                else:
                    z = sum((ai * bi for ai, bi in zip(a, b)), Decimal(0))
                    grad = list(b)
                val, d1 = _phi(family, params, z)
                s += wj * val
                sa += abs(wj * val)
                for d in range(len(a)):
                    f[d] += wj * d1 * grad[d]
                    fa += abs(wj * d1 * grad[d])
            S.append(float(s))
            F.append([float(v) for v in f])
            s_scale = max(s_scale, float(sa))
            f_scale = max(f_scale, float(fa))
    return (torch.tensor(S, dtype=torch.float64), torch.tensor(F, dtype=torch.float64), s_scale, f_scale)


def oracle_mmd2(family, params, x, y):
    """(biased mmd2, its gradient w.r.t. [x; y], term scales): v^T K v with v = (1/N, ..., -1/M, ...)."""
    n, m = x.shape[0], y.shape[0]
    za = torch.cat([x.detach().double(), y.detach().double()])
    v = torch.tensor([1.0 / n] * n + [-1.0 / m] * m, dtype=torch.float64)
    s, f, s_scale, f_scale = oracle_sum_flow(family, params, za, za, v)
    value = float((v * s).sum())
    grad = 2.0 * v[:, None] * f  # d/dz_a sum_ab v_a v_b k(z_a, z_b) = 2 v_a sum_b v_b grad_1 k(z_a, z_b)
    return value, grad, s_scale / max(n, m), 2.0 * f_scale / max(n, m)


def assert_close(got, ref, dtype, scale, what):
    got = got.detach().cpu().double()
    ref = torch.as_tensor(ref, dtype=torch.float64)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert torch.isfinite(ref).all(), f"{what}: oracle not finite (bad test parameters)"
    assert torch.isfinite(got).all(), f"{what}: non-finite output {got}"
    rtol, atol_rel = TOL[dtype]
    err = (got - ref).abs()
    bound = rtol * ref.abs() + atol_rel * scale + 4 * torch.finfo(dtype).tiny  # below the normal range: 0 is right
    assert bool((err <= bound).all()), f"{what}: max error {float(err.max()):.3e}, got {got}, expected {ref}"


# ----------------------------------------------------------------------------- C++ engine (public API)

@pytest.mark.parametrize("kernel,dtype", CASES, ids=CASE_IDS)
def test_sum_and_flow_cpp(kernel, dtype):
    x, y, w = _tensor(X, dtype), _tensor(Y, dtype), _tensor(W, dtype)
    fam, params = kernel.encode(3)
    s_ref, f_ref, s_scale, f_scale = oracle_sum_flow(fam, params, x, y, w)
    assert_close(kernel_sum(x, y, kernel, w), s_ref, dtype, s_scale, "kernel_sum")
    assert_close(kernel_flow(x, y, kernel, w), f_ref, dtype, f_scale, "kernel_flow")


@pytest.mark.parametrize("kernel,dtype", CASES, ids=CASE_IDS)
def test_self_sum_is_phi0_cpp(kernel, dtype):
    """kernel_sum(x, x): the self pairs give phi(0), here equal to the oracle (1 per bandwidth, c^(2 beta))."""
    x = _tensor(X, dtype)
    fam, params = kernel.encode(3)
    s_ref, f_ref, s_scale, f_scale = oracle_sum_flow(fam, params, x, x, torch.ones(len(X), dtype=torch.float64))
    assert_close(kernel_sum(x, x, kernel), s_ref, dtype, s_scale, "kernel_sum(x, x)")
    assert_close(kernel_flow(x, x, kernel), f_ref, dtype, f_scale, "kernel_flow(x, x)")


@pytest.mark.parametrize("kernel,dtype", CASES, ids=CASE_IDS)
def test_mmd2_and_gradient_cpp(kernel, dtype):
    x = _tensor(X, dtype).requires_grad_(True)
    y = _tensor(Y[1:], dtype).requires_grad_(True)  # distinct from x: the XY block has no z = 0
    fam, params = kernel.encode(3)
    value, grad, v_scale, g_scale = oracle_mmd2(fam, params, x, y)
    out = mmd2(x, y, kernel)
    assert_close(out.reshape(1), [value], dtype, v_scale, "mmd2")
    gx, gy = torch.autograd.grad(out, (x, y))
    assert_close(torch.cat([gx, gy]), grad, dtype, g_scale, "mmd2 gradient")


def test_gaussian_extreme_values_are_the_limits_cpp():
    """The issue's examples, stated directly: self pairs 1 per bandwidth, the others 0 (fp32)."""
    x = _tensor(X, torch.float32)
    for kernel in (Gaussian(1e-30), Laplacian(1e-40)):
        assert torch.equal(kernel_sum(x, x, kernel), torch.ones(len(X)))
        assert torch.equal(kernel_flow(x, x, kernel), torch.zeros(len(X), 3))
    out = kernel_sum(x, x, RationalQuadratic(lengthscale=1e-30))
    assert torch.isfinite(out).all() and bool(((out - 5.0).abs() < 1e-3).all())  # 5 alphas, far pairs ~1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smoothed_score_tiny_sigma_cpp(dtype):
    x = _tensor(X, dtype)
    for sigma in (1e-20, 1e-30) if dtype == torch.float32 else (1e-20, 1e-200):
        out = smoothed_score(x, x, sigma)
        assert torch.equal(out, torch.zeros_like(x)), (sigma, out)
        out = smoothed_score(x, x, sigma, weights=_tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype))
        assert torch.equal(out, torch.zeros_like(x)), (sigma, out)
    _score, lse = torch.ops.gankernels.smoothed_score(x, x, None, 1e-20)
    assert torch.equal(lse, torch.zeros(len(X), dtype=lse.dtype))


# ----------------------------------------------------------------------------- polynomial degree

def _poly_oracle(degree, gamma, coef0, z, dtype):
    """(base^n, n gamma base^(n-1)) with base rounded to the dtype as the engines form it (gamma z + c0)."""
    base = float(torch.tensor(gamma * z, dtype=dtype) + torch.tensor(coef0, dtype=dtype))
    with localcontext() as ctx:
        ctx.prec = 60
        v, d1 = _phi(6, [degree, gamma, 0.0], _D(base) / _D(gamma))
    return float(v), float(d1)


POLY_CASES = [
    # (degree, coef0, dtype): base = 1 + coef0 at z = gamma = 1.  Degrees that the old per-unit loop cannot
    # finish (1e12, 2^53) are in the subprocess tests below, so that the old code fails instead of hanging.
    (2 ** 24 + 1, -2.0 ** -20, torch.float64),
    (2 ** 24, -2.0 ** -20, torch.float64),
    (2 ** 24 + 1, -2.0, torch.float32),  # base -1: the sign tells the parity
    (2 ** 24, -2.0, torch.float32),
    (1001, -2.0 ** -10, torch.float64),
    (1, 0.25, torch.float32),
    (2, -0.75, torch.float32),
]


@pytest.mark.parametrize("degree,coef0,dtype", POLY_CASES, ids=[f"{d}-{c}-{str(t)[6:]}" for d, c, t in POLY_CASES])
def test_polynomial_degree_exact_cpp(degree, coef0, dtype):
    kernel = Polynomial(degree, gamma=1.0, coef0=coef0)
    one = torch.ones(1, 1, dtype=dtype)
    v, d1 = _poly_oracle(degree, 1.0, coef0, 1.0, dtype)
    rtol = 1e-8 if dtype == torch.float64 else 1e-6
    assert float(kernel_sum(one, one, kernel)) == pytest.approx(v, rel=rtol, abs=1e-300)
    assert float(kernel_flow(one, one, kernel)) == pytest.approx(d1, rel=rtol, abs=1e-300)


def test_polynomial_adjacent_degrees_differ_cpp():
    one = torch.ones(1, 1, dtype=torch.float64)
    a = float(kernel_sum(one, one, Polynomial(2 ** 24, gamma=1.0, coef0=-2.0 ** -20)))
    b = float(kernel_sum(one, one, Polynomial(2 ** 24 + 1, gamma=1.0, coef0=-2.0 ** -20)))
    assert b / a == pytest.approx(1.0 - 2.0 ** -20, rel=1e-12)
    one32 = torch.ones(1, 1)
    assert float(kernel_sum(one32, one32, Polynomial(2 ** 24 + 1, gamma=1.0, coef0=-2.0))) == -1.0
    assert float(kernel_sum(one32, one32, Polynomial(2 ** 24, gamma=1.0, coef0=-2.0))) == 1.0


def test_polynomial_degree_bound():
    Polynomial(2 ** 53)
    for bad in (2 ** 53 + 1, 2 ** 64, 1e300):
        with pytest.raises(ValueError, match="degree"):
            Polynomial(bad)
    with pytest.raises(ValueError, match="degree"):
        torch.ops.gankernels.ksum(torch.ones(1, 1), None, torch.ones(1, 1), 6, [2.0 ** 64, 1.0, 0.0])


def _run_with_timeout(code: str, timeout: float, env=None):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# (degree, coef0, dtype, value of base^n, of n base^(n-1)) at z = gamma = 1, on a Gram matrix of equal rows
HUGE_DEGREES = [
    (10 ** 12, 0.0, "float32", 1.0, 1e12),              # base 1
    (10 ** 12, -2.0, "float64", 1.0, -1e12),            # base -1, even degree
    (10 ** 12, -0.5, "float32", 0.0, 0.0),              # base 0.5: underflows to 0
    (2 ** 53, -2.0, "float64", 1.0, -2.0 ** 53),        # the largest degree
    (2 ** 53 - 1, -2.0, "float64", -1.0, 2.0 ** 53 - 1),
]
_HUGE_SCRIPT = """
import torch
for degree, coef0, dtype, _v, _d in {cases!r}:
    x = torch.full(({n}, 4), 0.5, dtype=getattr(torch, dtype))
    y = x[:{m}].contiguous()
    print(float(SUM(x, y, degree, coef0)), float(FLOW(x, y, degree, coef0)))
"""


def _check_huge(out, m):
    rows = [[float(v) for v in line.split()] for line in out.strip().splitlines()]
    assert len(rows) == len(HUGE_DEGREES)
    for (degree, _c, _t, v, d), (got_v, got_d) in zip(HUGE_DEGREES, rows):
        assert got_v == m * v and got_d == pytest.approx(m * d * 0.5, rel=1e-5), (degree, got_v, got_d)


def test_polynomial_huge_degree_is_fast_cpp():
    """Degrees 1e12 and 2^53 in O(log n) products (the old loop per unit of degree does not finish)."""
    out = _run_with_timeout(textwrap.dedent("""
        from gankernels import kernel_sum, kernel_flow
        from gankernels.kernels import Polynomial
        SUM = lambda x, y, n, c0: kernel_sum(x, y, Polynomial(n, gamma=1.0, coef0=c0))[0]
        FLOW = lambda x, y, n, c0: kernel_flow(x, y, Polynomial(n, gamma=1.0, coef0=c0))[0, 0]
    """) + _HUGE_SCRIPT.format(cases=HUGE_DEGREES, n=300, m=200), timeout=120)
    _check_huge(out, 200)


# ----------------------------------------------------------------------------- Triton engine

def _load_triton_pairwise():
    from gankernels import triton_pairwise

    return triton_pairwise


def _load_triton_score():
    from gankernels import triton_score

    return triton_score


def _triton():
    pytest.importorskip("triton")
    if not _INTERP and not torch.cuda.is_available():
        pytest.skip("Triton tests need CUDA or TRITON_INTERPRET=1")
    return _load_triton_pairwise(), ("cpu" if _INTERP else "cuda")


@pytest.mark.triton
@pytest.mark.parametrize("kernel,dtype", CASES, ids=CASE_IDS)
def test_sum_flow_mmd2_triton(kernel, dtype):
    te, dev = _triton()
    x, y, w = _tensor(X, dtype).to(dev), _tensor(Y, dtype).to(dev), _tensor(W, dtype).to(dev)
    fam, params = kernel.encode(3)
    params = [float(p) for p in params]
    s_ref, f_ref, s_scale, f_scale = oracle_sum_flow(fam, params, x, y, w)
    assert_close(te.ksum(x, y, w[:, None], fam, params)[:, 0], s_ref, dtype, s_scale, "ksum")
    ones = torch.ones(len(X), 1, dtype=dtype, device=dev)
    assert_close(te.kflow(x, y, ones, w[:, None], fam, params), f_ref, dtype, f_scale, "kflow")
    # self mode: kernel_sum(x, x) and kernel_flow(x, x)
    s_ref, f_ref, s_scale, f_scale = oracle_sum_flow(fam, params, x, x, torch.ones(len(X), dtype=torch.float64))
    assert_close(te.ksum(x, None, ones, fam, params)[:, 0], s_ref, dtype, s_scale, "ksum self")
    assert_close(te.kflow(x, None, ones, ones, fam, params), f_ref, dtype, f_scale, "kflow self")
    # biased mmd2 = v^T K v over [x; y] and its gradient (self-mode ksum and ksum_backward, as gankernels.mmd2)
    yd = y[1:]
    value, grad, v_scale, g_scale = oracle_mmd2(fam, params, x, yd)
    za = torch.cat([x, yd])
    v = torch.tensor([1.0 / len(X)] * len(X) + [-1.0 / len(yd)] * len(yd), dtype=dtype, device=dev)[:, None]
    assert_close((v * te.ksum(za, None, v, fam, params)).sum().reshape(1), [value], dtype, v_scale, "mmd2")
    gx, _gy, _gw = te.ksum_backward(v, za, None, v, fam, params, [True, False, False])
    assert_close(gx, grad, dtype, g_scale, "mmd2 gradient")


@pytest.mark.triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smoothed_score_tiny_sigma_triton(dtype):
    _te, dev = _triton()
    ts = _load_triton_score()
    x = _tensor(X, dtype).to(dev)
    for sigma in (1e-20, 1e-30) if dtype == torch.float32 else (1e-20, 1e-200):
        score, lse = ts.smoothed_score(x, x, None, sigma)
        assert torch.equal(score.cpu(), torch.zeros(len(X), 3, dtype=dtype)), (sigma, score)
        assert torch.equal(lse.cpu(), torch.zeros(len(X), dtype=lse.dtype)), (sigma, lse)
        w = _tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype).to(dev)
        score, _lse = ts.smoothed_score(x, x, w, sigma)
        assert torch.equal(score.cpu(), torch.zeros(len(X), 3, dtype=dtype)), (sigma, score)


@pytest.mark.triton
@pytest.mark.parametrize("degree,coef0,dtype", POLY_CASES, ids=[f"{d}-{c}-{str(t)[6:]}" for d, c, t in POLY_CASES])
def test_polynomial_degree_exact_triton(degree, coef0, dtype):
    te, dev = _triton()
    params = [float(degree), 1.0, coef0]
    one = torch.ones(1, 1, dtype=dtype, device=dev)
    v, d1 = _poly_oracle(degree, 1.0, coef0, 1.0, dtype)
    rtol = 1e-8 if dtype == torch.float64 else 1e-6
    assert float(te.ksum(one, one, one, 6, params)) == pytest.approx(v, rel=rtol, abs=1e-300)
    assert float(te.kflow(one, one, one, one, 6, params)) == pytest.approx(d1, rel=rtol, abs=1e-300)
    _vals, _np, ip = te._kernel_params(6, params, dtype)
    assert ip == degree


@pytest.mark.triton
def test_polynomial_huge_degree_is_fast_triton():
    _triton()
    env = dict(os.environ, TRITON_INTERPRET=os.environ.get("TRITON_INTERPRET", "0"))
    dev = "cpu" if _INTERP else "cuda"
    out = _run_with_timeout(textwrap.dedent(f"""
        import torch
        from gankernels import triton_pairwise as te
        def SUM(x, y, n, c0):
            w = torch.ones(y.shape[0], 1, dtype=x.dtype, device={dev!r})
            return te.ksum(x.to({dev!r}), y.to({dev!r}), w, 6, [float(n), 1.0, c0])[0, 0].cpu()
        def FLOW(x, y, n, c0):
            a = torch.ones(x.shape[0], 1, dtype=x.dtype, device={dev!r})
            b = torch.ones(y.shape[0], 1, dtype=x.dtype, device={dev!r})
            return te.kflow(x.to({dev!r}), y.to({dev!r}), a, b, 6, [float(n), 1.0, c0])[0, 0].cpu()
    """) + _HUGE_SCRIPT.format(cases=HUGE_DEGREES, n=20, m=17), timeout=300, env=env)
    _check_huge(out, 17)
