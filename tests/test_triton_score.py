"""Tests of the Triton score and Langevin kernels (gankernels/triton_score.py, triton_langevin.py) against
float64 torch oracles.

Run on CPU with the interpreter:
    TRITON_INTERPRET=1 python -m pytest -q -m triton tests/test_triton_score.py

The oracles below materialise the N x M matrices from exact differences and take
every gradient with torch.autograd; they share no code with the kernels.
"""
import math
import os

import pytest
import torch

pytest.importorskip("triton")

_INTERP = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
if not _INTERP and not torch.cuda.is_available():
    pytest.skip("Triton score tests need CUDA or TRITON_INTERPRET=1", allow_module_level=True)

from gankernels import triton_langevin as tlg  # noqa: E402
from gankernels import triton_score as ts  # noqa: E402

pytestmark = pytest.mark.triton

DEVICE = "cpu" if _INTERP else "cuda"
F64, F32, F16, BF16 = torch.float64, torch.float32, torch.float16, torch.bfloat16


# ----------------------------------------------------------------------------
# oracles (float64, autograd)
# ----------------------------------------------------------------------------
def o_score(x, y, sigma, w=None):
    """(score, lse): ratio form sum_j w_j e_ij (y_j - x_i) / sigma^2 / sum_j w_j e_ij, differentiable in x, y, w."""
    z = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    a = -z / (2 * sigma * sigma)
    amax = a.max(1, keepdim=True).values.detach()
    k = torch.exp(a - amax)
    if w is not None:
        k = k * w[None, :]
    den = k.sum(1, keepdim=True)
    ybar = (k @ y) / den
    return (ybar - x) / (sigma * sigma), (torch.log(den) + amax).squeeze(1)


def o_score_grads(g, x, y, sigma, w=None):
    """(gx, gy, gw) of L = sum g * score."""
    leaves = [t.detach().double().requires_grad_(True) for t in (x, y)]
    if w is not None:
        leaves.append(w.detach().double().requires_grad_(True))
    s, _ = o_score(*leaves[:2], sigma, leaves[2] if w is not None else None)
    return torch.autograd.grad((s * g.double()).sum(), leaves)


def o_flow(x, c, w, k):
    """sum_j w_j grad_1 k(x_i, c_j) by autograd; k maps (x [N, D], c [M, D]) to the Gram matrix."""
    xg = x.detach().double().requires_grad_(True)
    (f,) = torch.autograd.grad((k(xg, c.double()) * w.double()[None, :]).sum(), xg)
    return f


def _gauss(sigmas):
    return lambda a, b: sum(torch.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s * s)) for s in sigmas)


def _imq(beta, c):
    return lambda a, b: (c * c + ((a[:, None] - b[None]) ** 2).sum(-1)) ** beta


def _poly(n, gamma, c0):
    return lambda a, b: (gamma * (a @ b.T) + c0) ** n


# (family code, params as encoded by gankernels/kernels.py, oracle Gram function)
FLOW_CASES = {
    "gaussian": (0, [0.5, 2.0], _gauss([0.5, 2.0])),
    "imq": (2, [-0.5, 1.0], _imq(-0.5, 1.0)),
    "polynomial": (6, [2.0, 0.5, 1.0], _poly(2, 0.5, 1.0)),
}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------
def _rand(*shape, seed, scale=1.0, shift=0.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=F64) * scale + shift).to(dtype).to(DEVICE)


def _weights(m, seed, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, generator=g, dtype=F64) + 0.05).to(dtype).to(DEVICE)


def _err(got, ref):
    return float((got.detach().cpu().double() - ref.detach().cpu().double()).abs().max())


def _scale(ref):
    return max(float(ref.detach().abs().max()), 1e-30)


# float64: 1e-10 of the output scale; float32: 2e-5; half: about 4 roundings of the output (computed in fp32).
REL = {F64: 1e-10, F32: 2e-5, F16: 2e-3, BF16: 1.6e-2}


