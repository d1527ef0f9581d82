"""Property tests: random shapes, layouts, dtypes, offsets, scales, kernel families and parameters.

Every drawn case is checked against the float64 dense reference (``gankernels.reference``,
exact differences) with the accuracy rule of ``conftest.assert_accurate``: float64 within
``TOL64 * scale``; lower precision within 2x the error of the same dense formula run in that
dtype, plus ``ATOL_REL[dtype] * scale`` (``scale`` sums the absolute values of the terms).

The cases cover what real GAN code produces: features far from the origin (offsets up to
1e4), tiny batches, near-duplicate points, identical sets, bandwidths far from the data scale.
Hypothesis runs with ``derandomize=True``: a fixed, reproducible example budget per test.
"""
from __future__ import annotations

import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gankernels as gk  # noqa: E402
from gankernels import reference as ref  # noqa: E402
from conftest import (  # noqa: E402
    ATOL_REL, assert_accurate, flow_scale, is_kink, mmd2_grad_scale, mmd2_scale, sum_scale, to64, witness_scale,
)

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def problems(draw, smooth_only=False):
    """(x, y, kernel, dtype, bandwidth) with x [N, D], y [M, D]."""
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64]))
    n = draw(st.sampled_from([1, 2, 3, 5, 8, 17, 40, 130]))
    m = draw(st.sampled_from([1, 2, 4, 9, 33, 150]))
    d = draw(st.sampled_from([1, 2, 3, 8, 9, 16, 33]))
    spread = 10.0 ** draw(st.integers(-2, 2))
    offset = draw(st.sampled_from([0.0, 1.0, 100.0, 1e3, 1e4]))
    offset = offset * spread if draw(st.booleans()) else offset
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g, dtype=torch.float64)
    centre = offset * direction / direction.norm()
    x = centre + spread * torch.randn(n, d, generator=g, dtype=torch.float64)
    relation = draw(st.sampled_from(["independent", "independent", "near-duplicates", "same"]))
    if relation == "same":
        y = x[:m].clone() if m <= n else torch.cat([x, x[: m - n]])[:m].clone()
    elif relation == "near-duplicates":
        base = x[torch.arange(m) % n]
        y = base + spread * 10.0 ** draw(st.integers(-5, -2)) * torch.randn(m, d, generator=g, dtype=torch.float64)
    else:
        y = centre + spread * torch.randn(m, d, generator=g, dtype=torch.float64)
    # bandwidth relative to the typical distance of the data
    typical = spread * math.sqrt(2.0 * d)
    bw = typical * 10.0 ** draw(st.sampled_from([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0]))
    families = ["gaussian", "gaussian-mixture", "rq", "imq", "polyharmonic-eps"]
    if not smooth_only:
        families += ["laplacian", "energy", "polyharmonic", "polynomial", "linear"]
    family = draw(st.sampled_from(families))
    if family == "gaussian":
        kernel = gk.Gaussian(bw)
    elif family == "gaussian-mixture":
        kernel = gk.Gaussian(tuple(bw * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)))
    elif family == "rq":
        kernel = gk.RationalQuadratic(alphas=(0.5, 2.0), lengthscale=bw)
    elif family == "imq":
        kernel = gk.InverseMultiquadric(scales=bw, beta=draw(st.sampled_from([-0.5, -1.5])))
    elif family == "polyharmonic-eps":
        kernel = gk.Polyharmonic(draw(st.sampled_from([1, 2, 3])), eps=0.1 * bw)
    elif family == "laplacian":
        kernel = gk.Laplacian(bw)
    elif family == "energy":
        kernel = gk.Energy()
    elif family == "polyharmonic":
        kernel = gk.Polyharmonic(draw(st.sampled_from([1, 3])))
    elif family == "polynomial":
        kernel = gk.Polynomial(draw(st.sampled_from([1, 2, 3])), gamma=1.0 / (d * (spread ** 2 + offset ** 2 / d)))
    else:
        kernel = gk.Linear()
    x, y = x.to(dtype), y.to(dtype)
    if draw(st.booleans()):  # a non-contiguous layout (a transposed view)
        x = x.T.contiguous().T
    return x, y, kernel, dtype, bw


# The atol of the property tests, in units of the scale (the sum of |terms|).  fp32: 32 ulps.  The
# fixed-shape tests hold 8 ulps at moderate kernel values; in the far tail of a kernel (exponents of
# 10-80) the engine's tile expansion of z, the Gaussian bandwidth ladder (e^4, e^16 of one exponential)
# and pow as exp(b log q) cost up to ~4x more than the dense exact-difference formula.
ATOL = {**ATOL_REL, torch.float32: 32 * torch.finfo(torch.float32).eps}

