"""Plain PyTorch references: materialise the N x M Gram matrix, then reduce.

This module is the test oracle (run in float64) and the eager baseline of the
benchmarks.  Every function computes in the dtype it is given -- there is no
upcasting -- so running it in float16 gives the "naive same-dtype computation"
that the low-precision accuracy rule of the tests compares against.

What it computes (docs/MATH.md §1–2; ``x`` is ``[N, D]``, ``y`` is ``[M, D]``):

* ``gram(kernel, x, y)``: ``K[i, j] = k(x_i, y_j)``, written directly from the
  formulas of docs/MATH.md §1.  Squared distances use exact differences,
  ``s = sum_d (x_id - y_jd)^2`` (no ``|a|^2 + |b|^2 - 2 a.b`` expansion, so no
  cancellation), in row blocks so that the ``[rows, M, D]`` temporary stays
  bounded.  For the kernels with a kink at ``r = 0`` (Laplacian, Energy,
  Polyharmonic with ``eps = 0``) the root is a *safe* root: where ``s = 0`` the
  value is the limit and autograd gives a gradient and Hessian of exactly 0 (the
  convention of the engine), instead of ``inf * 0 = nan``.  Everything is twice
  differentiable by autograd, so gradients and Hessian-vector products of the
  reductions below come for free.
* ``kernel_sum``, ``kernel_flow`` (autograd of the Gram sum w.r.t. ``x``),
  ``mmd2`` (biased V- / unbiased U-statistic), ``witness``, ``kid`` (exact, or the
  torchmetrics subset protocol): same signatures and semantics as the public API.
* ``mmd2_and_variance(x, y, kernel, variance)``: the unbiased MMD^2 and the estimate
  of its variance (Sutherland et al. 2017 for N = M, or the complete U-statistic
  variance; docs/ESTIMATORS.md), written on the dense blocks K_XX, K_YY (diagonals
  zeroed) and K_XY; ``kid`` without subsets returns its square root as the std.
* ``pulling_away(s, eps)``: the EBGAN pulling-away term (docs/MATH.md §4) from the
  ``[N, N]`` matrix of squared cosine similarities, diagonal removed.
* ``eager_mmd2_gaussian(x, y, sigmas)``: the way common MMD-GAN code computes the
  biased Gaussian-mixture MMD^2 (``torch.cdist(...) ** 2``, ``exp`` per bandwidth,
  means of the XX, YY, XY blocks): the benchmark's eager baseline.
* ``smoothed_score(x, y, sigma, weights)``: autograd of the log of the smoothed
  density ``log sum_j w_j exp(-|x_i - y_j|^2 / 2 sigma^2)`` (``logsumexp`` over exact
  squared differences) -- the oracle of docs/MATH.md §3.
* ``eager_smoothed_score``: the score as eager code writes it (``cdist``, ``softmax``,
  ``p @ y``): the naive same-dtype reference and the benchmark baseline.

Memory: O(N M) for the Gram matrix (plus O(block * M * D) for the differences),
and autograd keeps several N x M temporaries -- fine for tests, and exactly the
cost the fused ops avoid.  Limits: no input validation beyond what the math
needs; slow; not meant for training.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from .kernels import Kernel, Linear, Polynomial

__all__ = [
    "gram", "sqdist", "radial_profile", "dot_profile", "kernel_sum", "kernel_flow", "mmd2", "witness", "kid",
    "eager_mmd2_gaussian", "smoothed_score", "eager_smoothed_score", "pulling_away", "mmd2_and_variance",
]

# Largest number of elements of one [rows, M, D] block of differences.
_BLOCK_ELEMENTS = 1 << 22


def sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` squared distances from exact differences (row blocks bound the memory)."""
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    rows = max(1, _BLOCK_ELEMENTS // max(1, m * d))
    if n <= rows:
        return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return torch.cat(
        [((xb[:, None, :] - y[None, :, :]) ** 2).sum(-1) for xb in x.split(rows)], dim=0
    )


def radial_profile(kernel: Kernel, s: torch.Tensor) -> torch.Tensor:
    """``phi(s)`` elementwise for a radial kernel, ``k(a, b) = phi(||a - b||^2)`` (``Kernel.profile``)."""
    if not (isinstance(kernel, Kernel) and kernel.radial):
        raise TypeError(f"kernel must be a radial gankernels kernel, got {type(kernel).__name__}")
    return kernel.profile(s)


def dot_profile(kernel: Kernel, t: torch.Tensor, dim: int) -> torch.Tensor:
    """``psi(t)`` elementwise for a dot-product kernel, ``k(a, b) = psi(a . b)``; ``dim`` = D resolves gamma."""
    if not isinstance(kernel, Kernel) or kernel.radial:
        raise TypeError(f"kernel must be a dot-product gankernels kernel, got {type(kernel).__name__}")
    return kernel.profile(t, dim)


def gram(kernel: Kernel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` matrix ``k(x_i, y_j)`` in the dtype of ``x``, twice differentiable."""
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a gankernels kernel, got {type(kernel).__name__}")
    if isinstance(kernel, (Polynomial, Linear)):
        return dot_profile(kernel, x @ y.T, x.shape[1])
    return radial_profile(kernel, sqdist(x, y))


def _weighted_rows(K: torch.Tensor, weights: Optional[torch.Tensor]) -> torch.Tensor:
    if weights is None:
        return K.sum(1)
    if weights.dim() not in (1, 2) or weights.shape[0] != K.shape[1]:
        raise ValueError(f"weights must be [M] or [M, C] with M = {K.shape[1]}, got {tuple(weights.shape)}")
    return K @ weights


def kernel_sum(x: torch.Tensor, y: torch.Tensor, kernel: Kernel,
               weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``out_i = sum_j w_j k(x_i, y_j)``: ``[N]`` for weights None or ``[M]``, ``[N, C]`` for ``[M, C]``."""
    return _weighted_rows(gram(kernel, x, y), weights)


def kernel_flow(x: torch.Tensor, y: torch.Tensor, kernel: Kernel,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[N, D]``: ``out_i = sum_j w_j grad_a k(a, y_j)`` at ``a = x_i`` (autograd of the Gram sum).

    Differentiable w.r.t. ``x``, ``y`` and ``weights`` when they require grad
    (``create_graph`` is used then), so it serves as the oracle of double backward.
    """
    if weights is not None and weights.dim() != 1:
        raise ValueError(f"weights must be [M], got {tuple(weights.shape)}")
    needs_graph = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, y, weights)
    )
    with torch.enable_grad():
        # A fresh node for x: only the first-argument role is differentiated,
        # even when y is the very same tensor as x.
        xa = x.view_as(x) if (needs_graph and x.requires_grad) else x.detach().requires_grad_(True)
        total = _weighted_rows(gram(kernel, xa, y), weights).sum()
        (g,) = torch.autograd.grad(total, xa, create_graph=needs_graph)
    return g


def _offdiag_mean(K: torch.Tensor) -> torch.Tensor:
    """sum_{i != i'} K_ii' / (n (n - 1)), as a mean (low-precision sums of n^2 terms overflow)."""
    n = K.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=K.device)
    return torch.where(eye, torch.zeros_like(K), K).mean() * (n / (n - 1))


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, estimator: str = "biased") -> torch.Tensor:
    """0-dim MMD^2: ``"biased"`` V-statistic or ``"unbiased"`` U-statistic (diagonals of XX, YY dropped).

    Written with block means, as common MMD-GAN code does.  The self-pairs ``i = i'``
    of the XX and YY blocks are coincident points; for the kernels with a kink there
    the gradient of ``k(x_i, x_i)`` is 0 by the safe root, which is also the true
    derivative (the value does not depend on ``x_i``).
    """
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = gram(kernel, x, x), gram(kernel, y, y), gram(kernel, x, y)
    if estimator == "biased":
        return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()
    if estimator == "unbiased":
        if n < 2 or m < 2:
            raise ValueError(f"the unbiased estimator needs N >= 2 and M >= 2, got N = {n}, M = {m}")
        return _offdiag_mean(kxx) + _offdiag_mean(kyy) - 2.0 * kxy.mean()
    raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")


def witness(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """``[K]``: ``mean_i k(z, x_i) - mean_j k(z, y_j)``."""
    return gram(kernel, z, x).mean(1) - gram(kernel, z, y).mean(1)


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: Optional[int] = None,
        subset_size: int = 1000, generator: Optional[torch.Generator] = None
        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel Inception Distance: unbiased MMD^2 with ``Polynomial(3)`` (gamma = 1/D, coef0 = 1).

    ``subsets=None``: exact over all samples, returns ``(value, std)`` with std the square root
    of ``mmd2_and_variance(..., "complete")``, clamped at 0 (nan with fewer than 4 samples in a set).  Otherwise the
    torchmetrics ``KernelInceptionDistance.compute`` protocol: per subset, draw
    ``torch.randperm(n, generator=generator)[:subset_size]`` for the real set, then
    the same for the fake set, compute the unbiased polynomial MMD^2; return the mean
    and the *population* standard deviation (``std(unbiased=False)``, as torchmetrics
    and torch-fidelity do) over subsets.
    """
    kernel = Polynomial(3)
    n, m = real.shape[0], fake.shape[0]
    if subsets is None:
        if min(n, m) < 4:
            value = mmd2(real, fake, kernel, "unbiased")
            return value, torch.full_like(value, float("nan"))
        value, var = mmd2_and_variance(real, fake, kernel, "complete")
        return value, var.clamp_min(0.0).sqrt()
    if subset_size > n or subset_size > m:
        raise ValueError(f"subset_size = {subset_size} exceeds the number of samples ({n} real, {m} fake)")
    scores = []
    for _ in range(subsets):
        ir = torch.randperm(n, generator=generator)[:subset_size].to(real.device)
        jf = torch.randperm(m, generator=generator)[:subset_size].to(fake.device)
        scores.append(mmd2(real[ir], fake[jf], kernel, "unbiased"))
    scores = torch.stack(scores)
    return scores.mean(), scores.std(unbiased=False)


def eager_mmd2_gaussian(x: torch.Tensor, y: torch.Tensor,
                        sigmas: Union[float, Sequence[float]]) -> torch.Tensor:
    """Biased Gaussian-mixture MMD^2 as common MMD-GAN code writes it (benchmark baseline).

    ``torch.cdist(...) ** 2`` for the XX, XY, YY blocks, ``sum_sigma exp(-d / (2 sigma^2))``,
    means, all in the input dtype.  cdist uses the matrix-product expansion for large
    inputs, so this baseline can be inaccurate (even slightly negative distances).
    """
    if isinstance(sigmas, (int, float)):
        sigmas = (sigmas,)
    dxx = torch.cdist(x, x) ** 2
    dxy = torch.cdist(x, y) ** 2
    dyy = torch.cdist(y, y) ** 2
    kxx = kxy = kyy = 0.0
    for sig in sigmas:
        g = 1.0 / (2.0 * float(sig) ** 2)
        kxx = kxx + torch.exp(-g * dxx)
        kxy = kxy + torch.exp(-g * dxy)
        kyy = kyy + torch.exp(-g * dyy)
    return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()


def smoothed_score(x: torch.Tensor, y: torch.Tensor, sigma: float,
                   weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """grad_x of sum_i log sum_j w_j exp(-|x_i - y_j|^2 / 2 sigma^2) by autograd (differentiable again)."""
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_(True)
        logits = -sqdist(xg, y) / (2.0 * sigma * sigma)
        if weights is not None:
            logits = logits + torch.log(weights)[None, :]
        (g,) = torch.autograd.grad(torch.logsumexp(logits, dim=1).sum(), xg, create_graph=True)
    return g


def eager_smoothed_score(x: torch.Tensor, y: torch.Tensor, sigma: float,
                         weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2) @ y - x) / sigma^2, as eager code writes it.

    cdist for float32 / float64; float16 / bfloat16 (no CPU cdist) use exact differences in that dtype.
    """
    d2 = torch.cdist(x, y) ** 2 if x.dtype in (torch.float32, torch.float64) else sqdist(x, y)
    logits = -d2 / (2.0 * sigma * sigma)
    if weights is not None:
        logits = logits + torch.log(weights)[None, :]
    p = torch.softmax(logits, dim=1)
    return (p @ y - x) / (sigma * sigma)


def pulling_away(s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """EBGAN pulling-away term: mean over i != j of (sh_i . sh_j)^2, sh_i = s_i / max(|s_i|, eps).

    Materialises the ``[N, N]`` matrix of squared cosine similarities and drops its
    diagonal (a mean, not a sum, so that float16 does not overflow).  Differentiable by
    autograd; a zero row gets gradient 0 (the norm's gradient is 0 there and
    ``clamp_min`` passes none below eps).
    """
    n = s.shape[0]
    if n < 2:
        raise ValueError(f"pulling_away needs N >= 2, got N = {n}")
    sh = s / torch.linalg.vector_norm(s, dim=1, keepdim=True).clamp_min(eps)
    return _offdiag_mean((sh @ sh.T) ** 2)


def mmd2_and_variance(x: torch.Tensor, y: torch.Tensor, kernel: Kernel, variance: str = "auto"
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(unbiased MMD^2, estimate of its variance) from the dense kernel blocks (the oracle of
    ``gankernels.mmd2_and_variance``; formulas in docs/ESTIMATORS.md).

    ``"sutherland"`` (N = M): the estimator of Sutherland et al. 2017 on the blocks with
    zeroed diagonals.  ``"complete"``: the exact U-statistic variance
    [4(n-2) z1x + 2 z2x]/(n)_2 + [4(m-2) z1y + 2 z2y]/(m)_2 + 4 [z11 + (m-1) z10 + (n-1) z01]/(nm)
    - 8 xi_x / n - 8 xi_y / m, each covariance estimated as (mean over distinct index tuples of
    the product) - (unbiased estimate of the product of the means).  ``"auto"``: sutherland
    when N = M.  Differentiable by autograd.
    """
    n, m = x.shape[0], y.shape[0]
    if variance == "auto":
        variance = "sutherland" if n == m else "complete"
    kxx, kyy, kxy = gram(kernel, x, x), gram(kernel, y, y), gram(kernel, x, y)
    kxx = kxx - torch.diag_embed(kxx.diagonal())
    kyy = kyy - torch.diag_embed(kyy.diagonal())
    rx, ry = kxx.sum(1), kyy.sum(1)           # row sums without the diagonal
    cx, cy = kxy.sum(1), kxy.sum(0)           # K_XY row sums (over y) and column sums (over x)
    sxx, syy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    qxx, qyy, qxy = (kxx ** 2).sum(), (kyy ** 2).sum(), (kxy ** 2).sum()
    mmd = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)
    if variance == "sutherland":
        if n != m:
            raise ValueError("sutherland needs N = M")
        k = float(n)
        var = (2.0 / (k ** 2 * (k - 1) ** 2) * (2 * rx @ rx - qxx + 2 * ry @ ry - qyy)
               - (4 * k - 6) / (k ** 3 * (k - 1) ** 3) * (sxx ** 2 + syy ** 2)
               + 4 * (k - 2) / (k ** 3 * (k - 1) ** 2) * (cx @ cx + cy @ cy)
               - 4 * (k - 3) / (k ** 3 * (k - 1) ** 2) * qxy
               - (8 * k - 12) / (k ** 5 * (k - 1)) * sxy ** 2
               + 8 / (k ** 3 * (k - 1)) * ((sxx + syy) * sxy / k - rx @ cx - ry @ cy))
        return mmd, var

    def ff(a, j):
        out = 1.0
        for i in range(j):
            out *= a - i
        return out

    def one_sample(r, s, q, a):
        """(z1, z2) of the within-sample U-statistic: E[k12 k13] - mu^2, E[k12^2] - mu^2."""
        # products over distinct (i, i', l, l'): all pairs minus those sharing one or two indices
        mu2 = (s * s - 4.0 * (r @ r - q) - 2.0 * q) / ff(a, 4)
        return (r @ r - q) / ff(a, 3) - mu2, q / ff(a, 2) - mu2

    z1x, z2x = one_sample(rx, sxx, qxx, n)
    z1y, z2y = one_sample(ry, syy, qyy, m)
    mu2xy = (sxy * sxy - cx @ cx - cy @ cy + qxy) / (ff(n, 2) * ff(m, 2))
    z11 = qxy / (n * m) - mu2xy
    z10 = (cx @ cx - qxy) / (n * ff(m, 2)) - mu2xy      # same x, two different y
    z01 = (cy @ cy - qxy) / (ff(n, 2) * m) - mu2xy      # same y, two different x
    # Cov(k(X1, X2), k(X1, Y)) and Cov(k(Y1, Y2), k(X, Y1))
    xi_x = (rx @ cx) / (ff(n, 2) * m) - (sxx * sxy - 2.0 * rx @ cx) / (ff(n, 3) * m)
    xi_y = (ry @ cy) / (ff(m, 2) * n) - (syy * sxy - 2.0 * ry @ cy) / (ff(m, 3) * n)
    var = ((4 * (n - 2) * z1x + 2 * z2x) / ff(n, 2) + (4 * (m - 2) * z1y + 2 * z2y) / ff(m, 2)
           + 4 * (z11 + (m - 1) * z10 + (n - 1) * z01) / (n * m) - 8 * xi_x / n - 8 * xi_y / m)
    return mmd, var
