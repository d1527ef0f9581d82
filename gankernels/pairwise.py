"""Pairwise kernel reductions: kernel_sum, kernel_flow, mmd2, witness, kid.

Formulas (x [N, D], y [M, D], k a kernel of ``gankernels.kernels``):

* ``kernel_sum``:  out_i = sum_j w_j k(x_i, y_j)                  [N] or [N, C]
* ``kernel_flow``: out_i = sum_j w_j grad_a k(x_i, y_j)           [N, D]
* ``mmd2``:        biased  v^T K v over z = [x; y] with v = (1/N, ..., -1/M, ...);
                   unbiased: the same quadratic form with block weights
                   1/(N(N-1)), -1/(NM), 1/(M(M-1)) and the diagonal removed
* ``witness``:     mean_i k(z, x_i) - mean_j k(z, y_j)
* ``kid``:         unbiased MMD^2 with Polynomial(3) (exact with its standard error, or the torchmetrics
                   subset protocol); the variance itself: ``gankernels.variance``

What is fused: each function is one or two calls of the registered engine ops
(``gankernels::ksum`` / ``kform`` / ``kflow``, docs/ENGINE.md).  ``mmd2`` runs one
symmetric pass over the concatenation [x; y], so the XX and YY tiles are
visited once and the XY tiles once.  When an input requires grad, that same
pass also computes the gradient (``kform``: the kernel flow field, from the
tiles already in cache), and the backward only scales it by the incoming
gradient -- no second pass over the pairs.  The cost: a forward under grad
mode with inputs that require grad does the gradient's work even if no
backward follows (wrap evaluation in ``torch.no_grad()``).  The double
backward is made of ``kflow_backward`` Hessian-vector passes.

Memory: O((N + M) (D + C)) -- nothing N x M is ever allocated.
Limits: kernels with a kink at r = 0 (Laplacian, Energy, Polyharmonic with
eps = 0) have gradient 0 at coincident points; derivatives of order three are
not supported.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from . import _ops  # noqa: F401  (registrations)
from ._checks import check_choice, check_kernel, check_point_pair, check_weights
from .kernels import Kernel, Polynomial

__all__ = ["kernel_sum", "kernel_flow", "mmd2", "witness", "kid"]

_ops_ns = torch.ops.gankernels


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 accumulation for fp16/bf16/fp32, fp64 for fp64 (the weights are made in it)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _encode(kernel: Kernel, dim: int):
    family, params = kernel.encode(dim)
    return family, [float(p) for p in params]


def kernel_sum(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, weights: Optional[torch.Tensor] = None):
    """out_i = sum_j w_j k(x_i, y_j): [N] for weights [M] or None, [N, C] for weights [M, C]."""
    check_point_pair(x, y)
    check_kernel(kernel)
    check_weights(weights, y.shape[0], y, "y", columns=True)
    w = x.new_ones(y.shape[0], 1) if weights is None else weights.to(x.dtype).reshape(y.shape[0], -1)
    family, params = _encode(kernel, x.shape[1])
    out = _ops_ns.ksum(x, y, w, family, params)
    return out if weights is not None and weights.dim() == 2 else out.squeeze(1)


def kernel_flow(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, weights: Optional[torch.Tensor] = None):
    """out_i = sum_j w_j grad_a k(a, y_j) at a = x_i: the kernel's flow field, [N, D]."""
    check_point_pair(x, y)
    check_kernel(kernel)
    check_weights(weights, y.shape[0], y, "y")
    w = x.new_ones(y.shape[0], 1) if weights is None else weights.to(x.dtype).unsqueeze(1)
    family, params = _encode(kernel, x.shape[1])
    return _ops_ns.kflow(x, y, x.new_ones(x.shape[0], 1), w, family, params)


def _self_diagonal(kernel: Kernel, z: torch.Tensor) -> torch.Tensor:
    """k(z_a, z_a) for every row (differentiable for dot-product kernels)."""
    if kernel.radial:
        return z.new_full((z.shape[0],), kernel_at_zero(kernel))
    t = (z * z).sum(1)
    if isinstance(kernel, Polynomial):
        gamma = 1.0 / z.shape[1] if kernel.gamma is None else kernel.gamma
        return (gamma * t + kernel.coef0) ** kernel.degree
    return t  # Linear


def kernel_at_zero(kernel: Kernel) -> float:
    """phi(0) = k(a, a) of a radial kernel (each family defines it in kernels.py)."""
    return kernel.at_zero()


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, estimator: str = "biased") -> torch.Tensor:
    """Squared MMD between the samples x [N, D] and y [M, D] (0-dim tensor).

    ``"biased"``: the V-statistic.  ``"unbiased"``: the U-statistic (XX and YY
    sums without i = i', divided by N(N-1) and M(M-1)); it can be negative.
    """
    check_point_pair(x, y)
    check_kernel(kernel)
    check_choice(estimator, "estimator", ("biased", "unbiased"))
    n, m = x.shape[0], y.shape[0]
    if estimator == "unbiased" and (n < 2 or m < 2):
        raise ValueError(f"the unbiased estimator needs at least 2 samples in x and y, got N={n}, M={m}")
    family, params = _encode(kernel, x.shape[1])
    if torch.is_grad_enabled() and x.requires_grad != y.requires_grad:
        # One side needs no gradient (a generator step against fixed real features): three calls instead
        # of one symmetric pass over [x; y], so that the gradient work skips the constant block and the
        # constant side's flow (per N^2 D with N = M: 4 tile GEMMs instead of 6).
        a, b = (x, y) if x.requires_grad else (y, x)
        return _mmd2_one_side(a, b, kernel, estimator, family, params).to(x.dtype)
    acc = _acc_dtype(x)
    za = torch.cat([x, y], 0).to(acc)
    if estimator == "biased":
        v = torch.cat([x.new_full((n, 1), 1.0 / n, dtype=acc), x.new_full((m, 1), -1.0 / m, dtype=acc)])
        value, _, _ = _ops_ns.kform(za, None, v, v, family, params, [_needs_grad(za), False])
        return value.to(x.dtype)
    cxx, cyy, cxy = 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1)), -1.0 / (n * m)
    # pair weight C[g_a][g_b] = onehot(g_a) . W_b with W_b = column g_b of C
    w = torch.cat([x.new_tensor([[cxx, cxy]], dtype=acc).expand(n, 2), x.new_tensor([[cxy, cyy]], dtype=acc).expand(m, 2)])
    onehot = torch.cat([x.new_tensor([[1.0, 0.0]], dtype=acc).expand(n, 2), x.new_tensor([[0.0, 1.0]], dtype=acc).expand(m, 2)])
    full, _, _ = _ops_ns.kform(za, None, onehot, w, family, params, [_needs_grad(za), False])
    diag = _self_diagonal(kernel, za)
    diag_w = torch.cat([za.new_full((n,), cxx), za.new_full((m,), cyy)])
    return (full - (diag_w * diag).sum()).to(x.dtype)


