"""The unbiased MMD^2 with an estimate of its variance, and the t-statistic MMD^2 / sqrt(Var).

``mmd2_and_variance(x, y, kernel)`` returns the unbiased (U-statistic) MMD^2 and an
estimate of its variance over independent draws of the samples;
``mmd2_ratio(x, y, kernel, min_var)`` returns MMD^2 / sqrt(max(Var, min_var)), the
objective MMD-GAN code optimises to choose kernels (``mix_rbf_mmd2_and_ratio``; Sutherland
et al. 2017, "Generative models and model criticism via optimized maximum mean
discrepancy").  Both are differentiable (twice, as the engine ops are) w.r.t. x and y.
The formulas and their derivation are in docs/ESTIMATORS.md; in short, with the
diagonals of K_XX and K_YY set to 0,

    rx_i = sum_i' K_XX[i, i']   cx_i = sum_j K_XY[i, j]   cy_j = sum_i K_XY[i, j]   ry_j = sum_j' K_YY[j, j']
    S_xx = sum rx, S_yy = sum ry, S_xy = sum cx          (the block sums)
    Q_xx = sum K_XX^2, Q_yy = sum K_YY^2, Q_xy = sum K_XY^2  (squared-kernel block sums)
    R_xx = rx.rx, R_yy = ry.ry, R_x = cx.cx, R_y = cy.cy, P_x = rx.cx, P_y = ry.cy

    MMD^2_u = S_xx / (n (n-1)) + S_yy / (m (m-1)) - 2 S_xy / (n m)

``variance="sutherland"`` (N = M = m; the default when N = M) is the estimator of
Sutherland et al. 2017 (appendix; ``_mmd2_and_variance`` of their code):

    Var = 2 / (m^2 (m-1)^2) (2 R_xx - Q_xx + 2 R_yy - Q_yy) - (4m - 6) / (m^3 (m-1)^3) (S_xx^2 + S_yy^2)
        + 4 (m-2) / (m^3 (m-1)^2) (R_x + R_y) - 4 (m-3) / (m^3 (m-1)^2) Q_xy - (8m - 12) / (m^5 (m-1)) S_xy^2
        + 8 / (m^3 (m-1)) ((S_xx + S_yy) S_xy / m - P_x - P_y)

``variance="complete"`` (any N, M >= 4; the default when N != M) is the exact variance
of the two-sample U-statistic, written with its first-order (zeta_1, O(1/N)) and
second-order (zeta_2, O(1/N^2)) Hoeffding terms, each zeta replaced by its unbiased
estimate over distinct indices ((n)_k = n (n-1) ... (n-k+1)):

    Var = [4 (n-2) z1x + 2 z2x] / (n)_2 + [4 (m-2) z1y + 2 z2y] / (m)_2
        + 4 [z11 + (m-1) z10 + (n-1) z01] / (n m) - 8 xi_x / n - 8 xi_y / m

    z1x = (R_xx - Q_xx) / (n)_3 - mu2_xx       z2x = Q_xx / (n)_2 - mu2_xx
    mu2_xx = (S_xx^2 - 4 R_xx + 2 Q_xx) / (n)_4                      (and the same for y)
    z11 = Q_xy / (n m) - mu2_xy    z10 = (R_x - Q_xy) / (n (m)_2) - mu2_xy    z01 = (R_y - Q_xy) / ((n)_2 m) - mu2_xy
    mu2_xy = (S_xy^2 - R_x - R_y + Q_xy) / ((n)_2 (m)_2)
    xi_x = P_x / ((n)_2 m) - (S_xx S_xy - 2 P_x) / ((n)_3 m)          (and xi_y with x <-> y)

Both variance estimates are unbiased-type estimates and can be negative for small
samples; ``kid`` clamps at 0 before the square root, ``mmd2_ratio`` at ``min_var``.

What is fused: without autograd (evaluation, ``kid``) every sum above comes from ONE
``gankernels::ksum_and_square`` pass over z = [x; y] in self mode (tiles J >= I, mirrored) with the two
indicator weight columns (x rows, y rows): each tile's kernel values k_ij give the row sums
(rx + k(x_i, x_i), cx, cy, ry + k(y_j, y_j)) and, squared in place, the Q sums, so the pair GEMM is paid
once.  When x or y requires grad, two or three differentiable symmetric ``ksum`` calls instead: one with the
kernel and one per term of the kernel's square written as a sum of kernels of the same families
(``squared_kernel``; Energy from the first two moments).  CUDA: ``ksum_and_square``'s Triton launcher
squares in the same launch (over all N x N tiles, as its ``ksum``).  Memory O((N + M) D); nothing N x M.
The O(N + M) combination is done in float64 (the terms cancel to O(1/N) of their size).
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch

from . import _ops  # noqa: F401  (registrations)
from . import kernels as K
from ._checks import check_kernel, check_point_pair, check_real, resolve_variance
from .pairwise import _acc_dtype, _encode, _self_diagonal

__all__ = ["mmd2_and_variance", "mmd2_ratio", "squared_kernel"]

_ops_ns = torch.ops.gankernels


def squared_kernel(kernel: K.Kernel, dim: int) -> List[Tuple[K.Kernel, float]]:
    """k(a, b)^2 as sum_t c_t k_t(a, b) with kernels k_t of the engine's families: [(k_t, c_t), ...].

    Gaussian and Laplacian mixtures: the cross term of bandwidths s_a, s_b is one kernel
    with 1/s^2 = 1/s_a^2 + 1/s_b^2 (Gaussian) or 1/s = 1/s_a + 1/s_b (Laplacian), counted
    twice for a != b.  Polynomial (g a.b + c)^d: degree 2d (g resolved for ``dim``);
    Linear: (a.b)^2.  Rational quadratic and inverse multiquadric with one bandwidth:
    exponent doubled (RQ: alpha -> 2 alpha, l -> l / sqrt 2; IMQ: beta -> 2 beta).
    Energy (-|a - b|)^2 = |a - b|^2 is handled from the first two moments (``[]`` here).
    Raises NotImplementedError for the rest: mixtures of rational quadratics or inverse
    multiquadrics (their cross terms are no kernel of a family) and Polyharmonic.
    """
    if isinstance(kernel, (K.Gaussian, K.Laplacian)):
        s = kernel.sigmas
        combine = ((lambda a, b: 1.0 / math.sqrt(1.0 / (a * a) + 1.0 / (b * b))) if isinstance(kernel, K.Gaussian)
                   else (lambda a, b: a * b / (a + b)))
        cls = type(kernel)
        terms = [(cls(sigmas=tuple(combine(a, a) for a in s)), 1.0)]
        cross = tuple(combine(s[i], s[j]) for i in range(len(s)) for j in range(i + 1, len(s)))
        if cross:
            terms.append((cls(sigmas=cross), 2.0))
        return terms
    if isinstance(kernel, K.Polynomial):
        gamma = 1.0 / dim if kernel.gamma is None else kernel.gamma
        return [(K.Polynomial(2 * kernel.degree, gamma, kernel.coef0), 1.0)]
    if isinstance(kernel, K.Linear):
        return [(K.Polynomial(2, 1.0, 0.0), 1.0)]
    if isinstance(kernel, K.RationalQuadratic):
        if len(kernel.alphas) != 1:
            raise NotImplementedError(
                "the variance needs the squared kernel: a RationalQuadratic mixture of several alphas squares to "
                "cross terms that are no rational quadratic; use one alpha or a Gaussian mixture")
        return [(K.RationalQuadratic(2.0 * kernel.alphas[0], kernel.lengthscale / math.sqrt(2.0)), 1.0)]
    if isinstance(kernel, K.InverseMultiquadric):
        if len(kernel.scales) != 1:
            raise NotImplementedError(
                "the variance needs the squared kernel: an InverseMultiquadric mixture of several scales squares to "
                "cross terms that are no inverse multiquadric; use one scale")
        return [(K.InverseMultiquadric(kernel.scales, 2.0 * kernel.beta), 1.0)]
    if isinstance(kernel, K.Energy):
        return []
    raise NotImplementedError(
        f"the variance needs the squared kernel, and the square of {type(kernel).__name__} is no kernel of the "
        "engine's families (supported: Gaussian, Laplacian, Polynomial, Linear, Energy, and RationalQuadratic / "
        "InverseMultiquadric with one bandwidth)")


def _energy_squared_blocks(z: torch.Tensor, n: int):
    """sum over all ordered pairs of |a - b|^2 in the XX, YY, XY blocks, from the first two moments
    (about the common mean, so that far-from-origin inputs do not cancel)."""
    z = z - z.mean(0)
    x, y = z[:n], z[n:]
    m = y.shape[0]
    nx, ny = (x * x).sum(), (y * y).sum()
    sx, sy = x.sum(0), y.sum(0)
    qxx = 2.0 * n * nx - 2.0 * (sx * sx).sum()
    qyy = 2.0 * m * ny - 2.0 * (sy * sy).sum()
    qxy = m * nx + n * ny - 2.0 * (sx * sy).sum()
    return qxx, qyy, qxy


def _moments(x: torch.Tensor, y: torch.Tensor, kernel: K.Kernel, fused=None):
    """The sums of the module docstring, float64: (rx, cx, cy, ry, Q_xx, Q_yy, Q_xy).

    ``fused``: one ``ksum_and_square`` pass (not differentiable); None: fused unless autograd needs x or y."""
    n, m = x.shape[0], y.shape[0]
    terms = squared_kernel(kernel, x.shape[1])  # also refuses the kernels the variance does not support
    if fused is None:
        fused = not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad))
    acc = _acc_dtype(x)
    z = torch.cat([x, y], 0).to(acc)
    onehot = torch.cat([z.new_tensor([[1.0, 0.0]]).expand(n, 2), z.new_tensor([[0.0, 1.0]]).expand(m, 2)])
    family, params = _encode(kernel, x.shape[1])
    diag = _self_diagonal(kernel, z).double()
    d2 = diag * diag  # k(a, a)^2: the diagonal of the squared kernel
    if fused:
        s, q = (t.double() for t in _ops_ns.ksum_and_square(z, onehot, family, params))
        qxx, qxy, qyy = q[:n, 0].sum() - d2[:n].sum(), q[:n, 1].sum(), q[n:, 1].sum() - d2[n:].sum()
    else:
        s = _ops_ns.ksum(z, None, onehot, family, params).double()
        if isinstance(kernel, K.Energy):
            qxx, qyy, qxy = (q.double() for q in _energy_squared_blocks(z, n))
        else:
            qxx = qyy = qxy = 0.0
            for kt, coef in terms:
                ft, pt = _encode(kt, x.shape[1])
                s2 = _ops_ns.ksum(z, None, onehot, ft, pt).double()
                qxx = qxx + coef * s2[:n, 0].sum()
                qxy = qxy + coef * s2[:n, 1].sum()
                qyy = qyy + coef * s2[n:, 1].sum()
            qxx, qyy = qxx - d2[:n].sum(), qyy - d2[n:].sum()
    rx, cx = s[:n, 0] - diag[:n], s[:n, 1]
    cy, ry = s[n:, 0], s[n:, 1] - diag[n:]
    return rx, cx, cy, ry, qxx, qyy, qxy


def _ff(n: int, k: int) -> float:
    """Falling factorial n (n-1) ... (n-k+1)."""
    out = 1.0
    for i in range(k):
        out *= n - i
    return out


def variance_from_moments(rx, cx, cy, ry, qxx, qyy, qxy, variance: str):
    """(MMD^2_u, Var) from the sums (see the module docstring); shared by the fused op only."""
    n, m = rx.shape[0], ry.shape[0]
    sxx, syy, sxy = rx.sum(), ry.sum(), cx.sum()
    rxx, ryy, r_x, r_y = rx.dot(rx), ry.dot(ry), cx.dot(cx), cy.dot(cy)
    px, py = rx.dot(cx), ry.dot(cy)
    mmd2 = sxx / _ff(n, 2) + syy / _ff(m, 2) - 2.0 * sxy / (n * m)
    if variance == "sutherland":
        k = float(n)
        var = (2.0 / (k ** 2 * (k - 1) ** 2) * (2 * rxx - qxx + 2 * ryy - qyy)
               - (4 * k - 6) / (k ** 3 * (k - 1) ** 3) * (sxx ** 2 + syy ** 2)
               + 4 * (k - 2) / (k ** 3 * (k - 1) ** 2) * (r_x + r_y)
               - 4 * (k - 3) / (k ** 3 * (k - 1) ** 2) * qxy
               - (8 * k - 12) / (k ** 5 * (k - 1)) * sxy ** 2
               + 8 / (k ** 3 * (k - 1)) * ((sxx + syy) * sxy / k - px - py))
        return mmd2, var
    mu2x = (sxx ** 2 - 4 * rxx + 2 * qxx) / _ff(n, 4)
    mu2y = (syy ** 2 - 4 * ryy + 2 * qyy) / _ff(m, 4)
    z1x, z2x = (rxx - qxx) / _ff(n, 3) - mu2x, qxx / _ff(n, 2) - mu2x
    z1y, z2y = (ryy - qyy) / _ff(m, 3) - mu2y, qyy / _ff(m, 2) - mu2y
    mu2xy = (sxy ** 2 - r_x - r_y + qxy) / (_ff(n, 2) * _ff(m, 2))
    z11 = qxy / (n * m) - mu2xy
    z10 = (r_x - qxy) / (n * _ff(m, 2)) - mu2xy
    z01 = (r_y - qxy) / (_ff(n, 2) * m) - mu2xy
    xi_x = px / (_ff(n, 2) * m) - (sxx * sxy - 2 * px) / (_ff(n, 3) * m)
    xi_y = py / (_ff(m, 2) * n) - (syy * sxy - 2 * py) / (_ff(m, 3) * n)
    var = ((4 * (n - 2) * z1x + 2 * z2x) / _ff(n, 2) + (4 * (m - 2) * z1y + 2 * z2y) / _ff(m, 2)
           + 4 * (z11 + (m - 1) * z10 + (n - 1) * z01) / (n * m) - 8 * xi_x / n - 8 * xi_y / m)
    return mmd2, var


def _out_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def mmd2_and_variance(x: torch.Tensor, y: torch.Tensor, kernel: K.Kernel, variance: str = "auto"
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(unbiased MMD^2, estimate of its variance) of x [N, D] against y [M, D], two 0-dim tensors.

    ``variance``: ``"sutherland"`` (N = M only; Sutherland et al. 2017, as
    ``mix_rbf_mmd2_and_ratio``), ``"complete"`` (any N, M >= 4: the exact variance of the
    U-statistic with its first- and second-order terms estimated without bias), or
    ``"auto"`` (sutherland when N = M, else complete).  Formulas: the module docstring
    and docs/ESTIMATORS.md.  The variance estimate can be negative for small samples.

    Differentiable (twice) w.r.t. x and y (two symmetric ``ksum`` passes over [x; y], three
    for Gaussian / Laplacian mixtures); without autograd one ``ksum_and_square`` pass;
    O((N + M) D) memory.  The results are in x's dtype
    (float32 for float16 / bfloat16 inputs).  NotImplementedError for kernels whose
    square is no kernel of the engine's families (``squared_kernel``).
    """
    check_point_pair(x, y)
    check_kernel(kernel)
    variance = resolve_variance(variance, x.shape[0], y.shape[0])
    mmd2, var = variance_from_moments(*_moments(x, y, kernel), variance)
    out = _out_dtype(x)
    return mmd2.to(out), var.to(out)


def mmd2_ratio(x: torch.Tensor, y: torch.Tensor, kernel: K.Kernel, min_var: float = 1e-8,
               variance: str = "auto") -> torch.Tensor:
    """MMD^2_u / sqrt(max(Var, min_var)): the t-statistic that MMD-GAN kernel learning maximises
    (``mix_rbf_mmd2_and_ratio``, whose default floor is also 1e-8).  0-dim, differentiable;
    see ``mmd2_and_variance``."""
    min_var = check_real(min_var, "min_var", "positive")
    mmd2, var = mmd2_and_variance(x, y, kernel, variance)
    return mmd2 / torch.sqrt(torch.clamp(var, min=min_var))
