"""Every op's Python-side registration, in one place: fake (meta) kernels for ``torch.compile``, autograd
formulas, and the table of CUDA launchers (Triton).  Schemas and CPU kernels: ``csrc/registration.cpp``.

Each backward calls another registered op, so backward graphs are traceable, dispatched by device and,
for the pairwise engine, differentiable once more:

* ``ksum`` -> ``ksum_backward`` -> ``kflow_backward`` / ``ksum_backward`` (double backward)
* ``kform`` (a scalar <g, ksum> whose x / y gradients come from its forward) -> the saved gradients;
  double backward as ``ksum_backward``'s
* ``kflow`` -> ``kflow_backward`` (the Hessian-vector product; not differentiable: no third order)
* ``smoothed_score`` -> ``smoothed_score_backward`` (first order only)
* ``pulling_away`` -> ``pulling_away_backward`` (first order only)
* ``ksum_and_square`` is forward-only (the variance's sums for evaluation)
* the Langevin ops are sampling updates: not differentiable (``langevin_step_`` mutates x).

The math: ``docs/ENGINE.md`` (pairwise engine) and ``docs/MATH.md``.
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


@torch.library.register_fake("gankernels::ksum_and_square")
def _ksum_and_square_fake(x, w, family, params):
    check_family(family, params)
    check_same_device(("x", x), ("w", w))
    return x.new_empty(x.shape[0], w.shape[1]), x.new_empty(x.shape[0], w.shape[1])


@torch.library.register_fake("gankernels::ksum_backward")
def _ksum_backward_fake(grad, x, y, w, family, params, output_mask):
    check_family(family, params)
    check_same_device(("x", x), ("grad", grad), ("y", y), ("w", w))
    m = 0 if y is None else y.shape[0]
    return x.new_empty(x.shape), x.new_empty(m, x.shape[1]), x.new_empty(w.shape)


@torch.library.register_fake("gankernels::kform")
def _kform_fake(x, y, g, w, family, params, output_mask):
    check_family(family, params)
    check_same_device(("x", x), ("y", y), ("g", g), ("w", w))
    m = 0 if y is None else y.shape[0]
    return x.new_empty(()), x.new_empty(x.shape), x.new_empty(m, x.shape[1])


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


# ksum_and_square(x, w) -> (out, out_sq): forward only (the variance's moments for evaluation)

def _forward_only(ctx, *grads):
    raise NotImplementedError("gankernels: ksum_and_square is forward-only; differentiate ksum instead "
                              "(mmd2_and_variance does so when x or y requires grad)")


torch.library.register_autograd("gankernels::ksum_and_square", _forward_only,
                                setup_context=lambda ctx, inputs, output: None)


# ksum_backward(g, x, y?, w) -> (gx, gy, gw); its backward (the double backward of ksum):
#   non-self: gx = kflow(x, y, g, w), gy = kflow(y, x, w, g), gw = ksum(y, x, g)
#   self:     gx = kflow(x, -, g, w) + kflow(x, -, w, g),      gw = ksum(x, -, g)

def _ksum_backward_setup(ctx, inputs, output):
    g, x, y, w, family, params, mask = inputs
    ctx.save_for_backward(g, x, y, w)
    ctx.family, ctx.params, ctx.mask = family, params, list(mask)


def _ksum_backward_vjp(g, x, y, w, fam, par, mask, hx, hy, hw, needs):
    """Vector-Jacobian product of (gx, gy, gw) = ksum_backward(g, x, y, w, mask) with (hx, hy, hw):
    -> (dg, dx, dy, dw) for the inputs flagged in needs = (g, x, y, w)."""
    ng, nx, ny, nw = needs
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
    return dg, dx, dy, dw


def _ksum_backward_backward(ctx, hx, hy, hw):
    g, x, y, w = ctx.saved_tensors
    needs = ng, nx, ny, nw = _needs(ctx, 0, 1, 2, 3)
    dg, dx, dy, dw = _ksum_backward_vjp(g, x, y, w, ctx.family, ctx.params, ctx.mask, hx, hy, hw, needs)
    return (dg if ng else None), (dx if nx else None), (dy if ny else None), (dw if nw else None), None, None, None


torch.library.register_autograd(
    "gankernels::ksum_backward", _ksum_backward_backward, setup_context=_ksum_backward_setup
)


# kform(x, y?, g, w, mask) -> (value, gx, gy): value = sum g * ksum(x, y, w) with its gradients computed in the
# forward (mask).  First order: d/dx = d_value * gx, no second pass over the pairs.  gx and gy are outputs of the
# op, so under create_graph the product keeps them in the graph, and their own VJP (the double backward) is
# ksum_backward's.  A gradient the mask did not compute, and those of g and w, come from ksum_backward / ksum.

def _kform_setup(ctx, inputs, output):
    x, y, g, w, family, params, mask = inputs
    _value, gx, gy = output
    ctx.set_materialize_grads(False)  # gx / gy usually get no gradient: None, not a zero tensor to contract
    ctx.save_for_backward(x, y, g, w, gx, gy)
    ctx.family, ctx.params, ctx.mask = family, params, [bool(mask[0]), bool(mask[1]) and y is not None]


def _kform_backward(ctx, d_value, d_gx, d_gy):
    x, y, g, w, gx, gy = ctx.saved_tensors
    fam, par, mask = ctx.family, ctx.params, ctx.mask
    nx, ny, ng, nw = _needs(ctx, 0, 1, 2, 3)
    ny = ny and y is not None
    dx = dy = dg = dw = None
    if d_value is not None:
        missing = [nx and not mask[0], ny and not mask[1], nw]
        if any(missing):
            ex, ey, ew = ops.ksum_backward(g, x, y, w, fam, par, missing)
        if nx:
            dx = d_value * (gx if mask[0] else ex)
        if ny:
            dy = d_value * (gy if mask[1] else ey)
        if nw:
            dw = d_value * ew
        if ng:
            dg = d_value * ops.ksum(x, y, w, fam, par)
    if (d_gx is not None and mask[0]) or (d_gy is not None and mask[1]):
        hx = d_gx if mask[0] else None
        hy = d_gy if mask[1] else None
        eg, ex, ey, ew = _ksum_backward_vjp(g, x, y, w, fam, par, mask + [False], hx, hy, None, (ng, nx, ny, nw))
        dx, dy, dg, dw = _add(dx, ex), _add(dy, ey), _add(dg, eg), _add(dw, ew)
    return (dx if nx else None), (dy if ny else None), (dg if ng else None), (dw if nw else None), None, None, None


torch.library.register_autograd("gankernels::kform", _kform_backward, setup_context=_kform_setup)


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


# ============================================================================= score

@torch.library.register_fake("gankernels::smoothed_score")
def _smoothed_score_fake(x, y, w, sigma):
    check_same_device(("x", x), ("y", y), ("weights", w))
    return x.new_empty(x.shape), x.new_empty(x.shape[0], dtype=(torch.float64 if x.dtype == torch.float64 else torch.float32))


@torch.library.register_fake("gankernels::smoothed_score_backward")
def _smoothed_score_backward_fake(grad, x, y, w, sigma, score, lse, output_mask):
    check_same_device(("x", x), ("grad", grad), ("y", y), ("weights", w), ("score", score), ("lse", lse))
    gw = x.new_empty(0) if w is None else w.new_empty(w.shape)
    return x.new_empty(x.shape), y.new_empty(y.shape), gw


def _score_setup(ctx, inputs, output):
    x, y, w, sigma = inputs
    score, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(x, y, w, score, lse)
    ctx.sigma = sigma


def _score_backward(ctx, g_score, g_lse):
    x, y, w, score, lse = ctx.saved_tensors
    nx, ny, nw = (bool(ctx.needs_input_grad[i]) for i in range(3))
    nw = nw and w is not None
    if g_score is None:
        return None, None, None, None
    gx, gy, gw = ops.smoothed_score_backward(g_score, x, y, w, ctx.sigma, score, lse, [nx, ny, nw])
    return (gx if nx else None), (gy if ny else None), (gw if nw else None), None


torch.library.register_autograd("gankernels::smoothed_score", _score_backward, setup_context=_score_setup)


def _no_second_order(ctx, *grads):
    raise NotImplementedError("gankernels: smoothed_score is differentiable once (no double backward)")


torch.library.register_autograd(
    "gankernels::smoothed_score_backward", _no_second_order, setup_context=lambda ctx, inputs, output: None
)


# ============================================================================= Langevin

@torch.library.register_fake("gankernels::langevin_step")
def _langevin_step_fake(x, drift, step_size, temperature, seed):
    check_same_device(("x", x), ("drift", drift))
    return torch.empty_like(x)


@torch.library.register_fake("gankernels::langevin_step_")
def _langevin_step_inplace_fake(x, drift, step_size, temperature, seed):
    check_same_device(("x", x), ("drift", drift))
    return None


@torch.library.register_fake("gankernels::kernel_langevin")
def _kernel_langevin_fake(x, centers, w, family, params, step_size, steps, temperature, seed):
    check_family(family, params)
    check_same_device(("x", x), ("centers", centers), ("w", w))
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("gankernels::kde_langevin")
def _kde_langevin_fake(x, data, sigmas, steps_per_sigma, eps, seed):
    check_same_device(("x", x), ("data", data))
    return torch.empty_like(x, memory_format=torch.contiguous_format)


# ============================================================================= pulling-away term

@torch.library.register_fake("gankernels::pulling_away")
def _pulling_away_fake(s, eps, algorithm):
    return s.new_empty(())


@torch.library.register_fake("gankernels::pulling_away_backward")
def _pulling_away_backward_fake(grad, s, eps, algorithm):
    check_same_device(("s", s), ("grad", grad))
    return s.new_empty(s.shape)


def _pulling_away_setup(ctx, inputs, output):
    s, eps, algorithm = inputs
    ctx.save_for_backward(s)
    ctx.eps, ctx.algorithm = eps, algorithm


def _pulling_away_backward(ctx, grad):
    (s,) = ctx.saved_tensors
    if not ctx.needs_input_grad[0]:
        return None, None, None
    # the incoming gradient is a scalar: bring it to the codes' device (a CPU scalar for CUDA codes is common)
    grad = grad.to(s.device)
    return torch.ops.gankernels.pulling_away_backward(grad, s, ctx.eps, ctx.algorithm), None, None


torch.library.register_autograd("gankernels::pulling_away", _pulling_away_backward, setup_context=_pulling_away_setup)


def _pulling_away_backward_setup(ctx, inputs, output):
    pass


def _pulling_away_no_double_backward(ctx, grad):
    raise NotImplementedError("gankernels: pulling_away supports first-order gradients only "
                              "(pulling_away_backward is not differentiable)")


torch.library.register_autograd("gankernels::pulling_away_backward", _pulling_away_no_double_backward,
                                setup_context=_pulling_away_backward_setup)


# ============================================================================= CUDA kernels

# op -> (Triton module, launcher): every CUDA kernel of the library, registered once at import.
CUDA_LAUNCHERS = {
    "ksum": ("triton_pairwise", "ksum"),
    "ksum_and_square": ("triton_pairwise", "ksum_and_square"),
    "ksum_backward": ("triton_pairwise", "ksum_backward"),
    "kform": ("triton_pairwise", "kform"),
    "kflow": ("triton_pairwise", "kflow"),
    "kflow_backward": ("triton_pairwise", "kflow_backward"),
    "smoothed_score": ("triton_score", "smoothed_score"),
    "smoothed_score_backward": ("triton_score", "smoothed_score_backward"),
    "langevin_step": ("triton_langevin", "langevin_step"),
    "langevin_step_": ("triton_langevin", "langevin_step_"),
    "kernel_langevin": ("triton_langevin", "kernel_langevin"),
    "kde_langevin": ("triton_langevin", "kde_langevin"),
    "pulling_away": ("triton_pulling_away", "pulling_away"),
    "pulling_away_backward": ("triton_pulling_away", "pulling_away_backward"),
}
# ops without tensors (one C++ kernel serves every device): a family's parameter check and derived constants
HOST_OPS = ("family_constants",)


def _register_cuda() -> bool:
    """Register the Triton launchers as the CUDA kernels of the ops (False where triton is missing)."""
    import importlib

    try:
        modules = {name: importlib.import_module(f".{name}", __package__)
                   for name in {m for m, _ in CUDA_LAUNCHERS.values()}}
    except ImportError:  # triton missing: CPU only
        return False
    if not all(getattr(m, "HAS_TRITON", True) for m in modules.values()):
        return False
    for op_name, (module, launcher) in CUDA_LAUNCHERS.items():
        torch.library.register_kernel(f"gankernels::{op_name}", "cuda", getattr(modules[module], launcher))
    return True


HAS_CUDA_KERNELS = _register_cuda()
