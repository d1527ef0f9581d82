"""Drop-in ``torch.nn`` modules over the fused ops."""
from __future__ import annotations

import torch

from ._checks import check_choice, check_kernel, check_real
from .kernels import Kernel
from .pairwise import mmd2
from .pulling_away import ALGORITHM_NAMES, pulling_away

__all__ = ["MMDLoss", "PullingAwayLoss"]


class MMDLoss(torch.nn.Module):
    """``MMDLoss(kernel, estimator="biased")(x, y)`` = ``mmd2(x, y, kernel, estimator)``.

    Fused: the N x M Gram matrices are never built, and the gradient w.r.t. both
    inputs (and double backward for gradient penalties) comes from the same engine.
    """

    def __init__(self, kernel: Kernel, estimator: str = "biased"):
        super().__init__()
        check_kernel(kernel)
        check_choice(estimator, "estimator", ("biased", "unbiased"))
        self.kernel = kernel
        self.estimator = estimator

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return mmd2(x, y, self.kernel, self.estimator)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, estimator={self.estimator!r}"


class PullingAwayLoss(torch.nn.Module):
    """``PullingAwayLoss(eps=1e-8, algorithm="auto")(s)`` = ``pulling_away(s, eps, algorithm)``.

    The EBGAN pulling-away term of the codes ``s`` ``[N, D]`` (docs/MATH.md §4), fused:
    nothing N x N is built, and ``algorithm="auto"`` picks the Gram (O(N^2 D)) or the
    covariance (O(N D^2)) form by shape.
    """

    def __init__(self, eps: float = 1e-8, algorithm: str = "auto"):
        super().__init__()
        self.eps = check_real(eps, "eps", "positive")
        self.algorithm = check_choice(algorithm, "algorithm", ALGORITHM_NAMES)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return pulling_away(s, self.eps, self.algorithm)

    def extra_repr(self) -> str:
        return f"eps={self.eps!r}, algorithm={self.algorithm!r}"