def _check(got, ref, dtype, what, rel=None, floor=0.0):
    """max |got - ref| <= rel * max(|ref|_max, floor) (floor: the scale of an output that may be ~0)."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
    assert torch.isfinite(got.cpu()).all(), f"{what}: non-finite output"
    bound = (rel or REL[dtype]) * max(_scale(ref), floor)
    assert _err(got, ref) <= bound, f"{what}: max error {_err(got, ref):.3e} > {bound:.3e}"


def _inputs(n, m, d, dtype, weighted, seed=0):
    x = _rand(n, d, seed=seed, scale=d ** -0.5, dtype=dtype)
    y = _rand(m, d, seed=seed + 1, scale=d ** -0.5, shift=0.3, dtype=dtype)
    return x, y, (_weights(m, seed + 2, dtype) if weighted else None)


def _o64(t):
    return None if t is None else t.detach().cpu().double()


# ----------------------------------------------------------------------------
# smoothed_score: values
# ----------------------------------------------------------------------------
SIZES = [1, 3, 37]


@pytest.mark.parametrize("d", [1, 3, 17])
@pytest.mark.parametrize("m", SIZES)
@pytest.mark.parametrize("n", SIZES)
def test_score_float64(n, m, d):
    sigma = 0.45
    for weighted in (False, True):
        x, y, w = _inputs(n, m, d, F64, weighted, seed=n + m + d)
        score, lse = ts.smoothed_score(x, y, w, sigma)
        ref, ref_lse = o_score(_o64(x), _o64(y), sigma, _o64(w))
        _check(score, ref, F64, f"score w={weighted}")
        _check(lse, ref_lse, F64, f"lse w={weighted}")


@pytest.mark.parametrize("dtype", [F32, F16, BF16], ids=["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("n,m,d", [(1, 37, 3), (37, 3, 17), (37, 37, 1)])
def test_score_low_precision(n, m, d, dtype):
    sigma = 0.45
    x, y, w = _inputs(n, m, d, dtype, weighted=True, seed=3)
    try:
        score, lse = ts.smoothed_score(x, y, w, sigma)
    except Exception as e:  # pragma: no cover - interpreter dtype support varies
        if _INTERP and dtype in (F16, BF16):
            pytest.skip(f"{dtype} not supported by this interpreter: {e}")
        raise
    ref, ref_lse = o_score(_o64(x), _o64(y), sigma, _o64(w))  # oracle on the rounded inputs
    _check(score, ref, dtype, "score")
    _check(lse, ref_lse, F32, "lse", rel=REL[F32])


def test_score_noncontiguous_and_shifted():
    """Transposed / strided inputs; data far from the origin (the kernel works relative to the centres' mean)."""
    base = _rand(5, 37, seed=4, shift=100.0)
    x = base.T[:, :3]                       # [37, 3], strides (1, 37)
    y = _rand(17, 6, seed=5, shift=100.0)[:, ::2]  # column stride 2
    w = _weights(34, 6)[::2]
    score, _ = ts.smoothed_score(x, y, w, 0.8)
    _check(score, o_score(_o64(x), _o64(y), 0.8, _o64(w))[0], F64, "score")


def test_zero_weights_remove_centres():
    x, y, w = _inputs(17, 37, 3, F64, weighted=True, seed=7)
    w0 = w.clone()
    w0[20:] = 0
    a, la = ts.smoothed_score(x, y, w0, 0.5)
    b, lb = ts.smoothed_score(x, y[:20], w[:20], 0.5)
    assert _err(a, b) <= 1e-12 * _scale(b) and _err(la, lb) <= 1e-12 * _scale(lb)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["float64", "float32"])