# fp32 kernel values below ~1e-30 are flushed to 0 (the documented far-field flush, which keeps squaring
# in the Gaussian bandwidth ladder free of subnormals); cases whose whole answer lies below that are skipped.
FLUSHED_SCALE = 1e-15


def _not_flushed(scale: float, dtype) -> None:
    assume(dtype == torch.float64 or scale > FLUSHED_SCALE)


def _weights(m, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(m, generator=g, dtype=torch.float64) - 0.3).to(dtype)


@SETTINGS
@given(problems())
def test_kernel_sum_and_flow(problem):
    x, y, kernel, dtype, bw = problem
    w = _weights(y.shape[0], dtype, 1)
    _not_flushed(min(sum_scale(x, y, kernel, w), flow_scale(x, y, kernel, w)), dtype)
    out = gk.kernel_sum(x, y, kernel, w)
    assert_accurate(out, ref.kernel_sum(to64(x), to64(y), kernel, to64(w)),
                    None if dtype == torch.float64 else ref.kernel_sum(x, y, kernel, w), dtype,
                    sum_scale(x, y, kernel, w), "kernel_sum", ATOL)
    out = gk.kernel_flow(x, y, kernel, w)
    assert_accurate(out, ref.kernel_flow(to64(x), to64(y), kernel, to64(w)),
                    None if dtype == torch.float64 else ref.kernel_flow(x, y, kernel, w), dtype,
                    flow_scale(x, y, kernel, w), "kernel_flow", ATOL)


def _value_and_grads(fn, x, y):
    a = x.detach().clone().requires_grad_(True)
    b = y.detach().clone().requires_grad_(True)
    val = fn(a, b)
    ga, gb = torch.autograd.grad(val, (a, b))
    return val.detach(), ga, gb


@SETTINGS
@given(problems(), st.sampled_from(["biased", "unbiased"]))
def test_mmd2_and_gradients(problem, estimator):
    x, y, kernel, dtype, bw = problem
    if estimator == "unbiased" and min(x.shape[0], y.shape[0]) < 2:
        return
    gscale = mmd2_grad_scale(x, y, kernel)
    _not_flushed(min(gscale, mmd2_scale(x, y, kernel)), dtype)
    fused = _value_and_grads(lambda a, b: gk.mmd2(a, b, kernel, estimator), x, y)
    oracle = _value_and_grads(lambda a, b: ref.mmd2(a, b, kernel, estimator), to64(x), to64(y))
    naive = (None,) * 3 if dtype == torch.float64 else _value_and_grads(
        lambda a, b: ref.mmd2(a, b, kernel, estimator), x, y)
    assert_accurate(fused[0], oracle[0], naive[0], dtype, mmd2_scale(x, y, kernel), f"mmd2 {estimator}", ATOL)
    assert_accurate(fused[1], oracle[1], naive[1], dtype, gscale, f"d mmd2 {estimator} / dx", ATOL)
    assert_accurate(fused[2], oracle[2], naive[2], dtype, gscale, f"d mmd2 {estimator} / dy", ATOL)


