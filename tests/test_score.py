"""smoothed_score: values against the float64 oracle (autograd of the log smoothed density),
gradients (gradcheck and against the oracle), far-away queries, NaN, opcheck, torch.compile, errors."""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from conftest import DTYPES, assert_accurate, dtype_id, make_input, to64

ops = torch.ops.gankernels

SHAPES = [(1, 1, 1), (3, 127, 3), (127, 3, 2), (130, 300, 9), (33, 1023, 300), (1023, 257, 2)]


def score_scale(x, y, sigma, weights=None) -> float:
    """max_i,d sum_j p_ij |y_jd - x_id| / sigma^2 (float64): the magnitude of the summed terms."""
    x64, y64 = to64(x), to64(y)
    logits = -ref.sqdist(x64, y64) / (2 * sigma * sigma)
    if weights is not None:
        logits = logits + to64(weights).log()[None]
    p = torch.softmax(logits, 1)
    return float(max(((p[:, :, None] * (y64[None] - x64[:, None]).abs()).sum(1)).max(), 1e-30) / sigma ** 2)


def _inputs(n, m, d, dtype, layout="C", weighted=False):
    x = make_input(n, d, dtype, layout, seed=0, scale=d ** -0.5)
    y = make_input(m, d, dtype, "C", seed=1, scale=d ** -0.5, shift=0.3)
    w = None
    if weighted:
        g = torch.Generator().manual_seed(2)
        w = (torch.rand(m, generator=g, dtype=torch.float64) + 0.05).to(dtype)
    return x, y, w


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_values(shape, dtype, weighted):
    n, m, d = shape
    sigma = 0.35
    x, y, w = _inputs(n, m, d, dtype, layout="T" if n > 1 and d > 1 else "C", weighted=weighted)
    out = gk.smoothed_score(x, y, sigma, w)
    oracle = ref.smoothed_score(to64(x), to64(y), sigma, to64(w)).detach()
    naive = ref.eager_smoothed_score(x, y, sigma, w)
    assert_accurate(out, oracle, naive, dtype, score_scale(x, y, sigma, w), f"smoothed_score {shape}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
def test_far_queries_follow_the_nearest_centre(dtype):
    """1000 sigma from every centre all weights underflow in a naive exp; the score is that of the nearest centre."""
    sigma = 0.1
    y = make_input(50, 3, dtype, seed=3)
    x = torch.tensor([[100.0, 0.0, 0.0], [0.0, -100.0, 40.0], [1e3, 1e3, -1e3]], dtype=dtype)
    out = gk.smoothed_score(x, y, sigma)
    nearest = y[torch.cdist(x.double(), y.double()).argmin(1)]
    expect = (nearest.double() - x.double()) / sigma ** 2
    assert torch.isfinite(out).all()
    naive = torch.exp(-torch.cdist(x, y) ** 2 / (2 * sigma ** 2))
    assert (naive.sum(1) == 0).all()  # the case this test is about: a plain exp-normalise gives 0 / 0
    torch.testing.assert_close(out.double(), expect, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=0)


def test_weights_are_a_mixture():
    """weights w: the score of sum_j w_j N(y_j, sigma^2) -- scaling all weights changes nothing."""
    x, y, w = _inputs(40, 30, 4, torch.float64, weighted=True)
    a = gk.smoothed_score(x, y, 0.5, w)
    b = gk.smoothed_score(x, y, 0.5, 7.0 * w)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # zero weights remove centres
    w0 = w.clone()
    w0[10:] = 0
    torch.testing.assert_close(gk.smoothed_score(x, y, 0.5, w0), gk.smoothed_score(x, y[:10], 0.5, w[:10]),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [2, 11])
def test_gradcheck(d):
    x, y, w = _inputs(7, 9, d, torch.float64, weighted=True)
    x.requires_grad_(True)
    y.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b, c: gk.smoothed_score(a, b, 0.6, c), (x, y, w))
    assert torch.autograd.gradcheck(lambda a, b: gk.smoothed_score(a, b, 1.3), (x, y))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("shape", [(130, 300, 3), (200, 129, 40)], ids=lambda s: "x".join(map(str, s)))
