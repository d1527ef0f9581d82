"""gankernels::kform: the scalar <g, ksum(x, y, w)> with its x / y gradients computed in the same pass.

* value and gradients against a dense float64 oracle (the Gram matrix from exact differences, torch.autograd),
  every family, self mode and not, every output mask (a gradient the mask left out comes from ksum_backward),
  offset data and a duplicated row (close pairs);
* double backward (the gradient penalty's path) against the oracle, and gradcheck / gradgradcheck;
* opcheck, torch.compile, clear errors for bad input;
* mmd2 under grad mode (which uses kform) gives the gradients of the two-pass formula.
"""
from __future__ import annotations

import os

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref
from gankernels.kernels import (Energy, Gaussian, InverseMultiquadric, Laplacian, Linear, Polyharmonic, Polynomial,
                                RationalQuadratic)
from conftest import dtype_id, kernel_id

ops = torch.ops.gankernels

FAMILIES = [Gaussian((0.7, 1.5, 3.0)), Polynomial(3), RationalQuadratic((0.5, 2.0), 1.1), Laplacian((0.8, 2.5)),
            Energy(), InverseMultiquadric(1.3, -0.7), Polyharmonic(3), Linear()]
DOT = (Polynomial, Linear)
MASKS = [(True, True), (True, False), (False, True), (False, False)]


def _enc(kernel, d):
    family, p = kernel.encode(d)
    return int(family), [float(v) for v in p]


def _inputs(n, m, d, dtype, seed, self_mode, offset=0.0, c=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) + offset
    y = None if self_mode else torch.randn(m, d, generator=g, dtype=torch.float64) * 0.8 + 0.3 + offset
    if n >= 4:
        x[3] = x[1]  # a duplicate: a close pair (z = 0)
    rows = n if self_mode else m
    gw = torch.randn(n, c, generator=g, dtype=torch.float64)
    w = torch.randn(rows, c, generator=g, dtype=torch.float64)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    return cast(x), cast(y), cast(gw), cast(w)


def _oracle(kernel, x, y, g, w):
    """(value, dx, dy) in float64 from the rounded inputs: the Gram matrix, then torch.autograd."""
    x64 = x.detach().double().clone().requires_grad_(True)
    y64 = None if y is None else y.detach().double().clone().requires_grad_(True)
    k = ref.gram(kernel, x64, x64 if y is None else y64)
    value = (g.double() * (k @ w.double())).sum()
    ins = [x64] if y is None else [x64, y64]
    grads = torch.autograd.grad(value, ins)
    return value.detach(), grads[0], (None if y is None else grads[1])


@pytest.mark.parametrize("kernel", FAMILIES, ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("self_mode", [True, False], ids=["self", "xy"])
@pytest.mark.parametrize("offset", [0.0, 100.0], ids=["centred", "offset"])
def test_value_and_gradients_match_the_oracle(kernel, dtype, self_mode, offset):
    if offset and isinstance(kernel, DOT):
        pytest.skip("far from the origin a dot kernel's values are not representable: a radial matter")
    n, m, d = 37, 29, 5
    x, y, g, w = _inputs(n, m, d, dtype, seed=n + d, self_mode=self_mode, offset=offset)
    v_ref, dx_ref, dy_ref = _oracle(kernel, x, y, g, w)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    scale_v = (g.double().abs() * (ref.gram(kernel, x.double(), x.double() if y is None else y.double()).abs()
                                   @ w.double().abs())).sum()
    for mask in MASKS:
        value, gx, gy = ops.kform(x, y, g, w, *_enc(kernel, d), list(mask))
        assert value.shape == () and value.dtype == dtype
        assert abs(float(value) - float(v_ref)) <= tol * float(scale_v) + 1e-12
        if mask[0]:
            err = (gx.double() - dx_ref).abs().max()
            assert err <= tol * (dx_ref.abs().max() + 1) * 10, (mask, err)
        else:
            assert not gx.any()
        if self_mode:
            assert gy.shape == (0, d)
        elif mask[1]:
            err = (gy.double() - dy_ref).abs().max()
            assert err <= tol * (dy_ref.abs().max() + 1) * 10, (mask, err)


@pytest.mark.parametrize("kernel", [Gaussian((1.0, 2.0)), Energy(), Polynomial(3)], ids=kernel_id)
@pytest.mark.parametrize("self_mode", [True, False], ids=["self", "xy"])
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("1" if b else "0" for b in m))
def test_autograd_first_and_second_order(kernel, self_mode, mask):
    """Every input differentiated (x, y, g, w), whatever the mask computed in the forward; then the gradient
    of the squared gradient norm (double backward), both against ksum's two-pass path."""
    x, y, g, w = (None if t is None else t.requires_grad_(True)
                  for t in _inputs(9, 7, 3, torch.float64, seed=11, self_mode=self_mode))
    fam = _enc(kernel, 3)
    ins = [t for t in (x, y, g, w) if t is not None]
    fused = ops.kform(x, y, g, w, *fam, list(mask))[0]
    twopass = (g * ops.ksum(x, y, w, *fam)).sum()
    a = torch.autograd.grad(fused, ins, create_graph=True)
    b = torch.autograd.grad(twopass, ins, create_graph=True)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
    a2 = torch.autograd.grad(sum((u * u).sum() for u in a), ins, allow_unused=True)
    b2 = torch.autograd.grad(sum((u * u).sum() for u in b), ins, allow_unused=True)
    for u, v in zip(a2, b2):
        assert (u is None) == (v is None)
        if u is not None:
            torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("self_mode", [True, False], ids=["self", "xy"])
