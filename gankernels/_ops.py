"""Registration glue for the pairwise primitives: fake kernels and autograd.

The schemas and CPU kernels of ``gankernels::ksum``, ``ksum_backward``,
``kflow`` and ``kflow_backward`` live in C++ (``csrc/ops.cpp``); the CUDA
kernels are Triton launchers (``triton_engine.py``).  Here each op gets a
fake (shape) kernel for ``torch.compile`` and an autograd formula whose
backward calls another registered op, so that backward graphs are traceable,
device-dispatched and differentiable once more:

* ``ksum``            -> ``ksum_backward``
* ``ksum_backward``   -> ``kflow_backward`` and ``ksum_backward`` (double backward)
* ``kflow``           -> ``kflow_backward``
* ``kflow_backward``  -> not differentiable (third order is not supported)

The math of every op is in ``docs/ENGINE.md``.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (runs the C++ registrations)
from ._checks import check_family, check_same_device

ops = torch.ops.gankernels


# ----------------------------------------------------------------------------- fake kernels
# The fakes check what needs no data (the family and its parameters, one device for all
# tensors); shapes are left to the real kernels, so that symbolic sizes get no guards.

@torch.library.register_fake("gankernels::ksum")
def _ksum_fake(x, y, w, family, params):
    check_family(family, params)
    check_same_device(("x", x), ("y", y), ("w", w))
    return x.new_empty(x.shape[0], w.shape[1])


@torch.library.register_fake("gankernels::ksum_backward")
def _ksum_backward_fake(grad, x, y, w, family, params, output_mask):
    check_family(family, params)
    check_same_device(("x", x), ("grad", grad), ("y", y), ("w", w))
    m = 0 if y is None else y.shape[0]
    return x.new_empty(x.shape), x.new_empty(m, x.shape[1]), x.new_empty(w.shape)


@torch.library.register_fake("gankernels::kflow")
def _kflow_fake(x, y, a, b, family, params):
    check_family(family, params)
    check_same_device(("x", x), ("y", y), ("a", a), ("b", b))
    return x.new_empty(x.shape)


@torch.library.register_fake("gankernels::kflow_backward")
def _kflow_backward_fake(grad, x, y, a, b, family, params, output_mask):
    check_family(family, params)
    check_same_device(("x", x), ("grad", grad), ("y", y), ("a", a), ("b", b))
    m = 0 if y is None else y.shape[0]
    return x.new_empty(x.shape), x.new_empty(m, x.shape[1]), x.new_empty(a.shape), x.new_empty(b.shape)


# ----------------------------------------------------------------------------- autograd

def _needs(ctx, *idx):
    return [bool(ctx.needs_input_grad[i]) for i in idx]


def _add(acc, value):
    return value if acc is None else acc + value


# ksum(x, y?, w) -> out[N, C]

def _ksum_setup(ctx, inputs, output):
    x, y, w, family, params = inputs
    ctx.save_for_backward(x, y, w)
    ctx.family, ctx.params = family, params


def _ksum_backward(ctx, grad):
    x, y, w = ctx.saved_tensors
    nx, ny, nw = _needs(ctx, 0, 1, 2)
    ny = ny and y is not None
    gx, gy, gw = ops.ksum_backward(grad, x, y, w, ctx.family, ctx.params, [nx, ny, nw])
    return (gx if nx else None), (gy if ny else None), (gw if nw else None), None, None


torch.library.register_autograd("gankernels::ksum", _ksum_backward, setup_context=_ksum_setup)


# ksum_backward(g, x, y?, w) -> (gx, gy, gw); its backward (the double backward of ksum):
#   non-self: gx = kflow(x, y, g, w), gy = kflow(y, x, w, g), gw = ksum(y, x, g)
#   self:     gx = kflow(x, -, g, w) + kflow(x, -, w, g),      gw = ksum(x, -, g)

def _ksum_backward_setup(ctx, inputs, output):
    g, x, y, w, family, params, mask = inputs
    ctx.save_for_backward(g, x, y, w)
    ctx.family, ctx.params, ctx.mask = family, params, list(mask)


def _ksum_backward_backward(ctx, hx, hy, hw):
    g, x, y, w = ctx.saved_tensors
    fam, par = ctx.family, ctx.params
    mask = ctx.mask
    ng, nx, ny, nw = _needs(ctx, 0, 1, 2, 3)
    dg = dx = dy = dw = None
    self_mode = y is None
    if hx is not None and mask[0]:
        if self_mode:
            for a, b, flip in ((g, w, False), (w, g, True)):
                ex, _, ea, eb = ops.kflow_backward(hx, x, None, a, b, fam, par, [nx, False, ng or nw, ng or nw])
                dx = _add(dx, ex)
                eg, ew = (eb, ea) if flip else (ea, eb)
                dg, dw = _add(dg, eg), _add(dw, ew)
        else:
            ex, ey, eg, ew = ops.kflow_backward(hx, x, y, g, w, fam, par, [nx, ny, ng, nw])
            dx, dy, dg, dw = _add(dx, ex), _add(dy, ey), _add(dg, eg), _add(dw, ew)
    if hy is not None and mask[1] and not self_mode:
        ey, ex, ew, eg = ops.kflow_backward(hy, y, x, w, g, fam, par, [ny, nx, nw, ng])
        dx, dy, dg, dw = _add(dx, ex), _add(dy, ey), _add(dg, eg), _add(dw, ew)
    if hw is not None and mask[2]:
        if self_mode:
            ex, _, eg = ops.ksum_backward(hw, x, None, g, fam, par, [nx, False, ng])
        else:
            ey, ex, eg = ops.ksum_backward(hw, y, x, g, fam, par, [ny, nx, ng])
            dy = _add(dy, ey)
        dx, dg = _add(dx, ex), _add(dg, eg)
    return (dg if ng else None), (dx if nx else None), (dy if ny else None), (dw if nw else None), None, None, None


torch.library.register_autograd(
    "gankernels::ksum_backward", _ksum_backward_backward, setup_context=_ksum_backward_setup
)


# kflow(x, y?, a, b) -> out[N, D]

def _kflow_setup(ctx, inputs, output):
    x, y, a, b, family, params = inputs
    ctx.save_for_backward(x, y, a, b)
    ctx.family, ctx.params = family, params


def _kflow_backward(ctx, grad):
    x, y, a, b = ctx.saved_tensors
    nx, ny, na, nb = _needs(ctx, 0, 1, 2, 3)
    ny = ny and y is not None
    gx, gy, ga, gb = ops.kflow_backward(grad, x, y, a, b, ctx.family, ctx.params, [nx, ny, na, nb])
    return (gx if nx else None), (gy if ny else None), (ga if na else None), (gb if nb else None), None, None


torch.library.register_autograd("gankernels::kflow", _kflow_backward, setup_context=_kflow_setup)


def _kflow_backward_setup(ctx, inputs, output):
    pass


def _no_third_order(ctx, *grads):
    raise NotImplementedError(
        "gankernels: derivatives of order three of the pairwise ops are not supported "
        "(kflow_backward is the Hessian-vector product and is not differentiable)"
    )


torch.library.register_autograd(
    "gankernels::kflow_backward", _no_third_order, setup_context=_kflow_backward_setup
)


def _register_cuda():
    try:
        from . import triton_engine
    except ImportError:  # triton missing or module not present: CPU only
        return
    triton_engine.register_cuda_kernels()


_register_cuda()