def _needs_grad(t: torch.Tensor) -> bool:
    """Whether a forward should also compute t's gradient (kform): t requires grad and grad mode is on."""
    return torch.is_grad_enabled() and t.requires_grad


def _block_mean(a: torch.Tensor, b: Optional[torch.Tensor], kernel: Kernel, family: int, params, drop_diagonal: bool):
    """mean_ij k(a_i, b_j) (b None: over a's own pairs, without i = j when drop_diagonal), in a's acc dtype."""
    acc = _acc_dtype(a)
    a = a.to(acc)
    n = a.shape[0]
    m = n if b is None else b.shape[0]
    s, _, _ = _ops_ns.kform(a, None if b is None else b.to(acc), a.new_ones(n, 1), a.new_ones(m, 1), family, params,
                            [_needs_grad(a), False])
    if not drop_diagonal:
        return s / (n * m)
    return (s - _self_diagonal(kernel, a).sum()) / (n * (n - 1))


def _mmd2_one_side(a, b, kernel, estimator, family, params):
    """mmd2 where only ``a`` needs a gradient: the b-b block is a constant, computed without a graph."""
    unbiased = estimator == "unbiased"
    with torch.no_grad():
        kbb = _block_mean(b, None, kernel, family, params, unbiased)
    return (_block_mean(a, None, kernel, family, params, unbiased) + kbb
            - 2.0 * _block_mean(a, b.detach(), kernel, family, params, False))


def witness(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """The MMD witness function at z [K, D]: mean_i k(z, x_i) - mean_j k(z, y_j), [K]."""
    check_point_pair(x, y)
    check_point_pair(z, x, "z", "x")
    check_kernel(kernel)
    n, m = x.shape[0], y.shape[0]
    family, params = _encode(kernel, x.shape[1])
    acc = _acc_dtype(x)
    w = torch.cat([x.new_full((n, 1), 1.0 / n, dtype=acc), x.new_full((m, 1), -1.0 / m, dtype=acc)])
    centres = torch.cat([x, y], 0).to(acc)
    return _ops_ns.ksum(z.to(acc), centres, w, family, params).squeeze(1).to(z.dtype)


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: Optional[int] = None, subset_size: int = 1000,
        generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel Inception Distance: unbiased MMD^2 with Polynomial(3) (gamma = 1/D, coef0 = 1).

    ``subsets=None``: exact, from all pairs of all samples (N != M allowed): the unbiased
    estimate and an estimate of its standard deviation over independent draws of the two
    sets, sqrt(max(Var, 0)) with Var of ``gankernels.mmd2_and_variance(..., variance="complete")``
    (the U-statistic variance, unbiased, for any N and M; docs/ESTIMATORS.md -- Sutherland et
    al.'s N = M formula underestimates the spread at small N, by ~20-30 % at N = 20).  The std is
    nan when it cannot be estimated (fewer than 4 samples in a set).
    With ``subsets``: the torchmetrics protocol -- for each subset, ``subset_size`` rows
    drawn without replacement from each set (``torch.randperm``), then mean and std
    (population std, as torchmetrics) of the subset values.
    """
    check_point_pair(real, fake, "real", "fake")
    kernel = Polynomial(3)
    if subsets is None:
        from .variance import mmd2_and_variance
        n, m = real.shape[0], fake.shape[0]
        if n < 2 or m < 2:
            raise ValueError(f"kid needs at least 2 samples in real and in fake, got {n} and {m}")
        if min(n, m) < 4:
            value = mmd2(real, fake, kernel, "unbiased")
            return value, torch.full_like(value, float("nan"))
        value, var = mmd2_and_variance(real, fake, kernel, "complete")
        return value.to(real.dtype), var.clamp_min(0.0).sqrt().to(real.dtype)
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be a positive integer or None, got {subsets!r}")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an integer >= 2, got {subset_size!r}")
    if subset_size > real.shape[0] or subset_size > fake.shape[0]:
        raise ValueError(
            f"subset_size ({subset_size}) must not exceed the number of samples "
            f"(real: {real.shape[0]}, fake: {fake.shape[0]})"
        )
    values = []
    for _ in range(subsets):
        r = real[torch.randperm(real.shape[0], generator=generator)[:subset_size].to(real.device)]
        f = fake[torch.randperm(fake.shape[0], generator=generator)[:subset_size].to(fake.device)]
        values.append(mmd2(r, f, kernel, "unbiased"))
    values = torch.stack(values)
    return values.mean(), values.std(unbiased=False)
