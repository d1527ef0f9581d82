"""Shared inputs and checks for the gankernels test suite.

* ``KERNELS``: one or two instances of every kernel family, mixtures included.
* ``make_input``: inputs with odd shapes and non-contiguous layouts, in any dtype.
* ``assert_accurate``: the accuracy rule (README "Accuracy contract") -- float64 against the
  float64 oracle with a tight tolerance; low precision: error against the float64
  oracle at most 2x the error of the naive same-dtype reference, plus a small atol.
* ``*_scale``: magnitudes (sums of absolute values of the summed terms) that set
  the atol, so that cancellation in a sum does not make the tolerance vanish.
* ``child_env``, ``torchrun_train``: child processes (workers, torchrun) that import this checkout.

The tests import these helpers with ``from conftest import ...`` (pytest puts
this directory on ``sys.path``; there is no ``tests/__init__.py``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gankernels import reference as ref
from gankernels.kernels import (
    Energy,
    Gaussian,
    InverseMultiquadric,
    Laplacian,
    Linear,
    Polyharmonic,
    Polynomial,
    RationalQuadratic,
)

KERNELS = [
    Gaussian((1, 2, 4, 8, 16)),
    Gaussian(0.7),
    RationalQuadratic(),
    InverseMultiquadric(scales=(0.5, 1.0), beta=-0.5),
    InverseMultiquadric(beta=-1.5),
    Laplacian((0.5, 2)),
    Energy(),
    Polyharmonic(1),
    Polyharmonic(2, eps=0.1),
    Polyharmonic(3),
    Polynomial(3),
    Polynomial(2, gamma=0.5, coef0=0.1),
    Linear(),
]


def kernel_id(kernel) -> str:
    return repr(kernel).replace(" ", "")


def is_kink(kernel) -> bool:
    """Kernels that are not differentiable where two points coincide (r = 0)."""
    return isinstance(kernel, (Laplacian, Energy)) or (isinstance(kernel, Polyharmonic) and kernel.eps == 0)


SMOOTH_KERNELS = [k for k in KERNELS if not is_kink(k)]
KINK_KERNELS = [k for k in KERNELS if is_kink(k)]

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
LOW_DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# float64: error <= TOL64 * scale.  Low precision: error <= 2 * naive error + ATOL_REL[dtype] * scale.
# float32: 1e-6 (~8 ulps) leaves room for the |a|^2 + |b|^2 - 2 a.b expansion over D = 300
# (its rounding error is relative to |a|^2, not to s); float16 / bfloat16: 2 ulps of the scale.
TOL64 = 1e-10
ATOL_REL = {
    torch.float32: 1e-6,
    torch.float16: 2 * torch.finfo(torch.float16).eps,
    torch.bfloat16: 2 * torch.finfo(torch.bfloat16).eps,
}


def dtype_id(dtype) -> str:
    return str(dtype).replace("torch.", "")


def input_scale(kernel, d: int) -> float:
    """Coordinate scale that keeps kernel values O(1): s ~ 2 for radial kernels, a.b ~ N(0, 1) for dot kernels."""
    if kernel is not None and not kernel.radial:
        return d ** -0.25
    return d ** -0.5


def make_input(n: int, d: int, dtype=torch.float64, layout: str = "C", seed: int = 0,
               scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """``[n, d]`` standard normal * scale + shift, rounded to ``dtype``, in the given memory layout.

    layout: "C" contiguous; "T" transposed view (strides (1, n)); "S" every other
    column of an ``[n, 2d]`` tensor; "R" every other row of a ``[2n, d]`` tensor.
    """
    g = torch.Generator().manual_seed(seed)

    def base(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)

    if layout == "C":
        out = base(n, d)
    elif layout == "T":
        out = base(d, n).T
    elif layout == "S":
        out = base(n, 2 * d)[:, ::2]
    elif layout == "R":
        out = base(2 * n, d)[::2]
    else:
        raise ValueError(layout)
    assert out.shape == (n, d)
    if layout != "C" and n > 1 and d > 1:
        assert not out.is_contiguous()
    return out


def make_weights(m: int, kind, dtype=torch.float64, seed: int = 1, channels: int = 3):
    """None, ``[m]`` ("M") or a non-contiguous ``[m, channels]`` ("MC") of signed weights."""
    if kind is None:
        return None
    g = torch.Generator().manual_seed(seed)
    if kind == "M":
        return torch.randn(m, generator=g, dtype=torch.float64).to(dtype)
    if kind == "MC":
        return torch.randn(channels, m, generator=g, dtype=torch.float64).to(dtype).T
    raise ValueError(kind)


def separated(n: int, d: int, seed: int = 0, min_dist: float = 0.4, dtype=torch.float64,
              avoid: torch.Tensor = None) -> torch.Tensor:
    """``[n, d]`` points at distance >= min_dist from each other (and from ``avoid``), for finite differences at kinks."""
    g = torch.Generator().manual_seed(seed)
    side = 2.0 * min_dist * max(2.0, (n + (0 if avoid is None else avoid.shape[0])) ** (1.0 / d))
    pts = [] if avoid is None else [p for p in avoid.detach().double()]
    out = []
    while len(out) < n:
        p = (torch.rand(d, generator=g, dtype=torch.float64) - 0.5) * side
        if all((p - q).norm() >= min_dist for q in pts):
            pts.append(p)
            out.append(p)
    return torch.stack(out).to(dtype)


def to64(t):
    return None if t is None else t.detach().double()


# ----------------------------------------------------------------------------- magnitudes (float64)

def _profile_and_slope(kernel, x, y):
    """(K, slope) with slope = phi'(s) (radial) or psi'(t) (dot) for every pair, in float64."""
    x, y = to64(x), to64(y)
    if kernel.radial:
        z = ref.sqdist(x, y).requires_grad_(True)
        with torch.enable_grad():
            val = ref.radial_profile(kernel, z)
            (slope,) = torch.autograd.grad(val.sum(), z)
    else:
        z = (x @ y.T).requires_grad_(True)
        with torch.enable_grad():
            val = ref.dot_profile(kernel, z, x.shape[1])
            (slope,) = torch.autograd.grad(val.sum(), z)
    return val.detach(), slope


def sum_scale(x, y, kernel, weights=None) -> float:
    """max_i,c sum_j |w_jc| |k(x_i, y_j)|."""
    K = ref.gram(kernel, to64(x), to64(y)).abs()
    w = torch.ones(K.shape[1], dtype=torch.float64) if weights is None else to64(weights).abs()
    return float((K @ w).max())


def flow_scale(x, y, kernel, weights=None) -> float:
    """max_i,d sum_j |w_j| |d/dx_id k(x_i, y_j)|."""
    x64, y64 = to64(x), to64(y)
    _, slope = _profile_and_slope(kernel, x64, y64)
    w = torch.ones(y64.shape[0], dtype=torch.float64) if weights is None else to64(weights).abs()
    c = slope.abs() * w[None, :]
    if kernel.radial:
        rows = max(1, (1 << 22) // max(1, y64.shape[0] * y64.shape[1]))
        parts = [2.0 * (cb[:, :, None] * (xb[:, None, :] - y64[None]).abs()).sum(1)
                 for xb, cb in zip(x64.split(rows), c.split(rows))]
        return float(torch.cat(parts).max())
    return float((c @ y64.abs()).max())


def mmd2_scale(x, y, kernel) -> float:
    """mean |K_xx| + mean |K_yy| + 2 mean |K_xy|."""
    x64, y64 = to64(x), to64(y)
    return float(ref.gram(kernel, x64, x64).abs().mean() + ref.gram(kernel, y64, y64).abs().mean()
                 + 2 * ref.gram(kernel, x64, y64).abs().mean())


def mmd2_grad_scale(x, y, kernel) -> float:
    """Magnitude of the terms of d mmd2 / d x and d mmd2 / d y."""
    n, m = x.shape[0], y.shape[0]
    sx = 2 * flow_scale(x, x, kernel) / n ** 2 + 2 * flow_scale(x, y, kernel) / (n * m)
    sy = 2 * flow_scale(y, y, kernel) / m ** 2 + 2 * flow_scale(y, x, kernel) / (n * m)
    return max(sx, sy)


def witness_scale(z, x, y, kernel) -> float:
    z64 = to64(z)
    return float((ref.gram(kernel, z64, to64(x)).abs().mean(1) + ref.gram(kernel, z64, to64(y)).abs().mean(1)).max())


# ----------------------------------------------------------------------------- the accuracy rule

def assert_accurate(out: torch.Tensor, oracle: torch.Tensor, naive: torch.Tensor, dtype, scale: float,
                    what: str = "", atol_rel: dict = None) -> None:
    """The accuracy rule: float64 within TOL64 * scale of the oracle; low precision within
    2x the naive same-dtype error + ATOL_REL[dtype] * scale."""
    assert isinstance(out, torch.Tensor), f"{what}: expected a tensor, got {type(out)}"
    assert out.dtype == dtype, f"{what}: output dtype {out.dtype}, expected {dtype}"
    assert tuple(out.shape) == tuple(oracle.shape), f"{what}: output shape {tuple(out.shape)}, expected {tuple(oracle.shape)}"
    assert torch.isfinite(oracle).all(), f"{what}: oracle not finite (bad test inputs)"
    out64 = out.detach().double()
    assert torch.isfinite(out64).all(), f"{what}: non-finite output"
    if out64.numel() == 0:
        return
    err = float((out64 - oracle).abs().max())
    if dtype == torch.float64:
        bound = TOL64 * scale
        naive_err = 0.0
    else:
        naive64 = naive.detach().double()
        assert torch.isfinite(naive64).all(), f"{what}: naive {dtype} reference not finite (bad test inputs)"
        naive_err = float((naive64 - oracle).abs().max())
        bound = 2.0 * naive_err + (atol_rel or ATOL_REL)[dtype] * scale
    assert err <= bound, (
        f"{what}: max |error| {err:.3e} > bound {bound:.3e} "
        f"(naive {dtype_id(dtype)} error {naive_err:.3e}, scale {scale:.3e})"
    )


# ----------------------------------------------------------------------------- child processes

ROOT = Path(__file__).resolve().parent.parent


def child_env(drop=(), **variables) -> dict:
    """The environment of a child Python process: this checkout first on PYTHONPATH, one OpenMP thread,
    ``variables`` set and the variables named in ``drop`` removed."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.update(variables)
    return env


def torchrun_train(nproc: int, args, env: dict, timeout: float):
    """``torchrun --standalone --nproc-per-node NPROC -m gankernels train ARGS``, which must succeed (the test
    is skipped without torchrun); -> (the completed process, its stdout lines)."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    argv = [torchrun, "--standalone", "--nproc-per-node", str(nproc), "-m", "gankernels", "train", *args]
    res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res, res.stdout.strip().splitlines()


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)
