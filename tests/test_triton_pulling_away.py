"""Triton kernels of the pulling-away term (gankernels/triton_pulling_away.py) against the float64 oracle.

Run on CPU with the interpreter (small shapes; several row, column and D blocks of 16):
    TRITON_INTERPRET=1 python -m pytest -q -m triton tests/test_triton_pulling_away.py

The launchers are called directly (the ops' CUDA kernels), on CPU tensors under the
interpreter or on CUDA tensors.  Oracle and tolerances are those of test_pulling_away.py
(reference.pulling_away in float64 on the dtype-rounded input; the accuracy rule of
conftest.assert_accurate with the value / gradient scales defined there).
"""
import pytest
import torch

from triton_oracles import DEVICE, require_triton

require_triton()

from gankernels import reference as ref  # noqa: E402
from gankernels import triton_pulling_away as tp  # noqa: E402
from conftest import assert_accurate, dtype_id, make_input  # noqa: E402
from test_pulling_away import _scales  # noqa: E402

pytestmark = pytest.mark.triton
GRAM, COVARIANCE = 0, 1
ALGS = pytest.mark.parametrize("algorithm", [GRAM, COVARIANCE], ids=["gram", "covariance"])


def _oracle(s, eps):
    s = s.detach().cpu().double().requires_grad_(True)
    v = ref.pulling_away(s, eps)
    (g,) = torch.autograd.grad(v, s)
    return v.detach(), g


def _naive(s, eps):
    s = s.detach().cpu().clone().requires_grad_(True)
    v = ref.pulling_away(s, eps)
    (g,) = torch.autograd.grad(v, s)
    return v.detach(), g


def _check(s, algorithm, eps=1e-8, what=""):
    s = s.to(DEVICE)
    v = tp.pulling_away(s, eps, algorithm)
    g = tp.pulling_away_backward(torch.tensor(1.0, dtype=s.dtype, device=DEVICE), s, eps, algorithm)
    assert v.device == s.device and g.device == s.device
    v64, g64 = _oracle(s, eps)
    vn, gn = (v64, g64) if s.dtype == torch.float64 else _naive(s, eps)
    sv, sg = _scales(s.cpu(), eps)
    assert_accurate(v.cpu(), v64, vn, s.dtype, sv, f"{what} value")
    assert_accurate(g.cpu(), g64, gn, s.dtype, sg, f"{what} grad")


@ALGS
@pytest.mark.parametrize("n,d", [(2, 1), (3, 3), (37, 20), (20, 37), (17, 1)])
def test_float64(n, d, algorithm):
    layout = "T" if n == 37 else "C"
    _check(make_input(n, d, torch.float64, layout=layout, seed=n + d, shift=0.2), algorithm, what=f"{n}x{d}")


@ALGS
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=dtype_id)
def test_low_precision(dtype, algorithm):
    _check(make_input(37, 20, dtype, layout="S", seed=3), algorithm, what=dtype_id(dtype))


@ALGS
def test_short_and_zero_rows(algorithm):
    s = make_input(19, 5, torch.float64, seed=4)
    s[2] = 0.0
    s[7] *= 0.01  # shorter than eps = 0.1
    _check(s, algorithm, eps=0.1, what="eps 0.1")
    s[7] = 0.0
    _check(s, algorithm, what="default eps")
    g = tp.pulling_away_backward(torch.tensor(1.0, dtype=s.dtype), s.to(DEVICE), 1e-8, algorithm)
    assert not g[2].any() and not g[7].any()


@ALGS
def test_nan_propagates(algorithm):
    s = make_input(21, 6, torch.float32, seed=5)
    s[18, 2] = float("nan")
    s = s.to(DEVICE)
    assert torch.isnan(tp.pulling_away(s, 1e-8, algorithm)).all()
    assert torch.isnan(tp.pulling_away_backward(torch.tensor(1.0, device=DEVICE), s, 1e-8, algorithm)).all()


@ALGS
def test_deterministic_and_grad_scaling(algorithm):
    s = make_input(33, 18, torch.float32, seed=6).to(DEVICE)
    one = torch.tensor(1.0, device=DEVICE)
    assert torch.equal(tp.pulling_away(s, 1e-8, algorithm), tp.pulling_away(s, 1e-8, algorithm))
    g = tp.pulling_away_backward(one, s, 1e-8, algorithm)
    assert torch.equal(g, tp.pulling_away_backward(one, s, 1e-8, algorithm))
    torch.testing.assert_close(tp.pulling_away_backward(-2.5 * one, s, 1e-8, algorithm), -2.5 * g)


def test_bad_arguments():
    s = torch.randn(4, 3, device=DEVICE)
    with pytest.raises(ValueError, match="rows"):
        tp.pulling_away(s[:1], 1e-8, GRAM)
    with pytest.raises(TypeError, match="floating"):
        tp.pulling_away(s.int(), 1e-8, GRAM)
    with pytest.raises(ValueError, match="eps"):
        tp.pulling_away(s, 0.0, GRAM)
    with pytest.raises(ValueError, match="algorithm"):
        tp.pulling_away_backward(torch.tensor(1.0, device=DEVICE), s, 1e-8, 5)