def test_gradients_match_oracle(shape, dtype):
    n, m, d = shape
    sigma = 0.4
    x, y, w = _inputs(n, m, d, dtype, weighted=True)
    g = make_input(n, d, torch.float64, seed=5)
    xs, ys, ws = (t.clone().requires_grad_(True) for t in (x, y, w))
    gk_grads = torch.autograd.grad((gk.smoothed_score(xs, ys, sigma, ws) * g.to(dtype)).sum(), (xs, ys, ws))
    x64, y64, w64 = (to64(t).requires_grad_(True) for t in (x, y, w))
    ref_grads = torch.autograd.grad((ref.smoothed_score(x64, y64, sigma, w64) * g).sum(), (x64, y64, w64))
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    for name, a, b in zip("xyw", gk_grads, ref_grads):
        scale = float(b.abs().max())
        err = float((a.double() - b).abs().max())
        assert err <= tol * scale, f"grad {name}: error {err:.3e} > {tol:.0e} * {scale:.3e}"


def test_nan_propagates_per_row():
    x, y, _ = _inputs(300, 200, 3, torch.float32)
    x[5, 1] = float("nan")
    out = gk.smoothed_score(x, y, 0.5)
    assert torch.isnan(out[5]).all()
    assert torch.isfinite(out[torch.arange(300) != 5]).all()
    y[7, 0] = float("nan")
    assert torch.isnan(gk.smoothed_score(x, y, 0.5)).all()


def test_deterministic():
    x, y, w = _inputs(500, 700, 16, torch.float32, weighted=True)
    xs = x.clone().requires_grad_(True)
    a = gk.smoothed_score(xs, y, 0.5, w)
    (ga,) = torch.autograd.grad(a.sum(), xs)
    b = gk.smoothed_score(xs, y, 0.5, w)
    (gb,) = torch.autograd.grad(b.sum(), xs)
    assert torch.equal(a, b) and torch.equal(ga, gb)


