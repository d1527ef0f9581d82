"""Argument checks: one set for the public functions and the raw ops' Triton launchers.

The public modules (``pairwise``, ``score``, ``langevin``, ``pulling_away``, ``variance``,
``distributed``, ``kernels``) check what their callers pass with the functions here; the Triton
launchers of ``triton_pairwise``, ``triton_score``, ``triton_langevin`` and ``triton_pulling_away``
are called by the dispatcher with the raw arguments and apply the same rules as the C++ kernels
(``csrc/checks.h``, ``csrc/families.h``, ``csrc/tensor_utils.h``) through the ``*_args`` functions,
before anything is launched.  Errors name the argument: ``ValueError`` for a bad value, shape or
device, ``TypeError`` for a wrong type or dtype.

The kernel family's parameter rules are not repeated here: ``check_family`` asks the C++ library's
``family_constants`` op, which applies ``check_family_params`` (csrc/families.h).
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Tuple

import torch

from . import _C  # noqa: F401  (the C++ library: family_constants)

NUM_FAMILIES = 8


def _require(ok: bool, msg: str, exc=ValueError) -> None:
    if not ok:
        raise exc(msg)


# ----------------------------------------------------------------------------- numbers

def real_scalar(value, name: str, what: str = "a real number"):
    """A real scalar as a Python int or float: Python / NumPy numbers, 0-dim or 1-element real tensors."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_":
        return value
    if (isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool
            and not value.is_complex() and value.device.type != "meta"):
        return value.item()
    raise TypeError(f"{name} must be {what}, got {type(value).__name__}")


def check_real(value, name: str, sign: Optional[str] = None, tensor: bool = False) -> float:
    """A finite real number as a float; ``sign``: None, "positive", "non-negative" or "negative".

    Python and NumPy numbers (not bools); with ``tensor``, also a one-element real tensor.
    """
    if isinstance(value, torch.Tensor) and not tensor:
        raise TypeError(f"{name} must be a real number, got a tensor")
    value = float(real_scalar(value, name))
    ok = {None: True, "positive": value > 0, "non-negative": value >= 0, "negative": value < 0}[sign]
    _require(math.isfinite(value) and ok, f"{name} must be {sign + ' and ' if sign else ''}finite, got {value}")
    return value


def check_count(value, name: str) -> int:
    """A non-negative Python int (no bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    _require(value >= 0, f"{name} must be non-negative, got {value}")
    return int(value)


def check_integer(value, name: str, what: str, limit: int) -> int:
    """An integral real scalar (3, 3.0, np.int64(3), torch.tensor(3)) as an int with |value| <= limit."""
    value = real_scalar(value, name, what)
    if not isinstance(value, numbers.Integral) and not float(value).is_integer():
        raise TypeError(f"{name} must be {what}, got {value!r}")
    value = int(value)
    _require(abs(value) <= limit, f"{name} must be at most 2**{limit.bit_length() - 1} in magnitude, got {value}")
    return value


def check_mixture(values, name: str) -> Tuple[float, ...]:
    """A positive real scalar or a non-empty sequence (or tensor) of them, as a tuple of floats."""
    try:
        values = (real_scalar(values, name),)
    except TypeError:
        try:
            values = tuple(values)
        except TypeError:
            raise TypeError(f"{name} must be a positive number or a sequence of them") from None
    _require(len(values) > 0, f"{name} must not be empty")
    return tuple(check_real(v, f"{name}[{i}]", "positive", tensor=True) for i, v in enumerate(values))


def check_family(family, params: Sequence[float]) -> List[float]:
    """Validates a raw (family code, params) pair as the ops receive it; -> params as floats."""
    _require(isinstance(family, int) and not isinstance(family, bool),
             f"family must be an int kernel family code, got {type(family).__name__}", TypeError)
    _require(0 <= family < NUM_FAMILIES,
             f"family must be a kernel family code in [0, {NUM_FAMILIES - 1}] (see gankernels/kernels.py), "
             f"got {family}")
    try:
        p = [float(v) for v in params]
    except (TypeError, ValueError):
        raise TypeError(f"params must be a sequence of floats, got {params!r}") from None
    # the per-family parameter rules live in one place, the C++ check_family_params (csrc/families.h),
    # which the family_constants op runs (ValueError naming params[i] and the family)
    torch.ops.gankernels.family_constants(family, p, torch.float64)
    return p


# ----------------------------------------------------------------------------- tensors

def _shape(t: torch.Tensor) -> list:
    return list(t.shape)


def check_tensor(t, name: str) -> None:
    _require(isinstance(t, torch.Tensor), f"{name} must be a torch.Tensor, got {type(t).__name__}", TypeError)


def check_floating(t, name: str) -> None:
    check_tensor(t, name)
    _require(t.is_floating_point(), f"{name} must be a floating tensor, got {t.dtype}", TypeError)


def check_device(t: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str) -> None:
    _require(t.device == ref.device, f"{name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_points(t, name: str) -> None:
    """[points, dim], non-empty, floating."""
    check_tensor(t, name)
    _require(t.dim() == 2, f"{name} must be 2-D [points, dim], got {t.dim()}-D")
    check_floating(t, name)
    _require(t.shape[0] > 0 and t.shape[1] > 0, f"{name} must be non-empty, got shape {_shape(t)}")


def check_point_pair(x, y, xname: str = "x", yname: str = "y") -> int:
    """x [N, D], y [M, D] (y None: self mode) of one dtype and device; -> M."""
    check_points(x, xname)
    if y is None:
        return x.shape[0]
    check_points(y, yname)
    _require(y.dtype == x.dtype, f"{xname} and {yname} must have the same dtype, got {x.dtype} and {y.dtype}",
             TypeError)
    _require(y.shape[1] == x.shape[1],
             f"{xname} and {yname} must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    check_device(y, x, yname, xname)
    return y.shape[0]


def check_matrix(t, rows: int, cols: Optional[int], name: str, ref: torch.Tensor, ref_name: str) -> None:
    """t [rows, cols] (cols None: any), floating, on ref's device."""
    check_floating(t, name)
    ok = t.dim() == 2 and t.shape[0] == rows and (cols is None or t.shape[1] == cols)
    _require(ok, f"{name} must have shape [{rows}, {'C' if cols is None else cols}], got {_shape(t)}")
    check_device(t, ref, name, ref_name)


