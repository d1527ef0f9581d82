"""Kernel families: validated, immutable, hashable descriptions of k(a, b).

Each kernel is a small value object.  The compiled engines (C++ on CPU,
Triton on CUDA) never see the Python object: they see ``family`` (an int
code) and ``params`` (a flat list of floats), produced by ``encode(D)``.

Two shapes of kernel exist:

* radial kernels, k(a, b) = phi(s) with s = ||a - b||^2, so that
  grad_a k = 2 phi'(s) (a - b) and grad_b k = -grad_a k;
* dot-product kernels, k(a, b) = psi(t) with t = a . b, so that
  grad_a k = psi'(t) b and grad_b k = psi'(t) a.

Mixture arguments (``sigmas``, ``alphas``, ``scales``) take a real scalar or a
sequence; the kernel is the **sum** over their values (MMD-GAN convention).
A real scalar is a Python or NumPy number or a one-element real tensor (0-dim
or not); every parameter is stored as a Python float (or int for ``k`` and
``degree``, integral, |k| <= 2^24 and 1 <= degree <= 2^53), so kernels
built from equal values compare and hash equal.

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

Each family is defined here once: its code, its parameter checks and
encoding, ``at_zero`` (phi(0) = k(a, a)) and ``profile`` (phi of a tensor of
squared distances, or psi of dot products: the dense float64 reference of the
tests, twice differentiable by autograd).  The engines' derived constants come
from one place, csrc/families.h (``Family``, also read by the Triton engine);
``from_code`` turns an op's (family, params) back into a kernel.

Behaviour at r = 0 for the kernels with a kink there (Laplacian, Energy,
Polyharmonic with eps = 0 and k < 2 ... or k even): the value is the limit
(1 per bandwidth, 0, 0) and the gradient and Hessian terms are defined as 0,
the symmetric sub-gradient.  Away from coincident points they are smooth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch

from ._checks import check_integer, check_mixture, check_real

__all__ = [
    "Kernel", "Gaussian", "RationalQuadratic", "InverseMultiquadric", "Laplacian",
    "Energy", "Polyharmonic", "Polynomial", "Linear", "from_code",
]

Floats = Union[float, int, Sequence[float]]

GAUSSIAN, RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, LAPLACIAN = 0, 1, 2, 3
ENERGY, POLYHARMONIC, POLYNOMIAL, LINEAR = 4, 5, 6, 7
RADIAL_FAMILIES = (GAUSSIAN, RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, LAPLACIAN, ENERGY, POLYHARMONIC)


MAX_INT_PARAM = 2 ** 24  # integer parameters travel as floats: exact up to 2^24 in fp32


class Kernel:
    """Base class.  Subclasses are frozen dataclasses (immutable, hashable)."""

    family: int = -1
    radial: bool = True

    def encode(self, dim: int) -> Tuple[int, Tuple[float, ...]]:
        """(family code, flat params) for inputs of dimension ``dim``."""
        raise NotImplementedError

    def at_zero(self) -> float:
        """phi(0) = k(a, a) of a radial kernel (the diagonal the unbiased MMD^2 drops)."""
        raise TypeError(f"not a radial kernel: {self!r}")

    def profile(self, z: torch.Tensor, dim: Optional[int] = None) -> torch.Tensor:
        """phi(z) elementwise (radial: z = ||a - b||^2; dot-product: z = a . b, ``dim`` = D resolves a
        default gamma), in z's dtype, twice differentiable; at a kink the value is the limit and autograd
        gives derivatives of exactly 0 there."""
        raise NotImplementedError


def _safe_pow(q: torch.Tensor, p: float) -> torch.Tensor:
    """``q ** p`` for ``q >= 0`` with value 0 (``p > 0``) and gradient 0 where ``q == 0``; NaN stays NaN."""
    zero = q == 0
    return torch.where(zero, torch.zeros_like(q), torch.where(zero, torch.ones_like(q), q) ** p)


class _Mixture(Kernel):
    """A radial kernel summed over the values of one argument (``MIXTURE`` names it), with at most one
    more scalar parameter (``SCALAR``: its name and its sign for ``check_real``), encoded first."""

    MIXTURE = "sigmas"
    SCALAR = None

    def __post_init__(self):
        object.__setattr__(self, self.MIXTURE, check_mixture(getattr(self, self.MIXTURE), self.MIXTURE))
        if self.SCALAR is not None:
            name, sign = self.SCALAR
            object.__setattr__(self, name, check_real(getattr(self, name), name, sign, tensor=True))

    def encode(self, dim):
        head = () if self.SCALAR is None else (getattr(self, self.SCALAR[0]),)
        return self.family, head + getattr(self, self.MIXTURE)

    def at_zero(self):
        return float(len(getattr(self, self.MIXTURE)))


@dataclass(frozen=True)
class Gaussian(_Mixture):
    """k(a, b) = sum_sigma exp(-||a - b||^2 / (2 sigma^2))."""

    sigmas: Floats = 1.0
    family = GAUSSIAN

    @classmethod
    def from_gamma(cls, gammas: Floats) -> "Gaussian":
        """The mixture sum_gamma exp(-gamma ||a - b||^2), as code written with gamma has it: sigma = 1/sqrt(2 gamma)."""
        return cls(tuple(1.0 / math.sqrt(2.0 * g) for g in check_mixture(gammas, "gammas")))

    def profile(self, z, dim=None):
        return sum(torch.exp(-z / (2.0 * sig * sig)) for sig in self.sigmas)


@dataclass(frozen=True)
class RationalQuadratic(_Mixture):
    """k(a, b) = sum_alpha (1 + ||a - b||^2 / (2 alpha l^2))^(-alpha)."""

    alphas: Floats = (0.2, 0.5, 1.0, 2.0, 5.0)
    lengthscale: float = 1.0
    family = RATIONAL_QUADRATIC
    MIXTURE, SCALAR = "alphas", ("lengthscale", "positive")

    def profile(self, z, dim=None):
        l2 = self.lengthscale ** 2
        return sum((1.0 + z / (2.0 * a * l2)) ** (-a) for a in self.alphas)


@dataclass(frozen=True)
class InverseMultiquadric(_Mixture):
    """k(a, b) = sum_c (c^2 + ||a - b||^2)^beta, beta < 0 (Plummer kernel for beta = -(d-2)/2)."""

    scales: Floats = 1.0
    beta: float = -0.5
    family = INVERSE_MULTIQUADRIC
    MIXTURE, SCALAR = "scales", ("beta", "negative")

    def at_zero(self):
        return float(sum(c ** (2.0 * self.beta) for c in self.scales))

    def profile(self, z, dim=None):
        return sum((c * c + z) ** self.beta for c in self.scales)


@dataclass(frozen=True)
class Laplacian(_Mixture):
    """k(a, b) = sum_sigma exp(-||a - b|| / sigma); gradient 0 at a = b."""

    sigmas: Floats = 1.0
    family = LAPLACIAN

    def profile(self, z, dim=None):
        r = _safe_pow(z, 0.5)
        return sum(torch.exp(-r / sig) for sig in self.sigmas)


@dataclass(frozen=True)
class Energy(Kernel):
    """k(a, b) = -||a - b|| (the energy distance kernel); gradient 0 at a = b."""

    family = ENERGY

    def encode(self, dim):
        return self.family, ()

    def at_zero(self):
        return 0.0

    def profile(self, z, dim=None):
        return -_safe_pow(z, 0.5)


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
        object.__setattr__(self, "k", check_integer(self.k, "k", "an integer", MAX_INT_PARAM))
        eps = check_real(self.eps, "eps", "non-negative", tensor=True)
        if self.k <= 0 and eps == 0:
            raise ValueError(f"k = {self.k} <= 0 needs eps > 0")
        object.__setattr__(self, "eps", eps)

    def encode(self, dim):
        return self.family, (float(self.k), self.eps)

    def at_zero(self):
        if self.eps == 0.0:
            return 0.0
        return self.eps ** self.k * (math.log(self.eps) if self.k % 2 == 0 else 1.0)

    def profile(self, z, dim=None):
        q = z + self.eps * self.eps  # rho^2; eps > 0: q >= eps^2 > 0, smooth everywhere (k may be <= 0)
        zero = q == 0
        # eps = 0: the limit 0 at rho = 0, with derivatives 0 there (NaN stays NaN)
        qs = q if self.eps > 0 else torch.where(zero, torch.ones_like(q), q)
        val = qs ** (0.5 * self.k) if self.k % 2 else qs ** (0.5 * self.k) * torch.log(qs) * 0.5
        return val if self.eps > 0 else torch.where(zero, torch.zeros_like(q), val)


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
        object.__setattr__(self, "degree", check_integer(self.degree, "degree", "a positive integer",
                                                          MAX_POLYNOMIAL_DEGREE))
        if self.degree < 1:
            raise ValueError(f"degree must be a positive integer, got {self.degree}")
        if self.degree > MAX_POLYNOMIAL_DEGREE:
            raise ValueError(f"degree must be at most 2**53 (it travels exactly as a float parameter), "
                             f"got {self.degree}")
        if self.gamma is not None:
            object.__setattr__(self, "gamma", check_real(self.gamma, "gamma", "positive", tensor=True))
        object.__setattr__(self, "coef0", check_real(self.coef0, "coef0", tensor=True))

    def encode(self, dim):
        gamma = 1.0 / dim if self.gamma is None else self.gamma
        return self.family, (float(self.degree), gamma, self.coef0)

    def profile(self, z, dim=None):
        if self.gamma is None and dim is None:
            raise ValueError("Polynomial.profile needs dim when gamma is None (gamma = 1 / dim)")
        gamma = 1.0 / dim if self.gamma is None else self.gamma
        return (gamma * z + self.coef0) ** self.degree


@dataclass(frozen=True)
class Linear(Kernel):
    """k(a, b) = a . b."""

    family = LINEAR
    radial = False

    def encode(self, dim):
        return self.family, ()

    def profile(self, z, dim=None):
        return z


def from_code(family: int, params: Sequence[float]) -> Kernel:
    """The kernel of an op's (family code, params), the inverse of ``encode`` (Polynomial: gamma as encoded)."""
    p = [float(v) for v in params]
    if family in (GAUSSIAN, LAPLACIAN):
        return (Gaussian if family == GAUSSIAN else Laplacian)(tuple(p))
    if family == RATIONAL_QUADRATIC:
        return RationalQuadratic(tuple(p[1:]), p[0])
    if family == INVERSE_MULTIQUADRIC:
        return InverseMultiquadric(tuple(p[1:]), p[0])
    if family == ENERGY:
        return Energy()
    if family == POLYHARMONIC:
        return Polyharmonic(int(p[0]), p[1])
    if family == POLYNOMIAL:
        return Polynomial(int(p[0]), p[1], p[2])
    if family == LINEAR:
        return Linear()
    raise ValueError(f"unknown kernel family code {family}")