def test_gradcheck(self_mode):
    x, y, g, w = (None if t is None else t.requires_grad_(True)
                  for t in _inputs(6, 5, 2, torch.float64, seed=5, self_mode=self_mode))
    x.data[3] += 0.3  # no duplicate: finite differences across a kink are not derivatives
    fam = _enc(Gaussian((0.8, 1.7)), 2)
    f = lambda *t: ops.kform(*t, *fam, [True, True])[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, y, g, w))
    assert torch.autograd.gradgradcheck(f, (x, y, g, w))


OPCHECK_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")


@pytest.mark.parametrize("kernel", [Gaussian((1.0, 2.0)), Energy(), Polynomial(3)], ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
@pytest.mark.parametrize("self_mode", [True, False], ids=["self", "xy"])
def test_opcheck(kernel, dtype, self_mode):
    x, y, g, w = (None if t is None else t.requires_grad_(True)
                  for t in _inputs(6, 4, 3, dtype, seed=3, self_mode=self_mode))
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.library.opcheck(ops.kform.default, (x, y, g, w, *_enc(kernel, 3), [True, not self_mode]),
                          test_utils=list(OPCHECK_UTILS), **tol)


def test_schema():
    assert str(ops.kform.default._schema) == (
        "gankernels::kform(Tensor x, Tensor? y, Tensor g, Tensor w, int family, float[] params, bool[2] output_mask)"
        " -> (Tensor, Tensor, Tensor)")


def test_compiles_with_its_gradient():
    x, y, g, w = _inputs(40, 30, 6, torch.float32, seed=5, self_mode=False)
    fam = _enc(Gaussian((1.0, 2.0)), 6)

    def loss(a, b):
        return ops.kform(a, b, g, w, *fam, [True, True])[0]

    xa, ya = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    xb, yb = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    got = torch.compile(loss, backend="aot_eager", fullgraph=True)(xa, ya)
    want = loss(xb, yb)
    got.backward()
    want.backward()
    assert torch.equal(got, want)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(ya.grad, yb.grad)


G = [1.0]


@pytest.mark.parametrize("what,call,exc,name", [
    ("g rows", lambda x, g, w: ops.kform(x, None, g[:3], w, 0, G, [True, False]), ValueError, "g"),
    ("g columns", lambda x, g, w: ops.kform(x, None, g[:, :1], w, 0, G, [True, False]), ValueError, "g"),
    ("g int", lambda x, g, w: ops.kform(x, None, g.long(), w, 0, G, [True, False]), TypeError, "g"),
    ("w rows", lambda x, g, w: ops.kform(x, None, g, w[:3], 0, G, [True, False]), ValueError, "w"),
    ("x int", lambda x, g, w: ops.kform(x.long(), None, g, w, 0, G, [True, False]), TypeError, "x"),
    ("unknown family", lambda x, g, w: ops.kform(x, None, g, w, 42, G, [True, False]), ValueError, "family"),
    ("bad sigma", lambda x, g, w: ops.kform(x, None, g, w, 0, [-1.0], [True, False]), ValueError, "sigma"),
])
def test_bad_arguments_raise_naming_the_argument(what, call, exc, name):
    x, _, g, w = _inputs(6, 6, 3, torch.float64, seed=1, self_mode=True)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        call(x, g, w)


def test_nan_in_nan_out():
    x, y, g, w = _inputs(6, 5, 3, torch.float64, seed=2, self_mode=False)
    x[2, 1] = float("nan")
    value, gx, gy = ops.kform(x, y, g, w, *_enc(Gaussian(1.0), 3), [True, True])
    assert torch.isnan(value) and torch.isnan(gx[2]).all() and torch.isnan(gy).any()


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("which", ["both", "x", "y"])
def test_mmd2_gradients_are_the_two_pass_gradients(estimator, which):
    """mmd2 (kform forward) against the same estimator built from ksum, whose gradient is a second pass."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(33, 4, generator=g, dtype=torch.float64)
    y = torch.randn(21, 4, generator=g, dtype=torch.float64) + 0.5
    x.requires_grad_(which in ("both", "x"))
    y.requires_grad_(which in ("both", "y"))
    kernel = gk.Gaussian((0.5, 1.0, 2.0))
    fused = gk.mmd2(x, y, kernel, estimator)
    dense = ref.mmd2(x, y, kernel, estimator)
    torch.testing.assert_close(fused, dense, rtol=1e-10, atol=1e-12)
    ins = [t for t in (x, y) if t.requires_grad]
    for u, v in zip(torch.autograd.grad(fused, ins), torch.autograd.grad(dense, ins)):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-12)


@pytest.mark.triton
@pytest.mark.parametrize("self_mode", [True, False], ids=["self", "xy"])
@pytest.mark.parametrize("mask", [(True, True), (False, True)], ids=["11", "01"])
def test_triton_launcher_matches_the_cpu_op(self_mode, mask):
    """The CUDA kernel (Triton, run here by the interpreter on CPU tensors) against the C++ op."""
    pytest.importorskip("triton")
    interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if not interpreted and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    from gankernels import triton_pairwise as te
    device = "cpu" if interpreted else "cuda"
    x, y, g, w = _inputs(19, 13, 5, torch.float64, seed=9, self_mode=self_mode)
    fam = _enc(Gaussian((0.7, 2.0)), 5)
    want = ops.kform(x, y, g, w, *fam, list(mask))
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    got = te.kform(to(x), to(y), to(g), to(w), *fam, list(mask))
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, rtol=1e-10, atol=1e-12)
