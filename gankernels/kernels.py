"""Kernel families: validated, immutable, hashable descriptions of k(a, b).

Each kernel is a small value object.  The compiled engines (C++ on CPU,
Triton on CUDA) never see the Python object: they see ``family`` (an int
code) and ``params`` (a flat list of floats), produced by ``encode(D)``.

Two shapes of kernel exist:

* radial kernels, k(a, b) = phi(s) with s = ||a - b||^2, so that
  grad_a k = 2 phi'(s) (a - b) and grad_b k = -grad_a k;
* dot-product kernels, k(a, b) = psi(t) with t = a . b, so that
  grad_a k = psi'(t) b and grad_b k = psi'(t) a.

Mixture arguments (``sigmas``, ``alphas``, ``scales``) take a float or a
sequence; the kernel is the **sum** over their values (MMD-GAN convention).

Parameter encoding (``params`` as passed to the ops), by family code:

====  ===================  ===============================================
code  family               params
====  ===================  ===============================================
0     Gaussian             [sigma_1, ..., sigma_K]
1     RationalQuadratic    [lengthscale, alpha_1, ..., alpha_K]
2     InverseMultiquadric  [beta, c_1, ..., c_K]
3     Laplacian            [sigma_1, ..., sigma_K]
4     Energy               []
5     Polyharmonic         [k, eps]
6     Polynomial           [degree, gamma, coef0]   (gamma resolved for D)
7     Linear               []
====  ===================  ===============================================

Behaviour at r = 0 for the kernels with a kink there (Laplacian, Energy,
Polyharmonic with eps = 0 and k < 2 ... or k even): the value is the limit
(1 per bandwidth, 0, 0) and the gradient and Hessian terms are defined as 0,
the symmetric sub-gradient.  Away from coincident points they are smooth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

__all__ = [
    "Kernel", "Gaussian", "RationalQuadratic", "InverseMultiquadric", "Laplacian",
    "Energy", "Polyharmonic", "Polynomial", "Linear",
]

Floats = Union[float, int, Sequence[float]]

GAUSSIAN, RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, LAPLACIAN = 0, 1, 2, 3
ENERGY, POLYHARMONIC, POLYNOMIAL, LINEAR = 4, 5, 6, 7
RADIAL_FAMILIES = (GAUSSIAN, RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, LAPLACIAN, ENERGY, POLYHARMONIC)


def _number(name: str, value, *, positive: bool = False, negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import torch
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            else:
                raise TypeError
        except TypeError:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if negative and value >= 0:
        raise ValueError(f"{name} must be negative, got {value}")
    return value


def _mixture(name: str, values: Floats) -> Tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a positive number or a sequence of them") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
    return tuple(_number(f"{name}[{i}]", v, positive=True) for i, v in enumerate(values))


class Kernel:
    """Base class.  Subclasses are frozen dataclasses (immutable, hashable)."""

    family: int = -1
    radial: bool = True

    def encode(self, dim: int) -> Tuple[int, Tuple[float, ...]]:
        """(family code, flat params) for inputs of dimension ``dim``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Gaussian(Kernel):
    """k(a, b) = sum_sigma exp(-||a - b||^2 / (2 sigma^2))."""

    sigmas: Floats = 1.0
    family = GAUSSIAN

    def __post_init__(self):
        object.__setattr__(self, "sigmas", _mixture("sigmas", self.sigmas))

    def encode(self, dim):
        return self.family, self.sigmas


@dataclass(frozen=True)
class RationalQuadratic(Kernel):
    """k(a, b) = sum_alpha (1 + ||a - b||^2 / (2 alpha l^2))^(-alpha)."""

    alphas: Floats = (0.2, 0.5, 1.0, 2.0, 5.0)
    lengthscale: float = 1.0
    family = RATIONAL_QUADRATIC

    def __post_init__(self):
        object.__setattr__(self, "alphas", _mixture("alphas", self.alphas))
        object.__setattr__(self, "lengthscale", _number("lengthscale", self.lengthscale, positive=True))

    def encode(self, dim):
        return self.family, (self.lengthscale,) + self.alphas


