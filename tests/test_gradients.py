"""float64 gradcheck / gradgradcheck of the public pairwise functions, every kernel family.

Small shapes (N, M <= 6, D <= 3).  The kernels with a kink at coincident points
(Laplacian, Energy, Polyharmonic with eps = 0) are checked on well-separated
inputs (conftest.separated), where they are smooth.

mmd2 is special: its XX and YY blocks contain the self-pairs i = i', which are
coincident points for any input.  Their kernel gradient is *defined* as 0
(kernels.py, docs/ENGINE.md), and it is also the true derivative of
k(x_i, x_i) = const.  Finite differences are still unreliable there for the kink
kernels (an engine may compute s = |a|^2 + |b|^2 - 2 a.b, leaving s ~ 1e-16 instead of 0,
and r = sqrt(s) ~ 1e-8 moves under a 1e-6 perturbation), so for those families mmd2's
first and second derivatives are compared with the autograd of the reference
(whose safe root gives exactly 0 there) instead of gradcheck.
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import gankernels as gk
from gankernels import reference as ref
from conftest import KERNELS, SMOOTH_KERNELS, kernel_id, make_weights, separated

kernels = pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)


def _sets(n=4, m=5, d=3, seed=0, k=None):
    """x [n, d], y [m, d] (and z [k, d]), all points pairwise >= 0.4 apart, requiring grad."""
    pts = separated(n + m + (k or 0), d, seed=seed)
    out = [pts[:n], pts[n:n + m]] + ([pts[n + m:]] if k else [])
    return [t.clone().requires_grad_(True) for t in out]


def _weighted_call(op, kernel, x, y, w):
    """(fn, args) for gradcheck of op(x, y, kernel) or, with weights, op(x, y, kernel, w) with w requiring grad."""
    if w is None:
        return (lambda a, b: op(a, b, kernel)), (x, y)
    return (lambda a, b, c: op(a, b, kernel, c)), (x, y, w.detach().clone().requires_grad_(True))


def _close(a, b, what):
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9, msg=lambda m: f"{what}: {m}")


# ----------------------------------------------------------------------------- kernel_sum

@kernels
@pytest.mark.parametrize("wkind", [None, "M", "MC"])
def test_kernel_sum_gradcheck(kernel, wkind):
    fn, args = _weighted_call(gk.kernel_sum, kernel, *_sets(4, 5, 3, seed=1), make_weights(5, wkind))
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("kernel", KERNELS, ids=kernel_id)
def test_kernel_sum_gradcheck_d1(kernel):
    fn, args = _weighted_call(gk.kernel_sum, kernel, *_sets(3, 6, 1, seed=2), make_weights(6, "M"))
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@kernels
def test_kernel_sum_same_tensor_gradient(kernel):
    """kernel_sum(x, x): the gradient w.r.t. x collects both argument roles (vs the reference)."""
    x = separated(5, 2, seed=3).requires_grad_(True)
    w = make_weights(5, "M")
    (g,) = torch.autograd.grad(gk.kernel_sum(x, x, kernel, w).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(ref.kernel_sum(x2, x2, kernel, w).sum(), x2)
    _close(g, g2, "d/dx kernel_sum(x, x)")


# ----------------------------------------------------------------------------- kernel_flow

@kernels
@pytest.mark.parametrize("wkind", [None, "M"])
def test_kernel_flow_gradcheck(kernel, wkind):
    """First order only (the derivative of kernel_flow is a Hessian-vector product)."""
    fn, args = _weighted_call(gk.kernel_flow, kernel, *_sets(4, 5, 3, seed=4), make_weights(5, wkind))
    assert gradcheck(fn, args)


# ----------------------------------------------------------------------------- mmd2

@pytest.mark.parametrize("kernel", SMOOTH_KERNELS, ids=kernel_id)
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd2_gradcheck_smooth(kernel, estimator):
    x, y = _sets(4, 5, 3, seed=5)
    fn = lambda a, b: gk.mmd2(a, b, kernel, estimator=estimator)  # noqa: E731
    assert gradcheck(fn, (x, y))
    assert gradgradcheck(fn, (x, y))


@kernels
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd2_derivatives_vs_reference(kernel, estimator):
    """Gradient and Hessian-vector product of mmd2 against the reference's autograd.

    For the kink kernels this is the check that replaces gradcheck: the self-pairs
    i = i' are coincident and must contribute exactly 0 to both derivatives.
    """
    x, y = _sets(5, 6, 3, seed=6)
    gen = torch.Generator().manual_seed(0)
    vx = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    vy = torch.randn(y.shape, generator=gen, dtype=torch.float64)

    def derivs(f, a, b):
        val = f(a, b)
        ga, gb = torch.autograd.grad(val, (a, b), create_graph=True)
        hva, hvb = torch.autograd.grad((ga * vx).sum() + (gb * vy).sum(), (a, b))
        return val.detach(), ga.detach(), gb.detach(), hva, hvb

    got = derivs(lambda a, b: gk.mmd2(a, b, kernel, estimator=estimator), x, y)
    exp = derivs(lambda a, b: ref.mmd2(a, b, kernel, estimator), x, y)
    for name, g, e in zip(("value", "d/dx", "d/dy", "Hv x", "Hv y"), got, exp):
        _close(g, e, f"mmd2 {estimator} {name}")


# ----------------------------------------------------------------------------- witness

@kernels
def test_witness_gradcheck(kernel):
    x, y, z = _sets(4, 5, 3, seed=8, k=3)
    fn = lambda c, a, b: gk.witness(c, a, b, kernel)  # noqa: E731
    assert gradcheck(fn, (z, x, y))
    assert gradgradcheck(fn, (z, x, y))


@kernels
def test_witness_gradient_penalty(kernel):
    """Gradient penalty on the MMD witness (Binkowski et al.): ||grad_z witness(z)||^2 at
    interpolates z = t x + (1 - t) y, create_graph=True, backward into x and y (double backward)."""
    x, y = _sets(6, 6, 3, seed=9)
    t = torch.rand(6, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.6 + 0.2

    def penalty(w_fn):
        z = t * x + (1 - t) * y
        w = w_fn(z, x, y)
        (g,) = torch.autograd.grad(w.sum(), z, create_graph=True)
        pen = (g ** 2).sum(1).mean()
        gx, gy = torch.autograd.grad(pen, (x, y))
        return pen.detach(), gx, gy

    got = penalty(lambda z, a, b: gk.witness(z, a, b, kernel))
    exp = penalty(lambda z, a, b: ref.witness(z, a, b, kernel))
    for name, g, e in zip(("penalty", "d/dx", "d/dy"), got, exp):
        _close(g, e, f"witness gradient penalty {name}")


def test_mmd_gan_critic_step_with_penalty():
    """A whole MMD-GAN critic loss (mmd2 on features + witness penalty) backward into a net."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    real = torch.randn(6, 3, dtype=torch.float64)
    fake = torch.randn(5, 3, dtype=torch.float64) + 0.5
    kernel = gk.RationalQuadratic()

    def loss(mmd, wit):
        fr, ff = net(real), net(fake)
        t = torch.full((5, 1), 0.3, dtype=torch.float64)
        inter = (t * real[:5] + (1 - t) * fake).requires_grad_(True)
        fi = net(inter)
        w = wit(fi, fr, ff)
        (g,) = torch.autograd.grad(w.sum(), inter, create_graph=True)
        out = -mmd(fr, ff) + ((g.norm(dim=1) - 1) ** 2).mean()
        return torch.autograd.grad(out, list(net.parameters()))

    got = loss(lambda a, b: gk.mmd2(a, b, kernel, estimator="unbiased"), lambda z, a, b: gk.witness(z, a, b, kernel))
    exp = loss(lambda a, b: ref.mmd2(a, b, kernel, "unbiased"), lambda z, a, b: ref.witness(z, a, b, kernel))
    for g, e in zip(got, exp):
        _close(g, e, "critic parameter gradient")

