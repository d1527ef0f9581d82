"""gankernels: fused pairwise-kernel, score and Langevin ops for GAN training.

CPU kernels are C++ (``gankernels._C``), CUDA kernels are Triton; every op is a
registered PyTorch custom op with autograd (double backward for the pairwise
reductions) that works under ``torch.compile``.  The math is in docs/MATH.md, the engine in docs/ENGINE.md.
"""
from .kernels import (
    Energy,
    Gaussian,
    InverseMultiquadric,
    Kernel,
    Laplacian,
    Linear,
    Polyharmonic,
    Polynomial,
    RationalQuadratic,
)
from .pairwise import kernel_flow, kernel_sum, kid, mmd2, witness
from .variance import mmd2_and_variance, mmd2_ratio
from .score import smoothed_score
from .langevin import (
    discriminator_score,
    kde_langevin,
    kernel_langevin,
    langevin_sample,
    langevin_step,
    langevin_step_,
)
from .pulling_away import pulling_away
from . import nn

__version__ = "0.1.0"

__all__ = [
    "Kernel", "Gaussian", "RationalQuadratic", "InverseMultiquadric", "Laplacian", "Energy",
    "Polyharmonic", "Polynomial", "Linear",
    "kernel_sum", "kernel_flow", "mmd2", "witness", "kid", "nn", "mmd2_and_variance", "mmd2_ratio",
    "smoothed_score", "langevin_step", "langevin_step_", "kernel_langevin", "kde_langevin", "langevin_sample",
    "discriminator_score",
    "pulling_away",
]
