"""torch.compile(fullgraph=True) over the public API: no graph break, same numbers as eager.

* aot_eager: a whole training step -- generator forward, mmd2, torch.autograd.grad
  of the parameters -- inside one compiled function.  Dynamo only traces
  ``torch.autograd.grad`` with ``torch._dynamo.config.trace_autograd_ops = True``
  (otherwise any autograd.grad call is a graph break, whatever the ops); the
  custom ops' backward must then be traceable (registered ops + fake kernels).
* aot_eager: the witness gradient penalty (create_graph=True, double backward) compiled.
* aot_eager: the in-place Langevin op (a mutating custom op) on a graph input.
* inductor (default backend; compiles C++ on CPU): a compiled MMDLoss forward with the
  usual ``loss.backward()`` outside, i.e. the AOTAutograd-compiled backward graph.
"""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels.kernels import Gaussian, RationalQuadratic

_HAS_TRACE_AUTOGRAD = hasattr(torch._dynamo.config, "trace_autograd_ops")


def _data(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(32, 3, generator=g, dtype=dtype)
    z = torch.randn(24, 5, generator=g, dtype=dtype)
    return real, z


def _linear(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return torch.nn.Linear(5, 3).to(dtype)


@pytest.mark.skipif(not _HAS_TRACE_AUTOGRAD, reason="this torch cannot trace torch.autograd.grad")
@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_training_step_aot_eager(estimator):
    torch._dynamo.reset()
    lin = _linear()
    kernel = Gaussian((1, 2, 4, 8, 16))
    params = list(lin.parameters())

    def step(real, z):
        fake = lin(z)
        loss = gk.mmd2(real, fake, kernel, estimator=estimator)
        grads = torch.autograd.grad(loss, params)
        return loss.detach(), grads

    real, z = _data()
    loss_e, grads_e = step(real, z)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
        loss_c, grads_c = compiled(real, z)
    torch.testing.assert_close(loss_c, loss_e)
    for gc, ge in zip(grads_c, grads_e):
        torch.testing.assert_close(gc, ge)


@pytest.mark.skipif(not _HAS_TRACE_AUTOGRAD, reason="this torch cannot trace torch.autograd.grad")
def test_witness_gradient_penalty_aot_eager():
    torch._dynamo.reset()
    kernel = RationalQuadratic()

    def penalty(x, y, t):
        z = t * x + (1 - t) * y
        w = gk.witness(z, x, y, kernel)
        (g,) = torch.autograd.grad(w.sum(), z, create_graph=True)
        pen = (g ** 2).sum(1).mean()
        gx, gy = torch.autograd.grad(pen, (x, y))
        return pen.detach(), gx, gy

    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    y = (torch.randn(8, 3, generator=g, dtype=torch.float64) + 1).requires_grad_(True)
    t = torch.rand(8, 1, generator=g, dtype=torch.float64)
    expected = penalty(x, y, t)
    with torch._dynamo.config.patch(trace_autograd_ops=True):
        got = torch.compile(penalty, fullgraph=True, backend="aot_eager")(x, y, t)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_mmd_loss_inductor():
    torch._dynamo.reset()
    real, z = _data(1)
    loss_fn = gk.nn.MMDLoss(Gaussian((1, 2, 4, 8, 16)))

    def run(fn):
        lin = _linear(1)
        loss = fn(lin, real, z)
        loss.backward()
        return loss.detach(), lin.weight.grad, lin.bias.grad

    def forward(lin, real, z):
        return loss_fn(real, lin(z))

    expected = run(forward)
    got = run(torch.compile(forward, fullgraph=True))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_inplace_langevin_step_aot_eager():
    """The in-place Langevin op (a mutating custom op) compiles without a graph break: the graph
    input is updated as in eager mode and its version counter moves."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(16, 3, generator=g)
    d = torch.randn(16, 3, generator=g)

    def f(x, drift):
        torch.ops.gankernels.langevin_step_(x, drift * 2.0, 0.1, 0.5, 7)
        return x * 3.0

    xe = x0.clone()
    expected = f(xe, d)
    xc = x0.clone()
    version = xc._version
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(xc, d)
    assert torch.equal(xc, xe) and not torch.equal(xc, x0)
    torch.testing.assert_close(got, expected)
    assert xc._version > version
