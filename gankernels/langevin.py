"""Fused Langevin updates: one step, kernel-driven chains, annealed KDE chains.

Formulas (docs/MATH.md §3), xi ~ N(0, I) from a counter-based generator:

* ``langevin_step(x, drift, eta, tau)``  x + eta drift + sqrt(2 eta tau) xi   (``langevin_step_``: in place)
* ``kernel_langevin``  ``steps`` times x <- x + eta sum_j w_j grad k(x, c_j) + sqrt(2 eta tau) xi.
  With centres = real ∪ fake and weights +1/N, -1/M the drift is the gradient of the
  closed-form IPM critic (the MMD witness): discriminator-guided Langevin.
* ``kde_langevin``  annealed Langevin on the Gaussian-smoothed data: for each sigma_i in
  the given order, alpha_i = eps sigma_i^2 / sigma_L^2 (sigma_L the last), ``steps_per_sigma``
  times x <- x + (alpha_i / 2) smoothed_score(x, data, sigma_i) + sqrt(alpha_i) xi.
* ``langevin_sample``  the generic driver for any ``score_fn(x) -> [N, D]``;
  ``discriminator_score(D)`` is ``x -> grad_x sum D(x)`` for a trained network.

What is fused: the noise is generated inside the update (a counter-based generator
keyed by a seed drawn from the ``torch.Generator`` -- ARS-7 on AES rounds on CPU,
``csrc/noise.h``; Philox4x32-10 in the Triton kernels -- then Box-Muller), so a step is
one pass over memory.  ``kernel_langevin`` and ``kde_langevin`` run the whole chain
in one op call: each step is one pass of the pairwise engine (flow field, or the
online-log-sum-exp score with the update applied per row block) -- no N x M
matrix, no per-step kernel launches from Python.

Reproducibility: the same generator state gives the same samples (the noise of
element e at step t is a function of (seed, t, e) only, independent of the
thread count); each call advances the generator by one draw, so consecutive
calls get independent noise.  Memory: O((N + M) D).  Limits: not differentiable
(sampling runs under ``no_grad``); the noise is generated in fp32.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from . import _ops  # noqa: F401  (the extension and every registration)
from ._checks import (check_count, check_kernel, check_point_pair, check_points, check_real, check_weights,
                      kde_langevin_args, step_args)
from .kernels import Kernel
from .pairwise import _encode

__all__ = [
    "langevin_step", "langevin_step_", "kernel_langevin", "kde_langevin", "langevin_sample",
    "discriminator_score",
]

ops = torch.ops.gankernels


def draw_seed(generator: Optional[torch.Generator] = None) -> int:
    """A 62-bit seed for the counter-based noise, drawn from ``generator`` (default: torch's CPU generator)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), device=device, generator=generator).item())


def langevin_step(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float = 1.0,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """x + step_size * drift + sqrt(2 step_size temperature) * xi, one fused pass; returns a new tensor."""
    eta, tau = step_args(x, drift, step_size, temperature)
    with torch.no_grad():
        return ops.langevin_step(x.detach(), drift.detach(), eta, tau, draw_seed(generator))


def langevin_step_(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float = 1.0,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """In-place ``langevin_step``: updates and returns ``x``.

    Autograd sees an in-place update, as with ``x.add_(...)`` under ``torch.no_grad()``:
    x's version counter is bumped, so a graph that saved x raises "modified by an
    inplace operation" at backward instead of using the new values; a leaf that
    requires grad (or a view of one) is refused unless grad mode is off, as PyTorch
    refuses ``leaf.add_(...)``.  A non-leaf x keeps its history: the step adds a
    constant (drift is detached), so gradients flow through it unchanged.
    """
    eta, tau = step_args(x, drift, step_size, temperature)
    if torch.is_grad_enabled() and x.requires_grad:
        if x.is_leaf:
            raise RuntimeError("langevin_step_: x is a leaf that requires grad (a leaf Variable that requires grad "
                               "is being used in an in-place operation); update x.detach() or call it under "
                               "torch.no_grad()")
        if x._base is not None and x._base.is_leaf:
            raise RuntimeError("langevin_step_: x is a view of a leaf that requires grad (a view of a leaf Variable "
                               "that requires grad is being used in an in-place operation); call it under "
                               "torch.no_grad()")
    with torch.no_grad():
        ops.langevin_step_(x, drift.detach(), eta, tau, draw_seed(generator))
    return x


def kernel_langevin(x: torch.Tensor, centers: torch.Tensor, kernel: Kernel, weights: Optional[torch.Tensor],
                    step_size: float, steps: int, temperature: float = 1.0,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``steps`` Langevin steps driven by the kernel flow field sum_j w_j grad k(x, c_j); returns new points."""
    check_point_pair(x, centers, "x", "centers")
    check_kernel(kernel)
    check_weights(weights, centers.shape[0], centers, "centers")
    eta = check_real(step_size, "step_size", "positive")
    tau = check_real(temperature, "temperature", "non-negative")
    steps = check_count(steps, "steps")
    w = centers.new_ones(centers.shape[0]) if weights is None else weights.to(centers.dtype)
    family, params = _encode(kernel, x.shape[1])
    with torch.no_grad():
        return ops.kernel_langevin(x.detach(), centers.detach(), w.detach(), family, params, eta, steps, tau,
                                   draw_seed(generator))


def kde_langevin(x: torch.Tensor, data: torch.Tensor, sigmas: Sequence[float], steps_per_sigma: int, eps: float,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Annealed Langevin (NCSN schedule) on the Gaussian-smoothed data; returns new points."""
    sig, steps_per_sigma, eps = kde_langevin_args(x, data, sigmas, steps_per_sigma, eps)
    with torch.no_grad():
        return ops.kde_langevin(x.detach(), data.detach(), sig, steps_per_sigma, eps, draw_seed(generator))


def langevin_sample(x: torch.Tensor, score_fn: Callable[[torch.Tensor], torch.Tensor], steps: int,
                    step_size: float, temperature: float = 1.0,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``steps`` times x <- langevin_step(x, score_fn(x), step_size, temperature); O(batch) memory."""
    if not callable(score_fn):
        raise TypeError("score_fn must be callable: x [N, D] -> score [N, D]")
    check_points(x, "x")
    steps = check_count(steps, "steps")
    check_real(step_size, "step_size", "positive")
    check_real(temperature, "temperature", "non-negative")
    x = x.detach().clone()
    for _ in range(steps):
        with torch.no_grad():
            drift = score_fn(x)
        langevin_step_(x, drift.detach().to(x.dtype), step_size, temperature, generator)
    return x


def discriminator_score(D: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> grad_x sum D(x)`` by autograd (works when the caller is under ``torch.no_grad()``)."""
    if not callable(D):
        raise TypeError("D must be callable (a discriminator network)")

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(D(xg).sum(), xg)
        return g

    return score
