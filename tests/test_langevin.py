"""Langevin updates: the deterministic part exactly, the noise statistically (fixed seeds,
tolerances in multiples of the standard error), reproducibility, sampling quality
(Gaussian mixture moments, 5 x 5 grid coverage, MMD decrease), opcheck, errors."""
from __future__ import annotations

import math

import pytest
import torch

import gankernels as gk

ops = torch.ops.gankernels


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- langevin_step

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_step_without_noise_is_exact(dtype):
    x = torch.randn(37, 5).to(dtype)
    d = torch.randn(37, 5).to(dtype)
    out = gk.langevin_step(x, d, 0.3, temperature=0.0)
    expect = (x.double() + 0.3 * d.double()).to(dtype)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expect)  # torch's per-dtype tolerances (a fused multiply-add may round once less)


def test_noise_is_standard_normal():
    """10^6 draws: mean and variance within 4.5 standard errors; Kolmogorov-Smirnov statistic
    sqrt(n) D < 1.95 (the 0.1 % critical value); neighbouring elements uncorrelated (4.5 s.e.)."""
    n = 1_000_000
    x = torch.zeros(1000, 1000)
    eta = 0.5  # noise scale sqrt(2 * 0.5 * 1) = 1
    xi = gk.langevin_step(x, torch.zeros_like(x), eta, 1.0, generator=gen(11)).flatten().double()
    assert abs(float(xi.mean())) * math.sqrt(n) < 4.5
    assert abs(float(xi.var()) - 1.0) / math.sqrt(2.0 / n) < 4.5
    s = torch.sort(xi[:200_000]).values
    ecdf = torch.arange(1, s.numel() + 1, dtype=torch.float64) / s.numel()
    ks = float((torch.special.ndtr(s) - ecdf).abs().max()) * math.sqrt(s.numel())
    assert ks < 1.95
    lag1 = float((xi[:-1] * xi[1:]).mean())
    assert abs(lag1) * math.sqrt(n) < 4.5
    assert float(xi.abs().max()) < 6.0  # Box-Muller with 24-bit uniforms: |xi| <= 5.77


def test_noise_scale_follows_step_and_temperature():
    x = torch.zeros(500_000, 1)
    out = gk.langevin_step(x, x, 0.02, temperature=3.0, generator=gen(1))
    expected_var = 2 * 0.02 * 3.0
    assert abs(float(out.double().var()) / expected_var - 1) < 4.5 * math.sqrt(2 / 500_000)