def test_far_queries_follow_the_nearest_centre(dtype):
    """1000 sigma from every centre a plain exp-normalise gives 0 / 0; the score is the nearest centre's."""
    sigma = 0.1
    y = _rand(37, 3, seed=8, dtype=dtype)
    x = torch.tensor([[100.0, 0.0, 0.0], [0.0, -100.0, 40.0], [30.0, 30.0, -30.0]], dtype=dtype, device=DEVICE)
    score, lse = ts.smoothed_score(x, y, None, sigma)
    nearest = y.double()[torch.cdist(x.double(), y.double()).argmin(1)]
    expect = (nearest - x.double()) / sigma ** 2
    assert torch.isfinite(score).all() and torch.isfinite(lse).all()
    rel = 1e-12 if dtype == F64 else 1e-5
    assert _err(score, expect) <= rel * _scale(expect)
    g = _rand(3, 3, seed=9, dtype=dtype)
    grads = ts.smoothed_score_backward(g, x, y, None, sigma, score, lse, [True, True, False])
    assert all(torch.isfinite(t).all() for t in grads)


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered")  # numpy, inside the interpreter's tl.max
def test_nan_propagates_per_row():
    x, y, w = _inputs(37, 17, 3, F32, weighted=True, seed=10)
    x[5, 1] = float("nan")
    score, lse = ts.smoothed_score(x, y, w, 0.5)
    rest = torch.arange(37, device=DEVICE) != 5
    assert torch.isnan(score[5]).all() and torch.isnan(lse[5])
    assert torch.isfinite(score[rest]).all() and torch.isfinite(lse[rest]).all()
    g = torch.ones_like(x)
    gx, gy, gw = ts.smoothed_score_backward(g, x, y, w, 0.5, score, lse, [True, True, True])
    assert torch.isnan(gx[5]).all() and torch.isfinite(gx[rest]).all()
    assert torch.isnan(gy).any() and torch.isnan(gw).any()  # every centre sees the NaN row
    y[7, 0] = float("nan")
    assert torch.isnan(ts.smoothed_score(x, y, w, 0.5)[0]).all()


# ----------------------------------------------------------------------------
# smoothed_score: gradients
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("n,m,d", [(1, 1, 1), (3, 37, 17), (37, 3, 3), (37, 37, 1)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_backward_float64(n, m, d, weighted):
    sigma = 0.6
    x, y, w = _inputs(n, m, d, F64, weighted, seed=11 + n + d)
    g = _rand(n, d, seed=12)
    score, lse = ts.smoothed_score(x, y, w, sigma)
    got = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, [True, True, True])
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), sigma, _o64(w))
    for name, a, b in zip(("gx", "gy", "gw"), got, ref):
        _check(a, b, F64, name, floor=_scale(ref[0]))
    if not weighted:
        assert got[2].shape == (0,)


def test_backward_float32_noncontiguous_and_masks():
    sigma = 0.5
    x = _rand(3, 37, seed=13, dtype=F32).T        # [37, 3] transposed view
    y = _rand(17, 6, seed=14, shift=0.3, dtype=F32)[:, ::2]
    w = _weights(17, 15, F32)
    g = _rand(37, 6, seed=16, dtype=F32)[:, 1::2]
    score, lse = ts.smoothed_score(x, y, w, sigma)
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), sigma, _o64(w))
    got = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, [True, True, True])
    for name, a, b in zip(("gx", "gy", "gw"), got, ref):
        _check(a, b, F32, name, rel=2e-4, floor=_scale(ref[0]))
    for k in range(3):  # each output alone; the others are zeros
        mask = [i == k for i in range(3)]
        part = ts.smoothed_score_backward(g, x, y, w, sigma, score, lse, mask)
        assert torch.equal(part[k], got[k])
        assert all(not part[i].any() for i in range(3) if i != k)


