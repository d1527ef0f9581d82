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
from ._checks import check_weight_values, score_args
from .pairwise import _acc_dtype

__all__ = ["smoothed_score"]

ops = torch.ops.gankernels


def smoothed_score(x: torch.Tensor, y: torch.Tensor, sigma: float, weights: Optional[torch.Tensor] = None):
    """Score of the Gaussian-smoothed (weighted) empirical distribution of ``y`` at ``x``: [N, D].

    ``sum_j p_ij (y_j - x_i) / sigma^2`` with ``p_ij = softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2)``.
    Differentiable w.r.t. ``x``, ``y`` and ``weights`` (first order).
    """
    sigma = score_args(x, y, weights, sigma)
    w = None
    if weights is not None:
        w = weights.to(_acc_dtype(y))  # the accumulation dtype: a weight of 1e-8 is 0 in fp16
        check_weight_values(w)
    score, _ = ops.smoothed_score(x, y, w, sigma)
    return score