@SETTINGS
@given(problems())
def test_witness(problem):
    x, y, kernel, dtype, bw = problem
    z = x[: max(1, x.shape[0] // 2)]
    _not_flushed(witness_scale(z, x, y, kernel), dtype)
    out = gk.witness(z, x, y, kernel)
    assert_accurate(out, ref.witness(to64(z), to64(x), to64(y), kernel),
                    None if dtype == torch.float64 else ref.witness(z, x, y, kernel), dtype,
                    witness_scale(z, x, y, kernel), "witness", ATOL)


@SETTINGS
@given(problems(smooth_only=True))
def test_kernel_sum_second_order(problem):
    """The Hessian-vector product (double backward) of a weighted kernel sum, as gradient penalties use it."""
    x, y, kernel, dtype, bw = problem
    if is_kink(kernel):
        return
    w = _weights(y.shape[0], dtype, 2)
    g = torch.Generator().manual_seed(3)
    v = torch.randn(x.shape, generator=g, dtype=torch.float64)

    def hvp(fn, a, b, wt):
        a = a.detach().clone().requires_grad_(True)
        (ga,) = torch.autograd.grad(fn(a, b, kernel, wt).sum(), a, create_graph=True)
        (h,) = torch.autograd.grad((ga * v.to(ga.dtype)).sum(), a)
        return h

    out = hvp(gk.kernel_sum, x, y, w)
    oracle = hvp(ref.kernel_sum, to64(x), to64(y), to64(w))
    naive = None if dtype == torch.float64 else hvp(ref.kernel_sum, x, y, w)
    # scale: the flow scale times |v| over the kernel's length scale, bounded below by the oracle's size
    scale = max(float(oracle.abs().max()), flow_scale(x, y, kernel, w) * float(v.abs().max()) / max(
        float((to64(x)[:, None] - to64(y)[None]).norm(dim=-1).max()), 1e-300))
    _not_flushed(scale, dtype)
    assert_accurate(out, oracle, naive, dtype, scale, "kernel_sum Hessian-vector product", ATOL)


@SETTINGS
@given(problems(smooth_only=True))
def test_smoothed_score(problem):
    x, y, kernel, dtype, bw = problem
    sigma = bw
    out = gk.smoothed_score(x, y, sigma)
    oracle = ref.smoothed_score(to64(x), to64(y), sigma)
    naive = None if dtype == torch.float64 else ref.eager_smoothed_score(x, y, sigma)
    if naive is not None and not torch.isfinite(naive).all():
        naive = torch.full_like(oracle, float("inf"))  # the eager formula fails outright here
    if not torch.isfinite(oracle).all():
        return
    # the terms the op sums: (sum_j p_ij y_j - x_i) / sigma^2 with both sets shifted by the mean of y
    x64, y64 = to64(x), to64(y)
    mu = y64.mean(0)
    p = torch.softmax(-ref.sqdist(x64, y64) / (2 * sigma ** 2), dim=1)
    scale = float((p @ (y64 - mu).abs() + (x64 - mu).abs()).max()) / sigma ** 2
    _not_flushed(scale, dtype)
    assert_accurate(out, oracle, naive, dtype, scale, "smoothed_score", ATOL)


# ----------------------------------------------------------------------------- the Triton engine

def _triton_pairwise():
    import os

    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0") and not torch.cuda.is_available():
        pytest.skip("the Triton engine needs CUDA or TRITON_INTERPRET=1")
    from gankernels import triton_pairwise

    return triton_pairwise, ("cpu" if not torch.cuda.is_available() else "cuda")


@pytest.mark.triton
@settings(max_examples=25, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(problems())
def test_triton_flow_and_mmd2_gradient(problem):
    """The Triton kernels on offset data: kernel_flow (x, y mode) and the biased mmd2 gradient (self mode).

    Near-duplicate pairs of distinct points are left out: the Triton engine does not recompute them from
    exact differences (a documented limit of triton_pairwise.py)."""
    te, device = _triton_pairwise()
    x, y, kernel, dtype, bw = problem
    assume(x.shape[0] <= 40 and y.shape[0] <= 40)
    z = torch.cat([to64(x), to64(y)])  # the points of the self-mode mmd2 pass; kflow pairs x with y
    gap = (z[:, None] - z[None]).norm(dim=-1)
    distinct = ~torch.eye(z.shape[0], dtype=torch.bool)  # every pair but a point with itself
    assume(not bool((distinct & (gap < 1e-2 * float(to64(y).std() + 1e-300))).any()))
    family, params = kernel.encode(x.shape[1])
    params = [float(p) for p in params]
    w = _weights(y.shape[0], dtype, 1)
    _not_flushed(flow_scale(x, y, kernel, w), dtype)
    out = te.kflow(x.to(device), y.to(device), torch.ones(x.shape[0], 1, dtype=dtype, device=device),
                   w[:, None].to(device), family, params).cpu()
    assert_accurate(out, ref.kernel_flow(to64(x), to64(y), kernel, to64(w)),
                    None if dtype == torch.float64 else ref.kernel_flow(x, y, kernel, w), dtype,
                    flow_scale(x, y, kernel, w), "triton kflow", ATOL)
    n, m = x.shape[0], y.shape[0]
    _not_flushed(mmd2_grad_scale(x, y, kernel), dtype)
    z = torch.cat([x, y])
    v = torch.cat([torch.full((n, 1), 1.0 / n, dtype=torch.float64), torch.full((m, 1), -1.0 / m, dtype=torch.float64)]).to(dtype)
    gz = te.ksum_backward(v.to(device), z.to(device), None, v.to(device), family, params,
                          [True, False, False])[0].cpu()
    oracle = _value_and_grads(lambda a, b: ref.mmd2(a, b, kernel), to64(x), to64(y))
    naive = (None,) * 3 if dtype == torch.float64 else _value_and_grads(lambda a, b: ref.mmd2(a, b, kernel), x, y)
    gscale = mmd2_grad_scale(x, y, kernel)
    assert_accurate(gz[:n], oracle[1], naive[1], dtype, gscale, "triton d mmd2 / dx", ATOL)
    assert_accurate(gz[n:], oracle[2], naive[2], dtype, gscale, "triton d mmd2 / dy", ATOL)
