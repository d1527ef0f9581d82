"""Input validation (errors name the offending argument), NaN propagation, determinism.

docs/MATH.md §1: kernel parameters are validated at construction (ValueError naming
the parameter).  docs/MATH.md §2: x [N, D], y [M, D] of one floating dtype and
device; weights [M] or [M, C]; unbiased needs N, M >= 2.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

import gankernels as gk
from gankernels.kernels import (
    Energy, Gaussian, InverseMultiquadric, Laplacian, Linear, Polyharmonic, Polynomial, RationalQuadratic,
)
from conftest import KERNELS, kernel_id, make_input

F64 = torch.float64


def _x(n=4, d=3, dtype=F64, seed=0):
    return make_input(n, d, dtype, seed=seed)


def _names(arg):
    """Regex: the argument name as a whole word (e.g. 'y', not the 'y' in 'array')."""
    return re.compile(rf"(?<![A-Za-z_]){re.escape(arg)}(?![A-Za-z_])")


def _raises(exc, arg, fn, *args, **kwargs):
    _raises_any(exc, (arg,), fn, *args, **kwargs)


def _raises_any(exc, names, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert any(_names(a).search(msg) for a in names), f"error message names none of {names}: {msg!r}"


# The public functions as (name, callable(x, y), names an error may point at) for the checks
# that apply to all of them.  witness(z, x, y) gets z = the first two rows of x, so an
# error about z is as good as one about x there.
def _z(x):
    return x[:2] if x.dim() >= 1 and x.shape[0] >= 2 else x


def _calls(kernel=Gaussian()):
    return [
        ("kernel_sum", lambda x, y: gk.kernel_sum(x, y, kernel), ()),
        ("kernel_flow", lambda x, y: gk.kernel_flow(x, y, kernel), ()),
        ("mmd2", lambda x, y: gk.mmd2(x, y, kernel), ()),
        ("mmd2_unbiased", lambda x, y: gk.mmd2(x, y, kernel, estimator="unbiased"), ()),
        ("witness", lambda x, y: gk.witness(_z(x), x, y, kernel), ("z",)),
        ("MMDLoss", lambda x, y: gk.nn.MMDLoss(kernel)(x, y), ()),
    ]


CALLS = _calls()
calls = pytest.mark.parametrize("name,fn,alt", CALLS, ids=[c[0] for c in CALLS])


def _names_any(msg, *args):
    return any(_names(a).search(msg) for a in args)


# ----------------------------------------------------------------------------- shapes and dtypes

@calls
def test_mismatched_dim(name, fn, alt):
    with pytest.raises(ValueError) as info:
        fn(_x(4, 3), _x(5, 2))
    msg = str(info.value)
    assert _names_any(msg, "x", "y", *alt), msg


def test_witness_z_dim():
    _raises(ValueError, "z", gk.witness, _x(2, 2), _x(4, 3), _x(5, 3), Gaussian())


@calls
def test_mismatched_dtype(name, fn, alt):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(_x(4, 3), _x(5, 3, dtype=torch.float32))
    msg = str(info.value)
    assert _names_any(msg, "x", "y", *alt), msg


@calls
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool], ids=str)
def test_integer_tensors(name, fn, alt, dtype):
    xi = torch.ones(4, 3, dtype=dtype)
    yi = torch.zeros(5, 3, dtype=dtype)
    with pytest.raises((TypeError, ValueError)) as info:
        fn(xi, yi)
    msg = str(info.value)
    assert _names_any(msg, "x", "y", *alt), msg


def test_complex_tensors():
    xc = torch.ones(4, 3, dtype=torch.complex64)
    with pytest.raises((TypeError, ValueError)):
        gk.kernel_sum(xc, xc, Gaussian())


@calls
@pytest.mark.parametrize("bad", ["3d", "1d", "0d"])
def test_not_2d(name, fn, alt, bad):
    x = {"3d": torch.randn(2, 3, 4, dtype=F64), "1d": torch.randn(3, dtype=F64), "0d": torch.tensor(1.0, dtype=F64)}[bad]
    _raises_any(ValueError, ("x",) + alt, fn, x, _x(5, 4 if bad == "3d" else 3))
    if bad == "3d":
        _raises_any(ValueError, ("y",), fn, _x(5, 4), x)


@calls
def test_empty_x(name, fn, alt):
    _raises_any(ValueError, ("x",) + alt, fn, torch.empty(0, 3, dtype=F64), _x(5, 3))


@calls
def test_empty_y(name, fn, alt):
    _raises(ValueError, "y", fn, _x(4, 3), torch.empty(0, 3, dtype=F64))


@pytest.mark.parametrize("fn", [gk.kernel_sum, gk.kernel_flow], ids=["kernel_sum", "kernel_flow"])
def test_zero_dim_features(fn):
    with pytest.raises(ValueError):
        fn(torch.empty(4, 0, dtype=F64), torch.empty(5, 0, dtype=F64), Gaussian())


@pytest.mark.parametrize("shape", [(6,), (4,), (5, 2, 1), (4, 2), ()], ids=str)
def test_kernel_sum_bad_weights_shape(shape):
    x, y = _x(4, 3), _x(5, 3, seed=1)
    _raises(ValueError, "weights", gk.kernel_sum, x, y, Gaussian(), torch.ones(shape, dtype=F64))


@pytest.mark.parametrize("shape", [(6,), (4,), (5, 2), ()], ids=str)
def test_kernel_flow_bad_weights_shape(shape):
    x, y = _x(4, 3), _x(5, 3, seed=1)
    _raises(ValueError, "weights", gk.kernel_flow, x, y, Gaussian(), torch.ones(shape, dtype=F64))


@pytest.mark.parametrize("fn", [gk.kernel_sum, gk.kernel_flow], ids=["kernel_sum", "kernel_flow"])
def test_weights_bad_dtype(fn):
    """Integer weights are an error naming weights; weights of another floating dtype are
    either an error naming weights or cast to the points' dtype (the contract only fixes x and y)."""
    x, y = _x(4, 3), _x(5, 3, seed=1)
    with pytest.raises((TypeError, ValueError)) as info:
        fn(x, y, Gaussian(), torch.ones(5, dtype=torch.int64))
    assert _names("weights").search(str(info.value)), str(info.value)
    w32 = torch.linspace(-1, 1, 5, dtype=torch.float32)
    try:
        out = fn(x, y, Gaussian(), w32)
    except (TypeError, ValueError) as e:
        assert _names("weights").search(str(e)), str(e)
    else:
        assert out.dtype == F64
        torch.testing.assert_close(out, fn(x, y, Gaussian(), w32.double()))


