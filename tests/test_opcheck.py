"""torch.library.opcheck on the four primitive ops (docs/ENGINE.md), forward and backward ops.

Small float64 and float32 inputs, self mode (y = None) and not, a radial mixture,
a kink kernel and a dot-product kernel.  The default test_utils set
(test_schema, test_autograd_registration, test_faketensor, test_aot_dispatch_dynamic)
runs on every op, with one documented exception:

* ``kflow_backward`` is the Hessian-vector product and is deliberately not
  differentiable (third order is unsupported; its registered autograd formula
  raises).  ``test_aot_dispatch_dynamic`` with inputs that require grad would
  differentiate it, so for that op the aot/fake/schema checks run on inputs that
  do not require grad, and ``test_autograd_registration`` (which needs inputs that
  require grad, and only checks that an autograd kernel is registered) runs
  separately with inputs that do.
"""
from __future__ import annotations

import pytest
import torch

import gankernels  # noqa: F401  (registers the ops)
from gankernels.kernels import Energy, Gaussian, Polynomial
from conftest import dtype_id, kernel_id

ops = torch.ops.gankernels
DEFAULT_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")

OPCHECK_KERNELS = [Gaussian((1.0, 2.0)), Energy(), Polynomial(3)]

params = pytest.mark.parametrize("kernel", OPCHECK_KERNELS, ids=kernel_id)
dtypes = pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=dtype_id)
modes = pytest.mark.parametrize("self_mode", [False, True], ids=["xy", "self"])


def _t(*shape, dtype, seed, grad=True, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift
    return t.to(dtype).requires_grad_(grad)


def _xy(self_mode, dtype, n=5, m=4, d=3, grad=True):
    x = _t(n, d, dtype=dtype, seed=0, grad=grad)
    y = None if self_mode else _t(m, d, dtype=dtype, seed=1, grad=grad, scale=0.7, shift=0.2)
    return x, y, (n if self_mode else m)


def _enc(kernel, d=3):
    family, p = kernel.encode(d)
    return int(family), [float(v) for v in p]


def _check(op, args, utils=DEFAULT_UTILS):
    tol = {}
    if any(isinstance(a, torch.Tensor) and a.dtype == torch.float32 for a in args):
        tol = dict(atol=1e-4, rtol=1e-4)
    torch.library.opcheck(op, args, test_utils=list(utils), **tol)


@params
@dtypes
@modes
def test_ksum(kernel, dtype, self_mode):
    x, y, m = _xy(self_mode, dtype)
    w = _t(m, 2, dtype=dtype, seed=2)
    _check(ops.ksum.default, (x, y, w, *_enc(kernel)))


def _with_masks(full, partial):
    """Every kernel x dtype x mode with the full mask; partial masks for float64 Gaussian only (runtime)."""
    cases = []
    for kernel in OPCHECK_KERNELS:
        for dtype in (torch.float64, torch.float32):
            for self_mode in (False, True):
                for mask in [full] + (partial if dtype == torch.float64 and isinstance(kernel, Gaussian) else []):
                    cases.append(pytest.param(kernel, dtype, self_mode, mask, id="-".join(
                        [kernel_id(kernel), dtype_id(dtype), "self" if self_mode else "xy",
                         "".join("1" if b else "0" for b in mask)])))
    return pytest.mark.parametrize("kernel,dtype,self_mode,mask", cases)


@_with_masks((True, True, True), [(True, False, False), (False, True, True)])
def test_ksum_backward(kernel, dtype, self_mode, mask):
    x, y, m = _xy(self_mode, dtype)
    w = _t(m, 2, dtype=dtype, seed=2)
    g = _t(x.shape[0], 2, dtype=dtype, seed=3)
    mask = [mask[0], mask[1] and not self_mode, mask[2]]
    _check(ops.ksum_backward.default, (g, x, y, w, *_enc(kernel), mask))


@params
@dtypes
@modes
def test_kflow(kernel, dtype, self_mode):
    x, y, m = _xy(self_mode, dtype)
    a = _t(x.shape[0], 2, dtype=dtype, seed=4)
    b = _t(m, 2, dtype=dtype, seed=5)
    _check(ops.kflow.default, (x, y, a, b, *_enc(kernel)))


@_with_masks((True, True, True, True), [(True, False, True, False), (False, True, False, True)])
def test_kflow_backward(kernel, dtype, self_mode, mask):
    def args(grad):
        x, y, m = _xy(self_mode, dtype, grad=grad)
        a = _t(x.shape[0], 2, dtype=dtype, seed=4, grad=grad)
        b = _t(m, 2, dtype=dtype, seed=5, grad=grad)
        h = _t(*x.shape, dtype=dtype, seed=6, grad=grad)
        msk = [mask[0], mask[1] and not self_mode, mask[2], mask[3]]
        return (h, x, y, a, b, *_enc(kernel), msk)

    # Not differentiable by design (see the module docstring).
    _check(ops.kflow_backward.default, args(False),
           [u for u in DEFAULT_UTILS if u != "test_autograd_registration"])
    _check(ops.kflow_backward.default, args(True), ["test_autograd_registration"])


def test_ops_have_autograd_and_fake_kernels():
    for name in ("ksum", "ksum_backward", "kflow", "kflow_backward"):
        op = getattr(ops, name).default
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CPU"), name
        assert (torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "Autograd")
                or torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "AutogradCPU")), name


def test_schemas():
    expected = {
        "ksum": "gankernels::ksum(Tensor x, Tensor? y, Tensor w, int family, float[] params) -> Tensor",
        "kflow": "gankernels::kflow(Tensor x, Tensor? y, Tensor a, Tensor b, int family, float[] params) -> Tensor",
    }
    for name, schema in expected.items():
        assert str(getattr(ops, name).default._schema) == schema
    bw = str(ops.ksum_backward.default._schema)
    assert bw.startswith("gankernels::ksum_backward(Tensor grad, Tensor x, Tensor? y, Tensor w, int family, "
                         "float[] params, bool[") and bw.endswith("-> (Tensor, Tensor, Tensor)"), bw
    bw = str(ops.kflow_backward.default._schema)
    assert bw.startswith("gankernels::kflow_backward(Tensor grad, Tensor x, Tensor? y, Tensor a, Tensor b, "
                         "int family, float[] params, bool[") and bw.endswith("-> (Tensor, Tensor, Tensor, Tensor)"), bw
