"""gankernels::ksum_and_square: ksum in self mode and the sums of the squared kernel values, one pass.

* against the dense float64 oracle (row sums of K w and of (K o K) w, diagonal included, as ksum), every
  family, N = 1, odd sizes across tile edges, D on both sides of the small-D path, offset data (|mean| 1e3,
  duplicated rows: close pairs), float32 and float64; its first output is ksum's, bitwise;
* opcheck, forward-only autograd, clear errors for bad input;
* the variance / kid: the fused path (no autograd) against the two-call path (autograd on).
"""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from gankernels import variance as V
from gankernels.kernels import (Energy, Gaussian, InverseMultiquadric, Laplacian, Linear, Polyharmonic, Polynomial,
                                RationalQuadratic)
from conftest import dtype_id, kernel_id

ops = torch.ops.gankernels

FAMILIES = [Gaussian((0.7, 1.5, 3.0)), Polynomial(3), Polynomial(2, 0.5, -0.3), RationalQuadratic(1.5, 0.8),
            RationalQuadratic((0.5, 2.0), 1.1), Laplacian((0.8, 2.5)), Energy(), InverseMultiquadric(1.3, -0.7),
            Polyharmonic(3), Linear()]
DOT = (Polynomial, Linear)


def _points(n, d, dtype, seed, offset=0.0, duplicates=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * (1.5 / d ** 0.5) + offset
    if duplicates and n >= 6:
        x[5] = x[2]  # a duplicate pair (z = 0: a close pair)
        x[n - 1] = x[0] + 1e-4 / d ** 0.5  # a near-duplicate across tiles
    w = torch.randn(n, 2, generator=g, dtype=torch.float64)
    w[:, 1] = (torch.arange(n) % 3 == 0).double()  # an indicator column, as the variance uses
    return x.to(dtype), w.to(dtype)


def _oracle(kernel, x, w):
    """(K w, (K o K) w, |K| |w|, K^2 |w|) in float64 from the (rounded) inputs, exact differences."""
    x, w = x.double(), w.double()
    k = ref.gram(kernel, x, x)
    return k @ w, (k * k) @ w, k.abs() @ w.abs(), (k * k) @ w.abs()


def _enc(kernel, d):
    family, p = kernel.encode(d)
    return int(family), [float(v) for v in p]


@pytest.mark.parametrize("kernel", FAMILIES, ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("n,d", [(1, 3), (7, 3), (130, 5), (257, 20)])
@pytest.mark.parametrize("offset", [0.0, 1e3], ids=["centred", "offset"])
def test_matches_the_dense_oracle(kernel, dtype, n, d, offset):
    if offset and isinstance(kernel, DOT):
        pytest.skip("translation invariance (the common-mean shift) is a radial kernels' matter")
    x, w = _points(n, d, dtype, seed=n + d)
    x = x + torch.tensor(offset, dtype=dtype)
    s, q = ops.ksum_and_square(x, w, *_enc(kernel, d))
    assert s.dtype == q.dtype == dtype and s.shape == q.shape == (n, 2)
    want_s, want_q, scale_s, scale_q = _oracle(kernel, x, w)
    # relative to the sums of absolute terms; offset data as accurate as centred (common-mean shift, close pairs)
    rel = 1e-13 if dtype == torch.float64 else 2e-6
    assert ((s.double() - want_s).abs() <= rel * scale_s + 1e-300).all(), (s.double() - want_s).abs().max()
    assert ((q.double() - want_q).abs() <= rel * scale_q + 1e-300).all(), (q.double() - want_q).abs().max()
    # the first output is ksum's, bitwise (same engine job, same tiles and order)
    assert torch.equal(s, ops.ksum(x, None, w, *_enc(kernel, d)))


@pytest.mark.parametrize("kernel", [Gaussian(0.5), Laplacian(1.0), Energy()], ids=kernel_id)
def test_duplicates_far_from_the_origin_get_the_exact_value(kernel):
    """Close pairs are recomputed from exact differences: a duplicate contributes phi(0) exactly."""
    base = torch.randn(1, 16, dtype=torch.float32) * 0.01 + 1e3
    x = base.repeat(9, 1)
    w = torch.ones(9, 1)
    s, q = ops.ksum_and_square(x, w, *_enc(kernel, 16))
    k0 = kernel.at_zero()
    assert torch.equal(s, torch.full_like(s, 9 * k0))
    assert torch.equal(q, torch.full_like(q, 9 * k0 * k0))


def test_deterministic():
    x, w = _points(300, 40, torch.float32, seed=1)
    a = ops.ksum_and_square(x, w, *_enc(Gaussian((1.0, 2.0)), 40))
    b = ops.ksum_and_square(x, w, *_enc(Gaussian((1.0, 2.0)), 40))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ----------------------------------------------------------------------------- op registration

OPCHECK_UTILS = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.mark.parametrize("kernel", [Gaussian((1.0, 2.0)), Energy(), Polynomial(3)], ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
def test_opcheck(kernel, dtype):
    x, w = _points(6, 3, dtype, seed=3, duplicates=False)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.library.opcheck(ops.ksum_and_square.default, (x, w, *_enc(kernel, 3)), test_utils=list(OPCHECK_UTILS),
                          **tol)
    # forward-only: the registered autograd formula refuses (test_autograd_registration needs grad inputs)
    xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    torch.library.opcheck(ops.ksum_and_square.default, (xg, wg, *_enc(kernel, 3)),
                          test_utils=["test_autograd_registration"])


def test_schema_and_forward_only():
    assert str(ops.ksum_and_square.default._schema) == (
        "gankernels::ksum_and_square(Tensor x, Tensor w, int family, float[] params) -> (Tensor, Tensor)")
    x, w = _points(5, 3, torch.float64, seed=4, duplicates=False)
    s, q = ops.ksum_and_square(x.requires_grad_(True), w, *_enc(Gaussian(1.0), 3))
    with pytest.raises(NotImplementedError, match="forward-only"):
        (s.sum() + q.sum()).backward()


def test_compiles():
    x, w = _points(40, 6, torch.float32, seed=5)
    fam = _enc(Gaussian((1.0, 2.0)), 6)
    f = torch.compile(lambda a, b: ops.ksum_and_square(a, b, *fam), backend="aot_eager", fullgraph=True)
    got, want = f(x, w), ops.ksum_and_square(x, w, *fam)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


G = [1.0]


@pytest.mark.parametrize("what,call,exc,name", [
    ("x 1-D", lambda x, w: ops.ksum_and_square(x[0], w, 0, G), ValueError, "x"),
    ("x 3-D", lambda x, w: ops.ksum_and_square(x[None], w, 0, G), ValueError, "x"),
    ("x no rows", lambda x, w: ops.ksum_and_square(x[:0], w[:0], 0, G), ValueError, "x"),
    ("x no columns", lambda x, w: ops.ksum_and_square(x[:, :0], w, 0, G), ValueError, "x"),
    ("x int", lambda x, w: ops.ksum_and_square(x.long(), w, 0, G), TypeError, "x"),
    ("w rows", lambda x, w: ops.ksum_and_square(x, w[:3], 0, G), ValueError, "w"),
    ("w 1-D", lambda x, w: ops.ksum_and_square(x, w[:, 0], 0, G), ValueError, "w"),
    ("w int", lambda x, w: ops.ksum_and_square(x, w.long(), 0, G), TypeError, "w"),
    ("w meta", lambda x, w: ops.ksum_and_square(x, w.to("meta"), 0, G), ValueError, "device"),
    ("unknown family", lambda x, w: ops.ksum_and_square(x, w, 42, G), ValueError, "family"),
    ("params count", lambda x, w: ops.ksum_and_square(x, w, 0, []), ValueError, "param"),
    ("nan param", lambda x, w: ops.ksum_and_square(x, w, 0, [float("nan")]), ValueError, "param"),
])
def test_bad_input_is_refused_clearly(what, call, exc, name):
    x, w = _points(5, 3, torch.float32, seed=6, duplicates=False)
    with pytest.raises(exc, match=name):
        call(x, w)


# ----------------------------------------------------------------------------- the variance and kid

def _pair(n, m, d, seed, dtype=torch.float64, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    y = 1.2 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3 + offset
    return x.to(dtype), y.to(dtype)


@pytest.mark.parametrize("kernel", [Gaussian((0.7, 1.5, 3.0)), Polynomial(3), RationalQuadratic(1.5, 0.8),
                                    Laplacian((0.8, 2.5)), Energy(), InverseMultiquadric(1.3, -0.7), Linear()],
                         ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("n,m,offset", [(23, 23, 0.0), (17, 140, 0.0), (31, 29, 1e3)])
def test_variance_fused_equals_two_call_path(kernel, dtype, n, m, offset):
    if offset and isinstance(kernel, DOT):
        pytest.skip("offset data: radial kernels")
    x, y = _pair(n, m, 4, seed=n + m, dtype=dtype, offset=offset)
    fused = V._moments(x, y, kernel, fused=True)
    two = V._moments(x, y, kernel, fused=False)
    for name, a, b in zip(("rx", "cx", "cy", "ry", "qxx", "qyy", "qxy"), fused, two):
        if name[0] == "q":
            rel = 1e-12 if dtype == torch.float64 else 2e-5
            assert abs(float(a) - float(b)) <= rel * abs(float(b)) + 1e-300, (name, float(a), float(b))
        else:
            assert torch.equal(a, b), name  # the same ksum job
    # the public function picks the fused path without autograd and the two calls with it
    got = gk.mmd2_and_variance(x, y, kernel)
    xg = x.clone().requires_grad_(True)
    want = gk.mmd2_and_variance(xg, y, kernel)
    assert torch.equal(got[0], want[0].detach())
    rtol = 1e-9 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(got[1], want[1].detach(), rtol=rtol, atol=1e-12)
    with torch.no_grad():
        nograd = gk.mmd2_and_variance(xg, y, kernel)
    assert torch.equal(nograd[1], got[1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
def test_kid_fused_equals_two_call_path(dtype):
    g = torch.Generator().manual_seed(11)
    real = torch.randn(300, 64, generator=g, dtype=torch.float64).abs().to(dtype)
    fake = (torch.randn(250, 64, generator=g, dtype=torch.float64) + 0.1).abs().to(dtype)
    value, std = gk.kid(real, fake)
    mmd2, var = V.variance_from_moments(*V._moments(real, fake, Polynomial(3), fused=False), "complete")
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(value, mmd2.to(dtype), rtol=rtol, atol=0)
    torch.testing.assert_close(std, var.clamp_min(0).sqrt().to(dtype), rtol=rtol, atol=0)


def test_unsupported_kernels_are_refused_on_both_paths():
    x, y = _pair(8, 8, 2, seed=1)
    for kernel in (Polyharmonic(3), RationalQuadratic((0.5, 2.0))):
        with pytest.raises(NotImplementedError):
            gk.mmd2_and_variance(x, y, kernel)
        with pytest.raises(NotImplementedError):
            gk.mmd2_and_variance(x.requires_grad_(True), y, kernel)
        x = x.detach()