@pytest.mark.parametrize("n,m", [(1, 5), (5, 1), (1, 1)])
def test_unbiased_needs_two_samples(n, m):
    x, y = _x(n, 3), _x(m, 3, seed=1)
    with pytest.raises(ValueError) as info:
        gk.mmd2(x, y, Gaussian(), estimator="unbiased")
    msg = str(info.value)
    assert ("x" if n < 2 else "y") in msg or "N" in msg or "M" in msg, msg
    with pytest.raises(ValueError):
        gk.nn.MMDLoss(Gaussian(), estimator="unbiased")(x, y)
    gk.mmd2(x, y, Gaussian())  # biased is fine with one sample


def test_bad_estimator():
    _raises(ValueError, "estimator", gk.mmd2, _x(4), _x(5, seed=1), Gaussian(), estimator="unbiassed")
    with pytest.raises(ValueError):
        gk.nn.MMDLoss(Gaussian(), estimator="mean")


@pytest.mark.parametrize("bad", ["gaussian", 1.0, None, torch.nn.Identity()], ids=repr)
def test_bad_kernel(bad):
    _raises(TypeError, "kernel", gk.kernel_sum, _x(4), _x(5, seed=1), bad)
    _raises(TypeError, "kernel", gk.mmd2, _x(4), _x(5, seed=1), bad)