def check_vector(t, n: int, name: str, ref: torch.Tensor, ref_name: str) -> None:
    """t [n], floating, on ref's device."""
    check_floating(t, name)
    _require(t.dim() == 1 and t.shape[0] == n, f"{name} must have shape [{n}], got {_shape(t)}")
    check_device(t, ref, name, ref_name)


def check_same_device(*named) -> None:
    """(name, tensor-or-None) pairs: every tensor on the first one's device (the fake kernels' check)."""
    tensors = [(n, t) for n, t in named if isinstance(t, torch.Tensor)]
    for n, t in tensors[1:]:
        check_device(t, tensors[0][1], n, tensors[0][0])


# ----------------------------------------------------------------------------- the public functions

def check_kernel(kernel) -> None:
    from .kernels import Kernel  # kernels.py checks its parameters with this module
    _require(isinstance(kernel, Kernel),
             f"kernel must be a gankernels kernel (e.g. Gaussian(...)), got {type(kernel).__name__}", TypeError)


def check_weights(weights, m: int, ref: torch.Tensor, ref_name: str, columns: bool = False) -> None:
    """None, or a floating tensor [m] (with ``columns`` also [m, C], C > 0) on ref's device."""
    if weights is None:
        return
    _require(isinstance(weights, torch.Tensor),
             f"weights must be a torch.Tensor or None, got {type(weights).__name__}", TypeError)
    check_floating(weights, "weights")
    ok = weights.dim() == 1 or (columns and weights.dim() == 2 and weights.shape[1] > 0)
    _require(ok and weights.shape[0] == m,
             f"weights must have shape [{m}]{f' or [{m}, C]' if columns else ''}, got {_shape(weights)}")
    check_device(weights, ref, "weights", ref_name)


def has_values(t: torch.Tensor) -> bool:
    """False for tensors without data: meta, fake (torch.compile / FakeTensorMode), traced."""
    if t.device.type == "meta" or torch.compiler.is_compiling():
        return False
    from torch._subclasses.fake_tensor import is_fake
    return not is_fake(t)


def check_weight_values(w: torch.Tensor) -> None:
    """Non-negative and not all zero, where w has values (the CPU kernel checks them again)."""
    if has_values(w):
        _require(not bool((w < 0).any()), "weights must be non-negative")
        _require(not bool(w.sum() == 0), "weights must not all be zero")


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """One of the strings ``choices``."""
    if not (isinstance(value, str) and value in choices):
        options = ", ".join(f'"{c}"' for c in choices[:-1]) + f' or "{choices[-1]}"'
        raise ValueError(f"{name} must be {options}, got {value!r}")
    return value


def resolve_variance(variance, n: int, m: int) -> str:
    """Checks ``variance`` against the sample sizes N = n, M = m; -> "sutherland" or "complete"."""
    check_choice(variance, "variance", ("auto", "sutherland", "complete"))
    if variance == "auto":
        variance = "sutherland" if n == m else "complete"
    if variance == "sutherland":
        _require(n == m, f'variance="sutherland" needs N = M (Sutherland et al. 2017), got N={n}, M={m}; '
                         'use variance="complete"')
        _require(n >= 2, f"the variance needs at least 2 samples in x and y, got N={n}, M={m}")
    else:
        _require(n >= 4 and m >= 4,
                 f'variance="complete" needs at least 4 samples in x and in y, got N={n}, M={m}')
    return variance