def test_reproducible_and_independent():
    x = torch.randn(300, 7)
    d = torch.randn(300, 7)
    a = gk.langevin_step(x, d, 0.1, generator=gen(5))
    b = gk.langevin_step(x, d, 0.1, generator=gen(5))
    c = gk.langevin_step(x, d, 0.1, generator=gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = gen(5)
    first, second = gk.langevin_step(x, d, 0.1, generator=g), gk.langevin_step(x, d, 0.1, generator=g)
    assert not torch.equal(first, second)  # the generator advances
    noise_a, noise_c = (a - x - 0.1 * d).flatten(), (c - x - 0.1 * d).flatten()
    assert abs(float(torch.corrcoef(torch.stack([noise_a, noise_c]))[0, 1])) < 4.5 / math.sqrt(2100)


def test_independent_of_thread_count():
    x = torch.randn(2000, 50)
    d = torch.randn(2000, 50)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = gk.langevin_step(x, d, 0.1, generator=gen(3))
        torch.set_num_threads(2)
        b = gk.langevin_step(x, d, 0.1, generator=gen(3))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_inplace_matches_out_of_place(dtype):
    base = torch.randn(64, 40).to(dtype)
    d = torch.randn(64, 40).to(dtype)
    expect = gk.langevin_step(base, d, 0.05, generator=gen(9))
    x = base.clone()
    ret = gk.langevin_step_(x, d, 0.05, generator=gen(9))
    assert ret is x
    assert torch.equal(x, expect)
    xt = base.clone().T.contiguous().T  # non-contiguous
    gk.langevin_step_(xt, d, 0.05, generator=gen(9))
    assert torch.equal(xt, expect)


def test_step_accepts_any_shape():
    x = torch.randn(4, 3, 8, 8)
    out = gk.langevin_step(x, torch.zeros_like(x), 0.1, generator=gen(0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_nan_propagates():
    x = torch.zeros(10, 3)
    x[2, 1] = float("nan")
    out = gk.langevin_step(x, torch.zeros_like(x), 0.1, generator=gen(0))
    assert torch.isnan(out[2, 1]) and torch.isfinite(out).sum() == 29


# ----------------------------------------------------------------------------- samplers

def test_langevin_sample_recovers_mixture_moments():
    """Exact score of 0.3 N((-1, 0), 0.8^2 I) + 0.7 N((1, 0.5), 0.8^2 I) (overlapping: the chain mixes).
    10^4 chains x 600 steps of eta = 0.02: the unadjusted Langevin bias is O(eta / sigma^2) ~ 1.6 % of the
    covariance, the sampling s.e. of the mean ~ 0.01; tolerances: 0.05 on the mean, 6 % on the covariance."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    pi = torch.tensor([0.3, 0.7], dtype=torch.float64)
    s = 0.8

    def score(x):
        return gk.smoothed_score(x, means, s, pi)

    x0 = torch.randn(10_000, 2, generator=gen(0), dtype=torch.float64) * 2
    xs = gk.langevin_sample(x0, score, steps=600, step_size=0.02, generator=gen(1))
    mean = (pi[:, None] * means).sum(0)
    dev = means - mean
    cov = s * s * torch.eye(2, dtype=torch.float64) + (pi[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0)
    torch.testing.assert_close(xs.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(xs.T), cov, atol=0.06 * float(cov.abs().max()), rtol=0)
    again = gk.langevin_sample(x0, score, steps=600, step_size=0.02, generator=gen(1))
    assert torch.equal(xs, again)


def grid25(n, generator):
    t = torch.linspace(-4, 4, 5)
    centres = torch.cartesian_prod(t, t)
    idx = torch.randint(25, (n,), generator=generator)
    return centres[idx] + 0.05 * torch.randn(n, 2, generator=generator), centres


def test_kde_langevin_covers_the_grid():
    """docs/MATH.md §6 grid (std 0.05), 2,500 samples from N(0, 4^2 I) noise; annealed over 10 sigmas 4 -> 0.01.
    Requirements from the issue: >= 24 of 25 modes, >= 90 % high quality (within 3 std of a mode)."""
    data, centres = grid25(2000, gen(0))
    x0 = torch.randn(2500, 2, generator=gen(1)) * 4
    sigmas = torch.logspace(math.log10(4), math.log10(0.01), 10).tolist()
    xs = gk.kde_langevin(x0, data, sigmas, steps_per_sigma=10, eps=5e-5, generator=gen(2))
    dist, idx = torch.cdist(xs, centres).min(1)
    hq = dist < 3 * 0.05
    assert idx[hq].unique().numel() >= 24
    assert float(hq.float().mean()) >= 0.90
    assert torch.equal(xs, gk.kde_langevin(x0, data, sigmas, 10, 5e-5, generator=gen(2)))


def test_kde_langevin_step_is_a_score_step():
    """One sigma, one step: x + (alpha / 2) smoothed_score + sqrt(alpha) xi with alpha = eps."""
    data = torch.randn(300, 3, dtype=torch.float64)
    x = torch.randn(50, 3, dtype=torch.float64)
    out = gk.kde_langevin(x, data, [0.7], 1, 0.01, generator=gen(4))
    noise = out - x - 0.005 * gk.smoothed_score(x, data, 0.7)
    # the noise of the same (seed, step 0) through langevin_step: x + 0 * drift + sqrt(2 * 0.005) xi
    ref = gk.langevin_step(torch.zeros_like(x), torch.zeros_like(x), 0.005, generator=gen(4))
    torch.testing.assert_close(noise, ref, rtol=0, atol=1e-12)


def test_kernel_langevin_first_step_is_the_flow():
    c = torch.randn(80, 4, dtype=torch.float64)
    w = torch.randn(80, dtype=torch.float64)
    x = torch.randn(30, 4, dtype=torch.float64)
    for kernel in (gk.Gaussian((0.5, 2.0)), gk.InverseMultiquadric(), gk.Polynomial(2)):
        out = gk.kernel_langevin(x, c, kernel, w, 0.2, 1, temperature=0.0)
        torch.testing.assert_close(out, x + 0.2 * gk.kernel_flow(x, c, kernel, w), rtol=0, atol=1e-12)


def test_kernel_langevin_moves_fake_toward_real():
    """Discriminator-guided Langevin with the closed-form witness of the fixed real / fake batch: 20 steps
    cut MMD^2 to the real cloud from 0.98 to 0.46 and halve the gap between the means (with fixed centres
    longer chains overshoot: the drift pushes away from where the fake centres were)."""
    real = torch.randn(500, 2, generator=gen(0))
    fake = torch.randn(500, 2, generator=gen(1)) + torch.tensor([2.0, 1.0])
    kernel = gk.Gaussian((0.5, 1.0, 2.0))
    centres = torch.cat([real, fake])
    w = torch.cat([torch.full((500,), 1 / 500), torch.full((500,), -1 / 500)])
    before = float(gk.mmd2(fake, real, kernel))
    out = gk.kernel_langevin(fake, centres, kernel, w, 0.5, 20, temperature=1e-4, generator=gen(2))
    after = float(gk.mmd2(out, real, kernel))
    assert after < 0.6 * before
    gap = lambda pts: float((pts.mean(0) - real.mean(0)).norm())  # noqa: E731
    assert gap(out) < 0.5 * gap(fake)
    assert torch.equal(out, gk.kernel_langevin(fake, centres, kernel, w, 0.5, 20, 1e-4, generator=gen(2)))


def test_discriminator_score_under_no_grad():
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    net = lambda x: -0.5 * ((x @ A) * x).sum(1)  # noqa: E731  grad = -A x
    score = gk.discriminator_score(net)
    x = torch.randn(20, 2)
    with torch.no_grad():
        g = score(x)
    torch.testing.assert_close(g, -x @ A)
    xs = gk.langevin_sample(x, score, steps=3, step_size=0.01, generator=gen(0))
    assert xs.shape == x.shape and not xs.requires_grad


# ----------------------------------------------------------------------------- steps = 0 is the identity

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=str)
def test_zero_steps_return_an_exact_copy(dtype):
    """No step, no change: not even the ulp of a round trip through the shift by the centres' mean."""
    x = (torch.randn(70, 3, generator=gen(0)) * 10 + 3.3).to(dtype)
    c = (torch.randn(40, 3, generator=gen(1)) + 0.37).to(dtype)
    for call in (lambda t: gk.kernel_langevin(t, c, gk.Gaussian(1.0), None, 0.1, 0, generator=gen(2)),
                 lambda t: gk.kde_langevin(t, c, [1.0, 0.5], 0, 0.1, generator=gen(2)),
                 lambda t: ops.kernel_langevin(t, c, torch.ones(40, dtype=dtype), 0, [1.0], 0.1, 0, 1.0, 5),
                 lambda t: ops.kde_langevin(t, c, [1.0], 0, 0.1, 5)):
        for t in (x, x.t().contiguous().t()):  # contiguous and not
            out = call(t)
            assert torch.equal(out, t) and out.dtype == t.dtype
            assert out.is_contiguous() and out.data_ptr() != t.data_ptr()


# ----------------------------------------------------------------------------- langevin_step_ and autograd

def test_inplace_step_bumps_the_version():
    x = torch.randn(6, 3)
    for step in (lambda t: gk.langevin_step_(t, torch.zeros_like(t), 0.1, generator=gen(0)),
                 lambda t: ops.langevin_step_(t, torch.zeros_like(t), 0.1, 1.0, 3)):
        v = x._version
        step(x)
        assert x._version > v
    view = x[:, 1:]  # a view shares the counter of its base
    v = x._version
    gk.langevin_step_(view, torch.zeros_like(view), 0.1, generator=gen(0))
    assert x._version > v and view._version == x._version


@pytest.mark.parametrize("public", [True, False], ids=["langevin_step_", "op"])
def test_saved_tensor_updated_in_place_fails_at_backward(public):
    """A graph that saved x must not backpropagate through the new values of x."""
    a = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x = a * 2.0  # non-leaf
    loss = (x * x).sum()  # saves x
    d = torch.randn(5, 3, dtype=torch.float64)
    if public:
        gk.langevin_step_(x, d, 0.1, generator=gen(0))
    else:
        with torch.no_grad():
            ops.langevin_step_(x, d, 0.1, 1.0, 3)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_non_leaf_keeps_its_history():
    """Under no_grad the step adds a constant to a non-leaf: its gradient path is unchanged."""
    a = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    x = a * 3.0
    gk.langevin_step_(x, torch.randn(5, 3, dtype=torch.float64), 0.1, generator=gen(0))
    x.sum().backward()
    torch.testing.assert_close(a.grad, torch.full_like(a, 3.0))


def test_leaf_that_requires_grad_is_refused():
    leaf = torch.randn(5, 3, requires_grad=True)
    d = torch.zeros(5, 3)
    before = leaf.detach().clone()
    for step in (lambda t, dd: gk.langevin_step_(t, dd, 0.1, generator=gen(0)),
                 lambda t, dd: ops.langevin_step_(t, dd, 0.1, 1.0, 3)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
            step(leaf, d)
        with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
            step(leaf[1:], d[1:])
    assert torch.equal(leaf.detach(), before) and leaf._version == 0
    with torch.no_grad():  # allowed, as for PyTorch's own in-place ops
        gk.langevin_step_(leaf, d, 0.1, generator=gen(0))
        ops.langevin_step_(leaf[1:], d[1:], 0.1, 1.0, 3)
    assert leaf._version == 2 and leaf.requires_grad and leaf.is_leaf


def test_op_is_not_differentiable():
    """The raw op under grad mode refuses x or drift that require grad (it has no derivative)."""
    x = torch.randn(4, 2, requires_grad=True) * 1.0
    d = torch.zeros(4, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable.*x requires grad"):
        ops.langevin_step_(x, d.detach(), 0.1, 1.0, 0)
    with pytest.raises(RuntimeError, match="not differentiable.*drift requires grad"):
        ops.langevin_step_(x.detach(), d, 0.1, 1.0, 0)


def test_inplace_opcheck_with_autograd_registration():
    x = torch.randn(6, 3, dtype=torch.float64)
    d = torch.randn(6, 3, dtype=torch.float64)
    torch.library.opcheck(ops.langevin_step_, (x.clone(), d, 0.1, 1.0, 123),
                          test_utils=["test_schema", "test_faketensor", "test_aot_dispatch_dynamic"])
    # an autograd kernel is registered (it refuses inputs that require grad; see above)
    torch.library.opcheck(ops.langevin_step_, (x.clone(), d.requires_grad_(True), 0.1, 1.0, 123),
                          test_utils=["test_autograd_registration"])
    assert torch._C._dispatch_has_kernel_for_dispatch_key("gankernels::langevin_step_", "Autograd")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("gankernels::langevin_step_", "ADInplaceOrView")


# ----------------------------------------------------------------------------- opcheck and errors

UTILS = ["test_schema", "test_faketensor", "test_aot_dispatch_dynamic"]


def test_opcheck():
    x = torch.randn(6, 3, dtype=torch.float64)
    d = torch.randn(6, 3, dtype=torch.float64)
    c = torch.randn(5, 3, dtype=torch.float64)
    w = torch.randn(5, dtype=torch.float64)
    family, params = gk.Gaussian(1.0).encode(3)
    torch.library.opcheck(ops.langevin_step, (x, d, 0.1, 1.0, 123), test_utils=UTILS)
    torch.library.opcheck(ops.langevin_step_, (x.clone(), d, 0.1, 1.0, 123), test_utils=UTILS)
    torch.library.opcheck(ops.kernel_langevin, (x, c, w, int(family), [float(p) for p in params], 0.1, 3, 1.0, 7),
                          test_utils=UTILS)
    torch.library.opcheck(ops.kde_langevin, (x, c, [1.0, 0.5], 2, 0.01, 7), test_utils=UTILS)


@pytest.mark.parametrize("call, err, match", [
    (lambda x: gk.langevin_step(x, x, 0.0), ValueError, "step_size"),
    (lambda x: gk.langevin_step(x, x, float("inf")), ValueError, "step_size"),
    (lambda x: gk.langevin_step(x, x, 0.1, temperature=-1.0), ValueError, "temperature"),
    (lambda x: gk.langevin_step(x, x[:2], 0.1), ValueError, "drift"),
    (lambda x: gk.langevin_step(x, x.double(), 0.1), TypeError, "drift"),
    (lambda x: gk.langevin_step(x.long(), x.long(), 0.1), TypeError, "x"),
    (lambda x: gk.langevin_step(x, x, 0.1, generator=3), TypeError, "generator"),
    (lambda x: gk.langevin_step_(x, x, -0.1), ValueError, "step_size"),
    (lambda x: gk.kernel_langevin(x, x, gk.Gaussian(), None, 0.1, -1), ValueError, "steps"),
    (lambda x: gk.kernel_langevin(x, x, gk.Gaussian(), None, 0.1, 2.5), TypeError, "steps"),
    (lambda x: gk.kernel_langevin(x, x, gk.Gaussian(), torch.ones(3), 0.1, 1), ValueError, "weights"),
    (lambda x: gk.kernel_langevin(x, x[:, :1], gk.Gaussian(), None, 0.1, 1), ValueError, "dimension"),
    (lambda x: gk.kernel_langevin(x, x, "gauss", None, 0.1, 1), TypeError, "kernel"),
    (lambda x: gk.kernel_langevin(x, x, gk.Gaussian(), None, 0.0, 1), ValueError, "step_size"),
    (lambda x: gk.kde_langevin(x, x, [1.0, 0.0], 1, 0.1), ValueError, "sigmas"),
    (lambda x: gk.kde_langevin(x, x, [], 1, 0.1), ValueError, "sigmas"),
    (lambda x: gk.kde_langevin(x, x, [1.0], 1, 0.0), ValueError, "eps"),
    (lambda x: gk.kde_langevin(x, x.double(), [1.0], 1, 0.1), TypeError, "dtype"),
    (lambda x: gk.langevin_sample(x, "score", 1, 0.1), TypeError, "score_fn"),
    (lambda x: gk.langevin_sample(x, lambda t: t, 1, -0.1), ValueError, "step_size"),
    (lambda x: gk.langevin_sample(x, lambda t: t, 0, 0.1, temperature=-1.0), ValueError, "temperature"),
    (lambda x: gk.langevin_step(x, x, torch.tensor(0.1)), TypeError, "step_size"),
])
def test_errors(call, err, match):
    with pytest.raises(err, match=match):
        call(torch.randn(4, 2))


def test_numpy_scalars_are_accepted():
    np = pytest.importorskip("numpy")
    x = torch.randn(5, 2)
    a = gk.langevin_step(x, x, np.float32(0.25), temperature=np.float64(0.0))
    torch.testing.assert_close(a, x + 0.25 * x)
    torch.testing.assert_close(gk.smoothed_score(x, x, np.float32(0.5)), gk.smoothed_score(x, x, 0.5))