@dataclass(frozen=True)
class InverseMultiquadric(Kernel):
    """k(a, b) = sum_c (c^2 + ||a - b||^2)^beta, beta < 0 (Plummer kernel for beta = -(d-2)/2)."""

    scales: Floats = 1.0
    beta: float = -0.5
    family = INVERSE_MULTIQUADRIC

    def __post_init__(self):
        object.__setattr__(self, "scales", _mixture("scales", self.scales))
        object.__setattr__(self, "beta", _number("beta", self.beta, negative=True))

    def encode(self, dim):
        return self.family, (self.beta,) + self.scales


@dataclass(frozen=True)
class Laplacian(Kernel):
    """k(a, b) = sum_sigma exp(-||a - b|| / sigma); gradient 0 at a = b."""

    sigmas: Floats = 1.0
    family = LAPLACIAN

    def __post_init__(self):
        object.__setattr__(self, "sigmas", _mixture("sigmas", self.sigmas))

    def encode(self, dim):
        return self.family, self.sigmas


@dataclass(frozen=True)
class Energy(Kernel):
    """k(a, b) = -||a - b|| (the energy distance kernel); gradient 0 at a = b."""

    family = ENERGY

    def encode(self, dim):
        return self.family, ()


@dataclass(frozen=True)
class Polyharmonic(Kernel):
    """k(a, b) = rho^k (k odd) or rho^k log rho (k even), rho = sqrt(||a - b||^2 + eps^2).

    Only conditionally positive definite.  k <= 0 needs eps > 0.  Where rho = 0
    the gradient and Hessian terms are defined as 0.
    """

    k: int = 1
    eps: float = 0.0
    family = POLYHARMONIC

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int):
            if isinstance(self.k, float) and self.k.is_integer():
                object.__setattr__(self, "k", int(self.k))
            else:
                raise TypeError(f"k must be an integer, got {self.k!r}")
        eps = _number("eps", self.eps)
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        if self.k <= 0 and eps == 0:
            raise ValueError(f"k = {self.k} <= 0 needs eps > 0")
        object.__setattr__(self, "eps", eps)

    def encode(self, dim):
        return self.family, (float(self.k), self.eps)


# Largest Polynomial degree: the degree reaches the engines exactly as a float parameter (integers up to
# 2^53 are exact in a double) and is evaluated by repeated squaring, O(log degree) products.
MAX_POLYNOMIAL_DEGREE = 2 ** 53


@dataclass(frozen=True)
class Polynomial(Kernel):
    """k(a, b) = (gamma a . b + coef0)^degree, gamma = 1 / D when None (the KID kernel for degree 3).

    ``degree`` is an integer in [1, 2**53], exact on every engine (powers by repeated squaring).
    """

    degree: int = 3
    gamma: float = None
    coef0: float = 1.0
    family = POLYNOMIAL
    radial = False

    def __post_init__(self):
        if isinstance(self.degree, bool) or not isinstance(self.degree, int):
            if isinstance(self.degree, float) and self.degree.is_integer():
                object.__setattr__(self, "degree", int(self.degree))
            else:
                raise TypeError(f"degree must be a positive integer, got {self.degree!r}")
        if self.degree < 1:
            raise ValueError(f"degree must be a positive integer, got {self.degree}")
        if self.degree > MAX_POLYNOMIAL_DEGREE:
            raise ValueError(f"degree must be at most 2**53 (it travels exactly as a float parameter), "
                             f"got {self.degree}")
        if self.gamma is not None:
            object.__setattr__(self, "gamma", _number("gamma", self.gamma, positive=True))
        object.__setattr__(self, "coef0", _number("coef0", self.coef0))

    def encode(self, dim):
        gamma = 1.0 / dim if self.gamma is None else self.gamma
        return self.family, (float(self.degree), gamma, self.coef0)


@dataclass(frozen=True)
class Linear(Kernel):
    """k(a, b) = a . b."""

    family = LINEAR
    radial = False

    def encode(self, dim):
        return self.family, ()