# ----------------------------------------------------------------------------- the ops
# The raw ops' arguments, as the Triton launchers get them; the public functions whose arguments are the
# op's (smoothed_score, langevin_step, kde_langevin) call the same function.

def ksum_args(x, y, w, family, params) -> List[float]:
    p = check_family(family, params)
    m = check_point_pair(x, y)
    check_matrix(w, m, None, "w", x, "x")
    return p


def check_mask(mask, n: int, name: str = "output_mask") -> List[bool]:
    try:
        out = [bool(m) for m in mask]
    except TypeError:
        raise TypeError(f"{name} must be a list of {n} bools, got {type(mask).__name__}") from None
    _require(len(out) == n, f"{name} must have {n} entries, got {len(out)}")
    return out


def ksum_backward_args(grad, x, y, w, family, params, mask) -> List[float]:
    p = ksum_args(x, y, w, family, params)
    check_matrix(grad, x.shape[0], w.shape[1], "grad", x, "x")
    check_mask(mask, 3)
    return p


def kform_args(x, y, g, w, family, params, mask) -> List[float]:
    p = ksum_args(x, y, w, family, params)
    check_matrix(g, x.shape[0], w.shape[1], "g", x, "x")
    check_mask(mask, 2)
    return p


def kflow_args(x, y, a, b, family, params) -> List[float]:
    p = check_family(family, params)
    m = check_point_pair(x, y)
    check_matrix(a, x.shape[0], None, "a", x, "x")
    check_matrix(b, m, a.shape[1], "b", x, "x")
    return p


def kflow_backward_args(grad, x, y, a, b, family, params, mask) -> List[float]:
    p = kflow_args(x, y, a, b, family, params)
    check_matrix(grad, x.shape[0], x.shape[1], "grad", x, "x")
    check_mask(mask, 4)
    return p


def score_args(x, y, w, sigma) -> float:
    """smoothed_score(_backward)'s static checks (the data-dependent weight checks are the caller's)."""
    check_point_pair(x, y)
    sigma = check_real(sigma, "sigma", "positive")
    if w is not None:
        check_vector(w, y.shape[0], "weights", y, "y")
    return sigma


def score_backward_args(grad, x, y, w, sigma, score, lse, mask) -> float:
    sigma = score_args(x, y, w, sigma)
    n, d = x.shape
    check_matrix(grad, n, d, "grad", x, "x")
    check_matrix(score, n, d, "score", x, "x")
    check_vector(lse, n, "lse", x, "x")
    check_mask(mask, 3)
    return sigma


def step_args(x, drift, step_size, temperature) -> Tuple[float, float]:
    """langevin_step(_): -> (eta, tau)."""
    eta = check_real(step_size, "step_size", "positive")
    tau = check_real(temperature, "temperature", "non-negative")
    check_floating(x, "x")
    check_tensor(drift, "drift")
    _require(drift.shape == x.shape, f"drift must have the shape of x {_shape(x)}, got {_shape(drift)}")
    _require(drift.dtype == x.dtype, f"drift must have the dtype of x ({x.dtype}), got {drift.dtype}", TypeError)
    check_device(drift, x, "drift", "x")
    return eta, tau


def kernel_langevin_args(x, centers, w, family, params, step_size, steps, temperature):
    """-> (params, eta, steps, tau)."""
    p = check_family(family, params)
    check_point_pair(x, centers, "x", "centers")
    check_vector(w, centers.shape[0], "w", centers, "centers")
    return (p, check_real(step_size, "step_size", "positive"), check_count(steps, "steps"),
            check_real(temperature, "temperature", "non-negative"))


def kde_langevin_args(x, data, sigmas, steps_per_sigma, eps):
    """-> (sigmas as a list, steps_per_sigma, eps)."""
    check_point_pair(x, data, "x", "data")
    return (list(check_mixture(sigmas, "sigmas")), check_count(steps_per_sigma, "steps_per_sigma"),
            check_real(eps, "eps", "positive"))


def pulling_away_points(s) -> None:
    """s [N, D]: floating, N >= 2, D >= 1."""
    check_tensor(s, "s")
    _require(s.dim() == 2, f"s must be 2-D [N, D], got {s.dim()}-D")
    check_floating(s, "s")
    _require(s.shape[0] >= 2, f"pulling_away needs at least 2 rows in s, got shape {_shape(s)}")
    _require(s.shape[1] > 0, f"s must be non-empty, got shape {_shape(s)}")


def pulling_away_args(s, eps, algorithm) -> None:
    pulling_away_points(s)
    check_real(eps, "eps", "positive")
    _require(algorithm in (0, 1), f"algorithm must be 0 (gram) or 1 (covariance), got {algorithm}")


def pulling_away_backward_args(grad, s, eps, algorithm) -> None:
    pulling_away_args(s, eps, algorithm)
    check_tensor(grad, "grad")
    _require(grad.numel() == 1, f"grad must have one element, got shape {_shape(grad)}")
    check_floating(grad, "grad")
    check_device(grad, s, "grad", "s")
