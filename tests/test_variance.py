"""mmd2_and_variance, mmd2_ratio and kid's standard error (docs/ESTIMATORS.md).

* the fused functions against the dense float64 computation of the same formulas
  (``gankernels.reference.mmd2_and_variance``), every supported kernel family, N = M and N != M;
* the "complete" estimator against a brute-force enumeration over distinct index tuples
  (checks the algebra that turns sums over distinct indices into row sums);
* gradcheck (float64, tiny sizes) of mmd2, the variance and the ratio;
* statistics: over 200 independent draws, the spread of the estimate matches the std it reports;
* errors: bad arguments name the argument; families whose square is not a family raise NotImplementedError.
"""
from __future__ import annotations

import itertools

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from gankernels.kernels import (Energy, Gaussian, InverseMultiquadric, Laplacian, Linear, Polyharmonic, Polynomial,
                                RationalQuadratic)

KERNELS = [Gaussian((0.7, 1.5, 3.0)), Gaussian(1.0), Laplacian((0.8, 2.5)), Polynomial(3), Polynomial(2, 0.5, -0.3),
           Linear(), Energy(), RationalQuadratic(1.5, 0.8), InverseMultiquadric(1.3, -0.7)]


def _pair(n, m, d, seed=0, dtype=torch.float64, shift=0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 1.2 * torch.randn(m, d, generator=g, dtype=torch.float64) + shift
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("kernel", KERNELS, ids=repr)
@pytest.mark.parametrize("n,m,variance", [(23, 23, "sutherland"), (23, 23, "complete"), (17, 29, "complete")])
def test_matches_the_dense_reference(kernel, n, m, variance):
    x, y = _pair(n, m, 3, seed=n + m)
    got = gk.mmd2_and_variance(x, y, kernel, variance)
    want = ref.mmd2_and_variance(x, y, kernel, variance)
    scale = ref.gram(kernel, x, y).abs().max().item()
    torch.testing.assert_close(got[0], want[0], rtol=1e-9, atol=1e-12 * scale)
    torch.testing.assert_close(got[1], want[1], rtol=1e-7, atol=1e-12 * scale ** 2)
    torch.testing.assert_close(got[0], gk.mmd2(x, y, kernel, "unbiased"))
    assert got[1].item() != 0.0


def test_auto_picks_sutherland_for_equal_sizes_and_complete_otherwise():
    k = Gaussian((1.0, 2.0))
    x, y = _pair(12, 12, 2)
    assert gk.mmd2_and_variance(x, y, k)[1] == gk.mmd2_and_variance(x, y, k, "sutherland")[1]
    assert gk.mmd2_and_variance(x, y, k)[1] != gk.mmd2_and_variance(x, y, k, "complete")[1]
    x, y = _pair(12, 13, 2)
    assert gk.mmd2_and_variance(x, y, k)[1] == gk.mmd2_and_variance(x, y, k, "complete")[1]


def test_float32_close_to_float64():
    k = Gaussian((0.5, 1.0, 2.0, 4.0))
    x, y = _pair(300, 200, 8, seed=5)
    m64, v64 = ref.mmd2_and_variance(x, y, k)
    m32, v32 = gk.mmd2_and_variance(x.float(), y.float(), k)
    assert m32.dtype == v32.dtype == torch.float32
    assert abs(m32.item() - m64.item()) <= 1e-5 * len(k.sigmas)
    assert abs(v32.item() - v64.item()) <= 1e-3 * abs(v64.item())


def _brute_force_complete(x, y, kernel):
    """The complete variance with every expectation a mean over distinct index tuples (enumerated)."""
    kxx, kyy, kxy = (ref.gram(kernel, a, b).tolist() for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(kxx), len(kyy)

    def mean(vals):
        vals = list(vals)
        return sum(vals) / len(vals)
    P = itertools.permutations
    e = {}
    for name, kk, a in (("x", kxx, n), ("y", kyy, m)):
        mu2 = mean(kk[i][j] * kk[k][l] for i, j, k, l in P(range(a), 4))
        e["z1" + name] = mean(kk[i][j] * kk[i][k] for i, j, k in P(range(a), 3)) - mu2
        e["z2" + name] = mean(kk[i][j] ** 2 for i, j in P(range(a), 2)) - mu2
    mu2xy = mean(kxy[i][j] * kxy[k][l] for i, k in P(range(n), 2) for j, l in P(range(m), 2))
    z11 = mean(kxy[i][j] ** 2 for i in range(n) for j in range(m)) - mu2xy
    z10 = mean(kxy[i][j] * kxy[i][l] for i in range(n) for j, l in P(range(m), 2)) - mu2xy
    z01 = mean(kxy[i][j] * kxy[k][j] for i, k in P(range(n), 2) for j in range(m)) - mu2xy
    xi_x = (mean(kxx[i][k] * kxy[i][j] for i, k in P(range(n), 2) for j in range(m))
            - mean(kxx[i][k] * kxy[l][j] for i, k, l in P(range(n), 3) for j in range(m)))
    xi_y = (mean(kyy[j][l] * kxy[i][j] for j, l in P(range(m), 2) for i in range(n))
            - mean(kyy[j][l] * kxy[i][o] for j, l, o in P(range(m), 3) for i in range(n)))
    return ((4 * (n - 2) * e["z1x"] + 2 * e["z2x"]) / (n * (n - 1))
            + (4 * (m - 2) * e["z1y"] + 2 * e["z2y"]) / (m * (m - 1))
            + 4 * (z11 + (m - 1) * z10 + (n - 1) * z01) / (n * m) - 8 * xi_x / n - 8 * xi_y / m)


@pytest.mark.parametrize("n,m", [(4, 6), (6, 5)])
def test_complete_variance_equals_the_enumeration_over_distinct_indices(n, m):
    x, y = _pair(n, m, 2, seed=7)
    k = Gaussian((0.8, 2.0))
    got = gk.mmd2_and_variance(x, y, k, "complete")[1].item()
    assert got == pytest.approx(_brute_force_complete(x, y, k), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("kernel", [Gaussian((0.7, 1.5)), Polynomial(2), Energy()], ids=repr)
@pytest.mark.parametrize("n,m,variance", [(5, 5, "sutherland"), (4, 6, "complete")])
def test_gradcheck(kernel, n, m, variance):
    x, y = _pair(n, m, 2, seed=3)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: gk.mmd2_and_variance(a, b, kernel, variance), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: gk.mmd2_ratio(a, b, kernel, 1e-8, variance), (x, y))


def test_gradgradcheck_of_the_variance():
    x, y = _pair(4, 5, 2, seed=4)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda a, b: gk.mmd2_and_variance(a, b, Gaussian((0.9, 2.0)))[1], (x, y))


def test_ratio_is_mmd2_over_the_floored_std():
    k = Gaussian((1.0, 2.0))
    x, y = _pair(30, 30, 3, seed=9)
    mmd, var = gk.mmd2_and_variance(x, y, k)
    assert gk.mmd2_ratio(x, y, k).item() == pytest.approx((mmd / var.sqrt()).item(), rel=1e-12)
    assert gk.mmd2_ratio(x, y, k, min_var=10.0).item() == pytest.approx(mmd.item() / 10.0 ** 0.5, rel=1e-12)


def _spread(estimate, n, m, draws=200, d=3, seed=0):
    """(std of the estimate over independent draws, sqrt of the mean reported variance)."""
    g = torch.Generator().manual_seed(seed)
    values, variances = [], []
    for _ in range(draws):
        x = torch.randn(n, d, generator=g, dtype=torch.float64)
        y = 1.2 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3
        v, s2 = estimate(x, y)
        values.append(v)
        variances.append(s2)
    return torch.stack(values).std().item(), torch.stack(variances).mean().sqrt().item()


@pytest.mark.parametrize("n,m", [(20, 20), (15, 30)])
def test_reported_variance_matches_the_spread_over_draws(n, m):
    """200 draws: the std of the estimates and the reported std agree within 25 % (the estimate of a std from
    200 draws alone is uncertain by ~5 %)."""
    k = Gaussian((1.0, 2.0))
    spread, reported = _spread(lambda x, y: gk.mmd2_and_variance(x, y, k, "complete"), n, m, seed=n + m)
    assert abs(reported / spread - 1.0) < 0.25, (spread, reported)


@pytest.mark.parametrize("n,m", [(20, 20), (16, 24)])
def test_kid_std_matches_the_spread_over_draws(n, m):
    spread, reported = _spread(lambda x, y: (lambda v, s: (v, s * s))(*gk.kid(x.abs(), y.abs())), n, m, d=4,
                               seed=100 + n)
    assert abs(reported / spread - 1.0) < 0.25, (spread, reported)


def test_errors_name_the_argument():
    x, y = _pair(6, 7, 2)
    k = Gaussian(1.0)
    with pytest.raises(ValueError, match="variance"):
        gk.mmd2_and_variance(x, y, k, "bootstrap")
    with pytest.raises(ValueError, match="sutherland.*N = M"):
        gk.mmd2_and_variance(x, y, k, "sutherland")
    with pytest.raises(ValueError, match="at least 4"):
        gk.mmd2_and_variance(x[:3], y, k)
    with pytest.raises(ValueError, match="min_var"):
        gk.mmd2_ratio(x, y, k, min_var=0.0)
    with pytest.raises(ValueError, match="min_var"):
        gk.mmd2_ratio(x, y, k, min_var=float("nan"))
    with pytest.raises(TypeError, match="kernel"):
        gk.mmd2_and_variance(x, y, "gaussian")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        gk.mmd2_and_variance(x.tolist(), y, k)
    with pytest.raises(ValueError, match="same dimension"):
        gk.mmd2_and_variance(x, y[:, :1], k)


@pytest.mark.parametrize("kernel,name", [(Polyharmonic(3), "Polyharmonic"),
                                         (RationalQuadratic((0.5, 2.0)), "RationalQuadratic"),
                                         (InverseMultiquadric((1.0, 2.0)), "InverseMultiquadric")])
def test_squares_that_are_no_family_raise_not_implemented(kernel, name):
    x, y = _pair(6, 6, 2)
    with pytest.raises(NotImplementedError, match=name):
        gk.mmd2_and_variance(x, y, kernel)
    assert torch.isfinite(gk.mmd2(x, y, kernel, "unbiased"))   # the estimate itself still works
