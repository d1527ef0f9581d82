"""Kernel-smoothed score: the score of the data smoothed by a Gaussian kernel.

Formula (docs/MATH.md §3), x [N, D] queries, y [M, D] centres, w [M] >= 0 optional:

    smoothed_score(x, y, sigma, w)_i = grad_a log sum_j w_j exp(-|a - y_j|^2 / 2 sigma^2) at a = x_i
                                     = sum_j p_ij (y_j - x_i) / sigma^2,
    p_ij = softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2)

-- the noise-level-sigma score of diffusion models and the kernel-smoothed score
of the "GANs Settle Scores!" view of IPM-GANs.

What is fused: one flash-attention-style pass (``gankernels::smoothed_score``):
query blocks stream over centre tiles keeping a running row maximum, the
normaliser and the weighted centre sum in fp32 (fp64 for fp64), so nothing
N x M is stored and a query 1000 sigma from every centre gets the score of its
nearest centre instead of 0/0.  The op also returns the per-row log-normaliser
lse, which the backward (``gankernels::smoothed_score_backward``, one more
pass) uses to recompute p without a second log-sum-exp.  CPU kernels are C++
(``csrc/score.cpp``), CUDA kernels Triton (``triton_score.py``).

Memory: O((N + M) D).  Limits: differentiable once (x, y and weights);
accumulation in fp32 for half inputs, and the weights are passed to the op in
the accumulation dtype (a weight below fp16's range stays positive); weights
must be non-negative and not all zero (checked where they have values: not on
meta or fake tensors, nor while torch.compile traces).
"""
from __future__ import annotations

from typing import Optional

import torch

from . import _ops  # noqa: F401  (the extension and every registration)
from ._checks import check_positive
from .pairwise import _acc_dtype, _check_pair

__all__ = ["smoothed_score"]

ops = torch.ops.gankernels


def _has_values(t: torch.Tensor) -> bool:
    """False for tensors without data: meta, fake (torch.compile / FakeTensorMode), traced."""
    if t.device.type == "meta" or torch.compiler.is_compiling():
        return False
    from torch._subclasses.fake_tensor import is_fake
    return not is_fake(t)


def _check_weights(weights, y: torch.Tensor) -> Optional[torch.Tensor]:
    """Weights in the accumulation dtype (fp32 for half y: a weight of 1e-8 is 0 in fp16), or None."""
    if weights is None:
        return None
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a torch.Tensor or None, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating tensor, got {weights.dtype}")
    if weights.device != y.device:
        raise ValueError(f"weights must be on the device of y, got {weights.device} and {y.device}")
    if weights.dim() != 1 or weights.shape[0] != y.shape[0]:
        raise ValueError(f"weights must have shape [{y.shape[0]}], got {tuple(weights.shape)}")
    w = weights.to(_acc_dtype(y))
    if _has_values(w):  # data-dependent checks (the CPU kernel repeats them)
        if bool((w < 0).any()):
            raise ValueError("weights must be non-negative")
        if bool((w.sum() == 0)):
            raise ValueError("weights must not all be zero")
    return w


def smoothed_score(x: torch.Tensor, y: torch.Tensor, sigma: float, weights: Optional[torch.Tensor] = None):
    """Score of the Gaussian-smoothed (weighted) empirical distribution of ``y`` at ``x``: [N, D].

    ``sum_j p_ij (y_j - x_i) / sigma^2`` with ``p_ij = softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2)``.
    Differentiable w.r.t. ``x``, ``y`` and ``weights`` (first order).
    """
    _check_pair(x, y)
    sigma = check_positive(sigma, "sigma")
    w = _check_weights(weights, y)
    score, _ = ops.smoothed_score(x, y, w, sigma)
    return score