def test_memory_is_not_n_by_m():
    """N = M = 20,000, D = 2: an N x M fp32 matrix is 1.6 GB; the op's own allocations stay O((N + M) D)."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(20000, 2)
    y = torch.randn(20000, 2)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        gk.smoothed_score(x, y, 0.3)
    peak = max((e.cpu_memory_usage for e in prof.key_averages()), default=0)
    assert peak < 20000 * 2 * 4 * 20, f"allocated {peak} bytes"


def test_opcheck():
    x, y, w = _inputs(6, 5, 3, torch.float64, weighted=True)
    args = (x.requires_grad_(True), y.requires_grad_(True), w.requires_grad_(True), 0.7)
    torch.library.opcheck(ops.smoothed_score, args)
    torch.library.opcheck(ops.smoothed_score, (x, y, None, 0.7))
    score, lse = ops.smoothed_score(x.detach(), y.detach(), w.detach(), 0.7)
    g = torch.randn(6, 3, dtype=torch.float64)
    torch.library.opcheck(ops.smoothed_score_backward,
                          (g, x.detach(), y.detach(), w.detach(), 0.7, score, lse, [True, True, True]),
                          test_utils=["test_schema", "test_faketensor", "test_aot_dispatch_dynamic"])


def test_compile_fullgraph():
    x, y, w = _inputs(40, 50, 3, torch.float32, weighted=True)

    def f(a, b, c):
        s = gk.smoothed_score(a, b, 0.5, c)
        return (s * s).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xs = x.clone().requires_grad_(True)
    ys = y.clone().requires_grad_(True)
    out = compiled(xs, ys, w)
    gx, gy = torch.autograd.grad(out, (xs, ys))
    xe = x.clone().requires_grad_(True)
    ye = y.clone().requires_grad_(True)
    expect = f(xe, ye, w)
    ex, ey = torch.autograd.grad(expect, (xe, ye))
    torch.testing.assert_close(out, expect)
    torch.testing.assert_close(gx, ex)
    torch.testing.assert_close(gy, ey)


def test_no_double_backward():
    x, y, _ = _inputs(5, 4, 2, torch.float64)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(gk.smoothed_score(x, y, 0.5).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="once"):
        g.sum().backward()


@pytest.mark.parametrize("call, err, match", [
    (lambda x, y: gk.smoothed_score(x, y, 0.0), ValueError, "sigma"),
    (lambda x, y: gk.smoothed_score(x, y, -1.0), ValueError, "sigma"),
    (lambda x, y: gk.smoothed_score(x, y, float("nan")), ValueError, "sigma"),
    (lambda x, y: gk.smoothed_score(x, y, "1"), TypeError, "sigma"),
    (lambda x, y: gk.smoothed_score(x, y, 1.0, -torch.ones(4)), ValueError, "non-negative"),
    (lambda x, y: gk.smoothed_score(x, y, 1.0, torch.zeros(4)), ValueError, "zero"),
    (lambda x, y: gk.smoothed_score(x, y, 1.0, torch.ones(5)), ValueError, "weights"),
    (lambda x, y: gk.smoothed_score(x, y, 1.0, torch.ones(4, dtype=torch.int64)), TypeError, "weights"),
    (lambda x, y: gk.smoothed_score(x, y[:, :2], 1.0), ValueError, "dimension"),
    (lambda x, y: gk.smoothed_score(x, y.double(), 1.0), TypeError, "dtype"),
    (lambda x, y: gk.smoothed_score(x.long(), y, 1.0), TypeError, "x"),
    (lambda x, y: gk.smoothed_score(x[:0], y, 1.0), ValueError, "x"),
    (lambda x, y: gk.smoothed_score(x, y[0], 1.0), ValueError, "y"),
])
def test_errors(call, err, match):
    x = torch.randn(3, 3)
    y = torch.randn(4, 3)
    with pytest.raises(err, match=match):
        call(x, y)


def test_cpu_kernel_checks_weights_itself():
    """The data-dependent weight checks also live in the CPU kernel (they run under torch.compile)."""
    x, y = torch.randn(3, 2), torch.randn(4, 2)
    with pytest.raises(ValueError, match="non-negative"):
        ops.smoothed_score(x, y, -torch.ones(4), 1.0)


def test_weights_without_values_are_not_read():
    """Meta and fake weights have no values: the data-dependent checks are skipped, shapes still come back."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    x, y = torch.randn(6, 3, device="meta"), torch.randn(4, 3, device="meta")
    out = gk.smoothed_score(x, y, 0.5, torch.rand(4, device="meta"))
    assert out.shape == (6, 3) and out.device.type == "meta"
    with FakeTensorMode():
        x, y, w = torch.randn(6, 3), torch.randn(4, 3), torch.rand(4)
        out = gk.smoothed_score(x, y, 0.5, w)
        assert out.shape == (6, 3)
    with pytest.raises(ValueError, match="weights"):  # static checks still apply
        gk.smoothed_score(x.to("meta"), y.to("meta"), 0.5, torch.rand(5, device="meta"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=dtype_id)
def test_tiny_weights_survive_half_inputs(dtype):
    """Weights stay in the accumulation dtype: 1e-8 (0 in fp16) is a valid, uniform weighting."""
    x, y = torch.randn(9, 3).to(dtype), torch.randn(7, 3).to(dtype)
    w = torch.full((7,), 1e-8, requires_grad=True)
    out = gk.smoothed_score(x, y, 0.8, w)
    assert out.dtype == dtype
    torch.testing.assert_close(out, gk.smoothed_score(x, y, 0.8), rtol=1e-2, atol=1e-2)
    # unequal tiny weights: the same as the weights scaled up (the score is scale-invariant in w)
    v = torch.linspace(1e-9, 3e-8, 7)
    torch.testing.assert_close(gk.smoothed_score(x, y, 0.8, v), gk.smoothed_score(x, y, 0.8, v * 1e8),
                               rtol=1e-2, atol=1e-2)
    out.float().sum().backward()
    assert w.grad.dtype == torch.float32 and torch.isfinite(w.grad).all()
