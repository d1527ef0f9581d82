"""Argument checks of the raw ops, shared by the Triton launchers (and the fake kernels' device check).

The C++ kernels check their arguments in C++ (``csrc/checks.h``, ``csrc/families.h``,
``csrc/tensor_utils.h``); the Triton launchers of ``triton_pairwise``, ``triton_score``, ``triton_langevin``
and ``triton_pulling_away`` are called by the dispatcher with the same raw arguments and
apply the same rules here, before anything is launched: the kernel family code and
its parameter list, then shapes, dtypes and devices.  Errors are ``ValueError`` /
``TypeError`` naming the argument, with the wording of the C++ checks.

The kernel family's parameter rules are not repeated here: ``check_family`` asks the C++ library's
``family_constants`` op, which applies ``check_family_params`` (csrc/families.h).
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence

import torch

from . import _C  # noqa: F401  (the C++ library: family_constants)

NUM_FAMILIES = 8


def _require(ok: bool, msg: str, exc=ValueError) -> None:
    if not ok:
        raise exc(msg)


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """A positive (or non-negative) finite real number -- Python or NumPy scalar -- as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} float, "
                        f"got {type(value).__name__}")
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return value


def _finite(v: float) -> bool:
    return math.isfinite(v)


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


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


# ----------------------------------------------------------------------------- the ops

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


def positive(value, name: str, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    _require(math.isfinite(value) and ok,
             f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return value


def score_args(x, y, w, sigma) -> float:
    """smoothed_score(_backward)'s static checks (the data-dependent weight checks are the caller's)."""
    check_point_pair(x, y)
    sigma = positive(sigma, "sigma")
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


def step_args(x, drift, step_size, temperature):
    """langevin_step(_): -> (eta, tau)."""
    eta = positive(step_size, "step_size")
    tau = positive(temperature, "temperature", allow_zero=True)
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
    steps = int(steps)
    _require(steps >= 0, f"steps must be non-negative, got {steps}")
    return p, positive(step_size, "step_size"), steps, positive(temperature, "temperature", allow_zero=True)


def kde_langevin_args(x, data, sigmas, steps_per_sigma, eps):
    """-> (sigmas, steps_per_sigma, eps)."""
    check_point_pair(x, data, "x", "data")
    sig = [float(s) for s in sigmas]
    _require(len(sig) > 0, "sigmas must not be empty")
    for k, s in enumerate(sig):
        _require(_positive(s), f"sigmas must be positive and finite, got sigmas[{k}] = {s}")
    steps_per_sigma = int(steps_per_sigma)
    _require(steps_per_sigma >= 0, f"steps_per_sigma must be non-negative, got {steps_per_sigma}")
    return sig, steps_per_sigma, positive(eps, "eps")


def pulling_away_args(s, eps, algorithm) -> None:
    check_tensor(s, "s")
    _require(s.dim() == 2, f"s must be 2-D [N, D], got {s.dim()}-D")
    check_floating(s, "s")
    _require(s.shape[0] >= 2, f"pulling_away needs at least 2 rows in s, got shape {_shape(s)}")
    _require(s.shape[1] > 0, f"s must be non-empty, got shape {_shape(s)}")
    positive(eps, "eps")
    _require(algorithm in (0, 1), f"algorithm must be 0 (gram) or 1 (covariance), got {algorithm}")


def pulling_away_backward_args(grad, s, eps, algorithm) -> None:
    pulling_away_args(s, eps, algorithm)
    check_tensor(grad, "grad")
    _require(grad.numel() == 1, f"grad must have one element, got shape {_shape(grad)}")
    check_floating(grad, "grad")
    check_device(grad, s, "grad", "s")
