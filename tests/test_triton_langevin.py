"""Tests of the Triton Langevin kernels (gankernels/triton_langevin.py): the fused step, its noise, and the
kernel / KDE chains, against float64 torch oracles (tests/triton_oracles.py).

Run on CPU with the interpreter:
    TRITON_INTERPRET=1 python -m pytest -q -m triton tests/test_triton_langevin.py
"""
import math

import pytest
import torch

from triton_oracles import (
    FLOW_CASES, _check, _err, _rand, _scale, o_flow, o_score, DEVICE, F64, F32, F16, BF16, require_triton,
)

require_triton()

from gankernels import triton_langevin as tlg  # noqa: E402

pytestmark = pytest.mark.triton


# ----------------------------------------------------------------------------
# langevin_step
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F64, F32, F16, BF16], ids=["float64", "float32", "float16", "bfloat16"])
def test_step_without_noise_is_exact(dtype):
    x = _rand(37, 5, seed=21, dtype=dtype)
    d = _rand(37, 5, seed=22, dtype=dtype)
    out = tlg.langevin_step(x, d, 0.3, 0.0, 123)
    expect = (x.double() + 0.3 * d.double()).to(dtype)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expect)  # torch's per-dtype tolerances (one rounding in the accumulation dtype)
    if dtype == F64:
        assert _err(out, x + 0.3 * d) <= 1e-15


def _noise(shape, seed, eta=0.5, tau=1.0):
    """The standard-normal noise of langevin_step (scale sqrt(2 eta tau) = 1 for the defaults)."""
    x = torch.zeros(shape, device=DEVICE)
    return tlg.langevin_step(x, x, eta, tau, seed) / math.sqrt(2 * eta * tau)


def test_noise_moments():
    """10^5 draws: mean, variance, lag-1 correlation within 4.5 standard errors; Kolmogorov-Smirnov
    sqrt(n) D < 1.95 (0.1 % critical value); Box-Muller with 24-bit uniforms: |xi| < 6."""
    xi = _noise((317, 331), seed=2**40 + 7).flatten().double().cpu()
    n = xi.numel()
    assert abs(float(xi.mean())) * math.sqrt(n) < 4.5
    assert abs(float(xi.var()) - 1.0) / math.sqrt(2.0 / n) < 4.5
    assert abs(float((xi[:-1] * xi[1:]).mean())) * math.sqrt(n) < 4.5
    s = torch.sort(xi).values
    ecdf = torch.arange(1, n + 1, dtype=F64) / n
    assert float((torch.special.ndtr(s) - ecdf).abs().max()) * math.sqrt(n) < 1.95
    assert float(xi.abs().max()) < 6.0


def test_noise_scale_follows_step_and_temperature():
    x = torch.zeros(100_000, 1, device=DEVICE)
    out = tlg.langevin_step(x, x, 0.02, 3.0, 5)
    var = 2 * 0.02 * 3.0
    assert abs(float(out.double().var()) / var - 1) < 4.5 * math.sqrt(2 / 100_000)


def test_seeds_reproducible_and_independent():
    x = _rand(300, 7, seed=23, dtype=F32)
    d = _rand(300, 7, seed=24, dtype=F32)
    a = tlg.langevin_step(x, d, 0.1, 1.0, 99)
    assert torch.equal(a, tlg.langevin_step(x, d, 0.1, 1.0, 99))
    b = tlg.langevin_step(x, d, 0.1, 1.0, 100)
    na, nb = (a - x - 0.1 * d).double().flatten(), (b - x - 0.1 * d).double().flatten()
    assert not torch.equal(na, nb)
    assert abs(float(torch.corrcoef(torch.stack([na, nb]))[0, 1])) * math.sqrt(na.numel()) < 4.5


def test_inplace_any_shape_and_nan():
    x = _rand(4, 3, 8, 8, seed=25, dtype=F32)
    d = _rand(4, 3, 8, 8, seed=26, dtype=F32)
    out = tlg.langevin_step(x, d, 0.1, 1.0, 7)
    assert out.shape == x.shape
    xi = x.clone()
    assert tlg.langevin_step_(xi, d, 0.1, 1.0, 7) is None
    assert torch.equal(xi, out)
    # non-contiguous in place: same values as the contiguous computation
    base = _rand(6, 40, seed=27, dtype=F32)
    xt = base.T  # [40, 6] view
    expect = tlg.langevin_step(xt, torch.ones_like(xt), 0.1, 1.0, 8)
    tlg.langevin_step_(xt, torch.ones_like(xt), 0.1, 1.0, 8)
    assert torch.equal(base.T, expect)
    z = torch.zeros(10, 3, device=DEVICE)
    z[2, 1] = float("nan")
    out = tlg.langevin_step(z, torch.zeros_like(z), 0.1, 1.0, 0)
    assert torch.isnan(out[2, 1]) and int(torch.isfinite(out).sum()) == 29