def test_non_tensor_inputs():
    with pytest.raises(TypeError):
        gk.kernel_sum([[1.0, 2.0]], _x(5, 2), Gaussian())


# ----------------------------------------------------------------------------- kernel constructors

@pytest.mark.parametrize("make,param", [
    (lambda: Gaussian(0.0), "sigmas"),
    (lambda: Gaussian(-1.0), "sigmas"),
    (lambda: Gaussian((1.0, 0.0)), "sigmas"),
    (lambda: Gaussian(float("nan")), "sigmas"),
    (lambda: Gaussian(float("inf")), "sigmas"),
    (lambda: Gaussian(()), "sigmas"),
    (lambda: RationalQuadratic(alphas=0.0), "alphas"),
    (lambda: RationalQuadratic(alphas=(1.0, float("inf"))), "alphas"),
    (lambda: RationalQuadratic(lengthscale=-1.0), "lengthscale"),
    (lambda: RationalQuadratic(lengthscale=float("nan")), "lengthscale"),
    (lambda: InverseMultiquadric(scales=0.0), "scales"),
    (lambda: InverseMultiquadric(beta=0.0), "beta"),
    (lambda: InverseMultiquadric(beta=0.5), "beta"),
    (lambda: InverseMultiquadric(beta=float("-inf")), "beta"),
    (lambda: Laplacian(0.0), "sigmas"),
    (lambda: Laplacian((1.0, -2.0)), "sigmas"),
    (lambda: Polyharmonic(0), "eps"),
    (lambda: Polyharmonic(-1), "eps"),
    (lambda: Polyharmonic(1, eps=-1.0), "eps"),
    (lambda: Polyharmonic(1, eps=float("nan")), "eps"),
    (lambda: Polynomial(0), "degree"),
    (lambda: Polynomial(-2), "degree"),
    (lambda: Polynomial(3, gamma=0.0), "gamma"),
    (lambda: Polynomial(3, gamma=-1.0), "gamma"),
    (lambda: Polynomial(3, gamma=float("inf")), "gamma"),
    (lambda: Polynomial(3, coef0=float("nan")), "coef0"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_kernel_parameters_validated(make, param):
    with pytest.raises(ValueError) as info:
        make()
    assert param in str(info.value), str(info.value)


@pytest.mark.parametrize("make,param", [
    (lambda: Gaussian("1.0"), "sigmas"),
    (lambda: Polyharmonic(1.5), "k"),
    (lambda: Polynomial(2.5), "degree"),
    (lambda: Polynomial(True), "degree"),
    (lambda: Laplacian(object()), "sigmas"),
])
def test_kernel_parameter_types(make, param):
    with pytest.raises(TypeError) as info:
        make()
    assert param in str(info.value), str(info.value)


@pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
def test_kernels_are_values(kernel):
    """Immutable, hashable, readable repr (docs/MATH.md §1)."""
    assert hash(kernel) == hash(dataclasses.replace(kernel))
    assert kernel == dataclasses.replace(kernel)
    assert type(kernel).__name__ in repr(kernel)
    assert eval(repr(kernel), {type(kernel).__name__: type(kernel)}) == kernel
    fields = dataclasses.fields(kernel)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(kernel, fields[0].name, 1.0)
    assert Gaussian([1, 2]) == Gaussian((1.0, 2.0))
    assert len({Gaussian(1.0), Gaussian(1), Gaussian((1.0,))}) == 1


# ----------------------------------------------------------------------------- NaN propagation

@pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
def test_nan_in_x_propagates(kernel):
    x, y = _x(6, 3), _x(5, 3, seed=1)
    x[2, 1] = float("nan")
    out = gk.kernel_sum(x, y, kernel)
    assert torch.isnan(out[2]), out
    assert torch.isfinite(out[torch.arange(6) != 2]).all(), out
    flow = gk.kernel_flow(x, y, kernel)
    if not isinstance(kernel, Linear):  # the Linear kernel's flow, sum_j w_j y_j, does not depend on x
        assert torch.isnan(flow[2]).all(), flow
    assert torch.isfinite(flow[torch.arange(6) != 2]).all(), flow
    assert torch.isnan(gk.mmd2(x, y, kernel))
    assert torch.isnan(gk.mmd2(x, y, kernel, estimator="unbiased"))
    wit = gk.witness(x, y, 0.5 * y, kernel)
    assert torch.isnan(wit[2]) and torch.isfinite(wit[torch.arange(6) != 2]).all(), wit


@pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
def test_nan_in_y_propagates(kernel):
    x, y = _x(6, 3), _x(5, 3, seed=1)
    y[4, 0] = float("nan")
    assert torch.isnan(gk.kernel_sum(x, y, kernel)).all()
    flow = gk.kernel_flow(x, y, kernel)
    # Linear: flow_i = sum_j w_j y_j, only the coordinate holding the NaN is NaN
    assert torch.isnan(flow[:, 0] if isinstance(kernel, Linear) else flow).all(), flow
    assert torch.isnan(gk.mmd2(x, y, kernel))
    assert torch.isnan(gk.witness(x, x, y, kernel)).all()


@pytest.mark.parametrize("kernel", [Gaussian((1, 2)), Energy()], ids=kernel_id)
def test_nan_in_weights_propagates(kernel):
    x, y = _x(6, 3), _x(5, 3, seed=1)
    w = torch.ones(5, dtype=F64)
    w[3] = float("nan")
    assert torch.isnan(gk.kernel_sum(x, y, kernel, w)).all()
    assert torch.isnan(gk.kernel_flow(x, y, kernel, w)).all()


@pytest.mark.parametrize("kernel", [Gaussian((1, 2, 4, 8, 16)), Energy(), Polynomial(3)], ids=kernel_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_inf_input_gives_no_crash(kernel, dtype):
    x, y = _x(6, 3, dtype), _x(5, 3, dtype, seed=1)
    x[0, 0] = float("inf")
    out = gk.kernel_sum(x, y, kernel)  # value is inf / nan / 0 depending on the kernel; no crash, no garbage
    assert torch.isfinite(out[1:]).all()


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_deterministic(dtype):
    """Same inputs twice -> bitwise equal outputs and gradients (no run-to-run reduction order)."""
    kernel = Gaussian((1, 2, 4, 8, 16))
    x = make_input(1023, 17, dtype, seed=0, scale=0.3)
    y = make_input(777, 17, dtype, seed=1, scale=0.3, shift=0.1)
    w = make_input(777, 2, dtype, seed=2)

    def run():
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        m = gk.mmd2(xr, yr, kernel, estimator="unbiased")
        gx, gy = torch.autograd.grad(m, (xr, yr))
        return [m, gx, gy, gk.kernel_sum(x, y, kernel, w), gk.kernel_flow(x, y, Energy()), gk.witness(y, x, y, kernel)]

    a, b = run(), run()
    for i, (u, v) in enumerate(zip(a, b)):
        assert torch.equal(u, v), f"output {i} differs between two identical calls"


def test_inputs_not_modified():
    x, y = _x(6, 3), _x(5, 3, seed=1)
    w = torch.randn(5, 2, dtype=F64)
    x0, y0, w0 = x.clone(), y.clone(), w.clone()
    gk.kernel_sum(x, y, Gaussian(), w)
    gk.kernel_flow(x, y, Energy(), w[:, 0])
    gk.mmd2(x, y, Laplacian(), estimator="unbiased")
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(w, w0)


@pytest.mark.parametrize("make,expect", [
    pytest.param(lambda: Gaussian(np.float32(1.5)), Gaussian(1.5), id="np.float32"),
    pytest.param(lambda: Gaussian(np.float64(2.0)), Gaussian(2.0), id="np.float64"),
    pytest.param(lambda: Gaussian(np.int32(2)), Gaussian(2.0), id="np.int32"),
    pytest.param(lambda: Gaussian(torch.tensor(1.5)), Gaussian(1.5), id="0-dim-tensor"),
    pytest.param(lambda: Gaussian(torch.tensor([1.5])), Gaussian(1.5), id="1-element-tensor"),
    pytest.param(lambda: Gaussian(torch.tensor(2, dtype=torch.int64)), Gaussian(2.0), id="int-tensor"),
    pytest.param(lambda: Gaussian(torch.tensor([1.0, 2.0])), Gaussian((1.0, 2.0)), id="tensor-mixture"),
    pytest.param(lambda: Gaussian(np.array([1.0, 2.0], dtype=np.float32)), Gaussian((1.0, 2.0)),
                 id="np.float32-array-mixture"),
    pytest.param(lambda: Laplacian([np.float32(0.5), torch.tensor(2.0)]), Laplacian((0.5, 2.0)), id="mixed-list"),
    pytest.param(lambda: RationalQuadratic(alphas=np.float32(0.5), lengthscale=torch.tensor(2.0)),
                 RationalQuadratic(alphas=0.5, lengthscale=2.0), id="rq"),
    pytest.param(lambda: InverseMultiquadric(scales=np.float32(0.5), beta=np.float32(-1.5)),
                 InverseMultiquadric(0.5, -1.5), id="imq"),
    pytest.param(lambda: Polyharmonic(np.int64(3), eps=np.float32(0.25)), Polyharmonic(3, 0.25), id="polyharmonic"),
    pytest.param(lambda: Polyharmonic(torch.tensor(2)), Polyharmonic(2), id="polyharmonic-tensor-k"),
    pytest.param(lambda: Polynomial(np.float64(3.0), gamma=torch.tensor(0.5), coef0=np.float32(1.0)),
                 Polynomial(3, 0.5, 1.0), id="polynomial"),
])
def test_kernel_parameters_accept_real_scalars(make, expect):
    """NumPy scalars and one-element real tensors are real numbers too; they are stored as Python numbers."""
    kernel = make()
    assert kernel == expect and hash(kernel) == hash(expect) and repr(kernel) == repr(expect)


@pytest.mark.parametrize("make,param", [
    pytest.param(lambda: Gaussian(np.bool_(True)), "sigmas", id="np.bool_"),
    pytest.param(lambda: Gaussian(torch.tensor(True)), "sigmas", id="bool-tensor"),
    pytest.param(lambda: Gaussian(torch.tensor(1 + 1j)), "sigmas", id="complex-tensor"),
    pytest.param(lambda: Gaussian(torch.ones(2, 2)), "sigmas", id="2-D-tensor"),
    pytest.param(lambda: Gaussian(torch.tensor(1.0, device="meta")), "sigmas", id="meta-tensor"),
    pytest.param(lambda: Polyharmonic(np.float32(1.5)), "k", id="fractional-k"),
    pytest.param(lambda: Polynomial(torch.tensor(2.5)), "degree", id="fractional-degree"),
])
def test_kernel_parameters_refuse_other_scalars(make, param):
    with pytest.raises(TypeError) as info:
        make()
    assert param in str(info.value), str(info.value)


@pytest.mark.parametrize("make,param", [
    pytest.param(lambda: Polyharmonic(2 ** 24 + 1), "k", id="k-beyond-2^24"),
    pytest.param(lambda: Polynomial(2 ** 53 + 1), "degree", id="degree-beyond-2^53"),
    pytest.param(lambda: Gaussian(torch.tensor(float("nan"))), "sigmas", id="nan-tensor"),
    pytest.param(lambda: Gaussian(np.float32(-1.0)), "sigmas", id="negative-np.float32"),
])
def test_kernel_parameter_ranges_for_other_scalars(make, param):
    with pytest.raises(ValueError) as info:
        make()
    assert param in str(info.value), str(info.value)