def test_backward_zero_weight_gradient():
    """d score / d w_j at w_j = 0 is finite and non-zero (computed without dividing by w_j)."""
    x, y, w = _inputs(17, 37, 3, F64, weighted=True, seed=17)
    w[::3] = 0
    g = _rand(17, 3, seed=18)
    score, lse = ts.smoothed_score(x, y, w, 0.5)
    gx, gy, gw = ts.smoothed_score_backward(g, x, y, w, 0.5, score, lse, [True, True, True])
    ref = o_score_grads(g.cpu(), x.cpu(), y.cpu(), 0.5, _o64(w))
    for name, a, b in zip(("gx", "gy", "gw"), (gx, gy, gw), ref):
        _check(a, b, F64, name, floor=_scale(ref[0]))
    assert gw[::3].abs().min() > 0 and not gy[::3].any()


def test_deterministic():
    x, y, w = _inputs(37, 37, 3, F32, weighted=True, seed=19)
    g = _rand(37, 3, seed=20, dtype=F32)
    first = ts.smoothed_score(x, y, w, 0.5)
    again = ts.smoothed_score(x, y, w, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    b1 = ts.smoothed_score_backward(g, x, y, w, 0.5, *first, [True, True, True])
    b2 = ts.smoothed_score_backward(g, x, y, w, 0.5, *first, [True, True, True])
    assert all(torch.equal(a, b) for a, b in zip(b1, b2))


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


# ----------------------------------------------------------------------------
# errors, registration
# ----------------------------------------------------------------------------
def _err_cases():
    x, y = torch.zeros(4, 3, device=DEVICE), torch.zeros(5, 3, device=DEVICE)
    w = torch.ones(5, device=DEVICE)
    return [
        (lambda: ts.smoothed_score(x, y[:, :2], None, 1.0), ValueError, "dimension"),
        (lambda: ts.smoothed_score(x, y.double(), None, 1.0), TypeError, "dtype"),
        (lambda: ts.smoothed_score(x[:0], y, None, 1.0), ValueError, "non-empty"),
        (lambda: ts.smoothed_score(x.long(), y.long(), None, 1.0), TypeError, "floating"),
        (lambda: ts.smoothed_score(x, y, None, 0.0), ValueError, "sigma"),
        (lambda: ts.smoothed_score(x, y, w[:4], 1.0), ValueError, "weights"),
        (lambda: ts.smoothed_score_backward(x[:3], x, y, None, 1.0, x, x[:, 0], [True] * 3), ValueError, "grad"),
        (lambda: tlg.langevin_step(x, y, 0.1, 1.0, 0), ValueError, "shape"),
        (lambda: tlg.langevin_step(x, x, -0.1, 1.0, 0), ValueError, "step_size"),
        (lambda: tlg.langevin_step(x, x, 0.1, float("nan"), 0), ValueError, "temperature"),
        (lambda: tlg.kernel_langevin(x, y, w, 0, [1.0], 0.1, -1, 1.0, 0), ValueError, "steps"),
        (lambda: tlg.kernel_langevin(x, y, w, 42, [1.0], 0.1, 1, 1.0, 0), ValueError, "family"),
        (lambda: tlg.kde_langevin(x, y, [], 1, 0.1, 0), ValueError, "sigmas"),
        (lambda: tlg.kde_langevin(x, y, [1.0], 1, 0.0, 0), ValueError, "eps"),
    ]


@pytest.mark.parametrize("k", range(len(_err_cases())))
def test_errors(k):
    call, err, match = _err_cases()[k]
    with pytest.raises(err, match=match):
        call()





def test_package_registers_cuda_kernels():
    """Importing gankernels (with its C++ extension) registers these kernels for the CUDA key."""
    try:
        import gankernels  # noqa: F401
    except ImportError as e:  # pragma: no cover - extension not built
        pytest.skip(f"gankernels C++ extension not importable: {e}")
    for name in ("smoothed_score", "smoothed_score_backward", "langevin_step", "langevin_step_",
                 "kernel_langevin", "kde_langevin"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key("gankernels::" + name, "CUDA"), name
