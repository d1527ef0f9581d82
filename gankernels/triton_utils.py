"""Launch helpers shared by the Triton modules (triton_engine, triton_score, triton_langevin,
triton_pulling_away).

* ``LaunchConfig``: the one table of block sizes, warps and dot precisions every launcher reads, by input
  dtype (and, on CUDA, architecture); ``pow2_block``, ``as_rows`` and ``row_stride`` size and lay out the
  launches.
* ``on_input_device``: a launcher decorator that makes the device of the launcher's first tensor
  argument current for the launch (Triton launches on the current device; a tensor on ``cuda:1``
  while ``cuda:0`` is current would otherwise be read from the wrong device).
* ``device_constants``: small per-launch constant tensors (kernel parameters, sigma-derived scalars)
  created once per (values, dtype, device) and reused, so that a steady-state call makes no host to
  device copy and can be captured in a CUDA graph.
* ``precision_of_fp32_contractions``: the ``tl.dot`` input precision of the fp32 tile contractions
  (TF32 only when the user opted in through PyTorch's matmul settings).  Squared distances never use
  plain TF32: the kernels raise it to 3xTF32 (``tf32x3``, about fp32 accuracy) when TF32 is on.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import torch

try:  # importing this module must work without triton
    import triton
    import triton.language as tl
    HAS_TRITON = True
except Exception:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    HAS_TRITON = False

_CONSTANTS: dict = {}
_MAX_CONSTANTS = 512


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (Triton kernels run on CPU tensors, for tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def on_input_device(fn):
    """Run ``fn`` with the CUDA device of its first tensor argument current (no-op for CPU tensors)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            if isinstance(a, torch.Tensor):
                if a.device.type == "cuda":
                    with torch.cuda.device(a.device):
                        return fn(*args, **kwargs)
                break
        return fn(*args, **kwargs)

    return wrapper


def device_constants(values: Sequence, dtype: torch.dtype, device) -> torch.Tensor:
    """A read-only tensor of ``values`` on ``device``, cached by (values, dtype, device)."""
    flat = tuple(float(v) for v in values)
    key = (flat, dtype, str(device))
    hit = _CONSTANTS.get(key)
    if hit is None:
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        hit = torch.tensor(flat if flat else (0.0,), dtype=dtype, device=device)
        _CONSTANTS[key] = hit
    return hit


def precision_of_fp32_contractions(x: torch.Tensor) -> str:
    """"tf32" where the user allows TF32 matmuls on CUDA (``torch.backends.cuda.matmul.allow_tf32`` or
    ``torch.set_float32_matmul_precision("high" / "medium")``), else "ieee"."""
    if x.device.type != "cuda" or x.dtype == torch.float64:
        return "ieee"
    allowed = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if allowed else "ieee"


def pow2_block(n: int, lo: int, hi: int) -> int:
    """The smallest power of two >= n in [lo, hi]."""
    v = lo
    while v < n and v < hi:
        v *= 2
    return v


def as_rows(t: torch.Tensor, dtype) -> torch.Tensor:
    """2-D, in ``dtype``, unit column stride (the row stride is passed to the kernel)."""
    if t.dtype != dtype:
        t = t.to(dtype)
    if t.dim() != 2:
        raise ValueError(f"expected a 2-D tensor, got shape {tuple(t.shape)}")
    if t.size(1) > 1 and t.stride(1) != 1:
        t = t.contiguous()
    return t


def row_stride(t: torch.Tensor) -> int:
    return t.stride(0) if t.size(0) > 1 else max(t.size(1), 1)


class LaunchConfig:
    """Block sizes, warps and dot precisions of every Triton launcher, for one input dtype and device.

    ``acc`` / ``acc_torch``: the accumulation dtype (fp64 for fp64 inputs, else fp32).  ``prec``: the
    ``tl.dot`` precision of fp32 contractions (``precision_of_fp32_contractions``); ``prec_raw``: that of
    dots on the raw inputs (fp16 / bf16 values are exact in TF32 and their products exact in fp32).
    ``bi`` x ``bj`` pair tiles over ``bd`` columns of D and ``bc`` weight columns; output column blocks up
    to ``max_o``; ``hvp_bj`` / ``hvp_warps`` for the Hessian-vector kernel; ``target_programs`` for
    launches that split rows to fill the device.  The table per dtype is the one the ahead-of-time
    compile check (gankernels/aot.py, docs/AOT.md) covers.
    """

    def __init__(self, x: torch.Tensor):
        if not HAS_TRITON:
            raise RuntimeError("the gankernels Triton kernels need triton")
        if x.device.type != "cuda" and not interpreting():
            raise RuntimeError("the Triton kernels run on CUDA tensors (or on CPU under TRITON_INTERPRET=1)")
        fp64 = x.dtype == torch.float64
        self.acc_torch = torch.float64 if fp64 else torch.float32
        self.acc = tl.float64 if fp64 else tl.float32
        tf32 = precision_of_fp32_contractions(x) == "tf32"
        self.prec = "tf32" if tf32 else "ieee"
        half = x.dtype in (torch.float16, torch.bfloat16)
        self.prec_raw = "tf32" if x.device.type == "cuda" and (tf32 or half) else "ieee"
        self.target_programs = 512
        if interpreting():
            self.bi = self.bj = self.bd = self.bc = self.hvp_bj = self.max_o = 16
            self.num_warps = self.hvp_warps = 1
            self.target_programs = 8
        elif fp64:
            self.bi, self.bj, self.bd, self.bc, self.hvp_bj, self.max_o = 32, 32, 16, 16, 32, 32
            self.num_warps, self.hvp_warps = 4, 8
        else:
            self.bi, self.bj, self.bd, self.bc, self.hvp_bj, self.max_o = 64, 64, 32, 32, 32, 64
            self.num_warps, self.hvp_warps = 8, 8

    def cblock(self, c: int) -> int:
        """Block of weight columns for C columns."""
        return pow2_block(c, 16, self.bc)

    def oblock(self, n: int) -> int:
        """Block of output columns for n columns."""
        return pow2_block(n, 16, self.max_o)
