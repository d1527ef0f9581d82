"""EBGAN pulling-away term (docs/MATH.md §4), fused, with both exact algorithms.

Formula, for codes ``s`` ``[N, D]`` (N >= 2)::

    PT = 1 / (N (N - 1)) * sum_{i != j} (sh_i . sh_j)^2,    sh_i = s_i / max(|s_i|, eps)

(Zhao et al., EBGAN: rows normalised, the diagonal i = j left out.  Some public
code normalises over the batch dimension or keeps the diagonal; this is the
paper's definition.)

Two exact algorithms, registered as ``gankernels::pulling_away(s, eps, algorithm)``
(0-dim result) and ``gankernels::pulling_away_backward(grad, s, eps, algorithm)``
(``[N, D]``), CPU in C++ (``csrc/pulling_away.cpp``), CUDA in Triton
(``triton_pulling_away.py``):

* ``"gram"`` (op code 0), O(N^2 D): tiles of Sh Sh^T are squared and summed
  while in cache, the pairs i = j skipped inside the diagonal tiles (the diagonal
  term removed exactly, no rounding residue to subtract); the backward forms
  H_i = sum_{j != i} (sh_i . sh_j) sh_j tile by tile.
* ``"covariance"`` (op code 1), O(N D^2): G = Sh^T Sh (D x D) and
  sum_{i,j} (sh_i . sh_j)^2 = |G|_F^2, so PT = (|G|_F^2 - sum_i |sh_i|^4) / (N (N - 1)),
  the diagonal term subtracted explicitly; backward H_i = G sh_i - |sh_i|^2 sh_i.

Both backward passes end with dPT/dsh_i = 4 grad H_i / (N (N - 1)) chained
through the normalisation: ds_i = (dsh_i - (dsh_i . sh_i) sh_i) / |s_i| where
|s_i| >= eps, dsh_i / eps for rows shorter than eps.

Cost model (``algorithm="auto"``): the covariance form costs ~2 N D^2 flops
forward (6 N D^2 forward + backward), the Gram form ~N^2 D forward (its
symmetric half; 5 N^2 D forward + backward).  ``auto`` takes the covariance form
when 2 D <= N, else the Gram form.  The threshold is also where the covariance
form stays accurate: it subtracts sum_i |sh_i|^4 (about N) from |G|_F^2 >= N^2 / D,
so for 2 D <= N the difference is at least half of |G|_F^2 and at most one bit
is lost to cancellation.  For N < D the covariance form loses about
log2(1 + D / N) bits on typical codes and everything on near-orthogonal ones
(PT ~ 0 while |G|_F^2 ~ N); the Gram form has no cancellation at all.  Either
way the absolute error stays within a few roundings of |G|_F^2 / (N (N - 1)),
the scale the tests use as tolerance.

What is fused: the normalisation into the GEMM passes (the covariance form
normalises each row block in cache right before its GEMM; the Gram form writes Sh
once), the squaring and summing into the Gram tiles' epilogue, the gradient's
projection into the pass that produces it (see the C++ and Triton modules).  The
backward recomputes the norms (and G) instead of saving anything.
Memory: O(N D + D^2) -- the gradient, Sh for the Gram form, per-thread D x D
(covariance) or tile scratch; nothing N x N is allocated.
Accumulation: fp32 for fp16 / bf16 / fp32 inputs, fp64 for fp64 inputs (every
GEMM and tile); row norms, the sums of G's row blocks and the final scalar
reductions in fp64.  The result has the input dtype.  Deterministic (fixed-order
reductions; on the CPU for a given thread count).

Tested accuracy (tests/test_pulling_away.py, N in {2, 3, 127, 1023}, D in
{1, 3, 300}, both algorithms), against a float64 oracle on the same rounded input,
with scale = |G|_F^2 / (N (N - 1)) for the value and the magnitude of the summed
gradient terms (diagonal included) for the gradient: fp64 within 1e-10 * scale;
fp32 / fp16 / bf16 within twice the error of the plain formula run in that dtype
plus 1e-6 * scale (fp32) or 2 ulps * scale (fp16, bf16).

Limits and conventions:

* A zero row (s_i = 0) gives sh_i = 0: its pairs add 0 to PT and its gradient is
  exactly 0 (finite); any row with |s_i| < eps is scaled by 1 / eps instead of
  normalised (sh_i = s_i / eps, |sh_i| < 1).  At |s_i| = eps exactly the row
  counts as normalised (as ``clamp_min`` does).  eps is applied in the fp32 / fp64
  accumulation, so it works for fp16 inputs too (in plain fp16, eps = 1e-8 rounds
  to 0 and a zero row gives 0 / 0 = NaN).
* NaN or inf anywhere in s gives NaN for PT and for the whole gradient.
* First-order autograd only: the backward op is not differentiable (a clear
  error on double backward).
* ``eps`` must be a positive finite float; on fp64 inputs, rows with norms above
  ~1e154 overflow (the row norms are accumulated in fp64).
"""
from __future__ import annotations

import torch

from . import _ops  # noqa: F401  (the extension and every registration)
from ._checks import check_choice, check_real, pulling_away_points

__all__ = ["pulling_away", "choose_algorithm", "ALGORITHMS"]

ALGORITHMS = {"gram": 0, "covariance": 1}
ALGORITHM_NAMES = ("auto", *ALGORITHMS)  # what the ``algorithm`` argument takes


def choose_algorithm(n: int, d: int) -> str:
    """The cost model of ``algorithm="auto"``: ``"covariance"`` when 2 D <= N, else ``"gram"``."""
    return "covariance" if 2 * d <= n else "gram"


def pulling_away(s: torch.Tensor, eps: float = 1e-8, algorithm: str = "auto") -> torch.Tensor:
    """The EBGAN pulling-away term of the rows of ``s`` ``[N, D]`` (0-dim tensor, s's dtype).

    PT = sum_{i != j} (sh_i . sh_j)^2 / (N (N - 1)) with sh_i = s_i / max(|s_i|, eps).
    ``algorithm``: ``"auto"`` (cost model, see ``choose_algorithm``), ``"gram"`` or ``"covariance"``.
    """
    pulling_away_points(s)
    eps = check_real(eps, "eps", "positive")
    check_choice(algorithm, "algorithm", ALGORITHM_NAMES)
    if algorithm == "auto":
        algorithm = choose_algorithm(*s.shape)
    return torch.ops.gankernels.pulling_away(s, eps, ALGORITHMS[algorithm])