# ----------------------------------------------------------------------------
# kernel_langevin, kde_langevin
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FLOW_CASES))
def test_kernel_langevin_deterministic_part(name):
    """temperature 0: one step is x + eta flow, two steps apply it twice; steps = 0 is a copy of x."""
    family, params, gram = FLOW_CASES[name]
    c = _rand(37, 3, seed=28, shift=0.2)
    w = _rand(37, seed=29)
    x = _rand(17, 3, seed=30)
    eta = 0.2
    one = tlg.kernel_langevin(x, c, w, family, params, eta, 1, 0.0, 1)
    expect = x.cpu() + eta * o_flow(x.cpu(), c.cpu(), w.cpu(), gram)
    _check(one, expect, F64, "one step")
    two = tlg.kernel_langevin(x, c, w, family, params, eta, 2, 0.0, 1)
    expect2 = expect + eta * o_flow(expect, c.cpu(), w.cpu(), gram)
    _check(two, expect2, F64, "two steps")
    zero = tlg.kernel_langevin(x, c, w, family, params, eta, 0, 1.0, 1)  # (x - mean c) + mean c for radial k
    assert _err(zero, x) <= 1e-15 * _scale(x) and zero.data_ptr() != x.data_ptr()


def test_kernel_langevin_noise():
    """temperature > 0: step 0 carries langevin_step's noise of the same seed; step 1 new noise."""
    family, params, gram = FLOW_CASES["gaussian"]
    c = _rand(37, 3, seed=31)
    w = _rand(37, seed=32)
    x = _rand(37, 3, seed=33)
    eta, tau, seed = 0.05, 0.7, 2**50 + 3
    one = tlg.kernel_langevin(x, c, w, family, params, eta, 1, tau, seed)
    noise0 = one.cpu() - x.cpu() - eta * o_flow(x.cpu(), c.cpu(), w.cpu(), gram)
    assert _err(noise0, math.sqrt(2 * eta * tau) * _noise(x.shape, seed).double()) <= 1e-6
    two = tlg.kernel_langevin(x, c, w, family, params, eta, 2, tau, seed)
    noise1 = two.cpu() - one.cpu() - eta * o_flow(one.cpu(), c.cpu(), w.cpu(), gram)
    assert not torch.allclose(noise0, noise1)
    assert float(noise1.abs().max()) > 0.1 * math.sqrt(2 * eta * tau)


def test_kernel_langevin_float32_dot_kernel():
    family, params, gram = FLOW_CASES["polynomial"]
    c = _rand(37, 17, seed=34, scale=0.3, dtype=F32)
    w = _rand(37, seed=35, dtype=F32) / 37
    x = _rand(3, 17, seed=36, scale=0.3, dtype=F32)
    out = tlg.kernel_langevin(x, c, w, family, params, 0.5, 1, 0.0, 0)
    _check(out, x.double().cpu() + 0.5 * o_flow(x.cpu(), c.cpu(), w.cpu(), gram), F32, "one step", rel=1e-5)


def test_kde_langevin_step_is_a_score_step():
    """One sigma, one step: x + (alpha / 2) score + sqrt(alpha) xi with alpha = eps and xi = langevin_step's noise."""
    data = _rand(37, 3, seed=37)
    x = _rand(17, 3, seed=38, scale=1.5)
    eps, sigma, seed = 0.01, 0.7, 41
    out = tlg.kde_langevin(x, data, [sigma], 1, eps, seed)
    noise = out.cpu() - x.cpu() - 0.5 * eps * o_score(x.cpu(), data.cpu(), sigma)[0]
    assert _err(noise, math.sqrt(eps) * _noise(x.shape, seed).double()) <= 1e-6


def test_kde_langevin_schedule_and_steps():
    """Two sigmas, one step each: the second step uses alpha_2 = eps and the score at sigma_2, with new noise;
    steps_per_sigma = 0 returns x."""
    data = _rand(3, 16, seed=42, scale=0.25)
    x = _rand(150, 16, seed=43, scale=0.25)
    sig, eps, seed = [1.0, 0.5], 0.02, 44
    a1 = eps * sig[0] ** 2 / sig[1] ** 2
    first = tlg.kde_langevin(x, data, sig[:1], 1, a1, seed)  # alone, sigma_1 is the last: alpha = eps' = a1
    both = tlg.kde_langevin(x, data, sig, 1, eps, seed)
    noise0 = (first.cpu() - x.cpu() - 0.5 * a1 * o_score(x.cpu(), data.cpu(), sig[0])[0]) / math.sqrt(a1)
    noise1 = (both.cpu() - first.cpu() - 0.5 * eps * o_score(first.cpu(), data.cpu(), sig[1])[0]) / math.sqrt(eps)
    n = noise1.numel()
    assert abs(float(noise1.var()) - 1.0) / math.sqrt(2.0 / n) < 4.5  # right scale: alpha_2 = eps
    assert abs(float((noise0 * noise1).mean())) * math.sqrt(n) < 4.5  # step 1 noise is not step 0's
    assert _err(tlg.kde_langevin(x, data, sig, 0, eps, seed), x) <= 1e-15 * _scale(x)


