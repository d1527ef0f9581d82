"""Launch helpers shared by the Triton modules (triton_pairwise, triton_score, triton_langevin,
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

import copy
import functools
import os
from typing import Sequence

import torch

from .kernels import (
    ENERGY, INVERSE_MULTIQUADRIC, LAPLACIAN, POLYHARMONIC, POLYNOMIAL, RATIONAL_QUADRATIC,
)

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


def cuda_arch(device) -> int:
    """The config table of a CUDA device: 90 for compute capability 9.0 and newer, else 80."""
    major, minor = torch.cuda.get_device_capability(device)
    return 90 if major * 10 + minor >= 90 else 80


# One row per (arch, dtype class): the block sizes, warps and pipeline stages every launcher reads.
# The entries are the largest blocks whose compiles spill at most aot.SPILL_LIMIT bytes (measurements
# before / after: docs/AOT.md, "Architecture-aware configurations").
#   bi / bj / bd / bc   pair tile rows x rows over bd columns of D and bc weight columns
#   max_o               cap of the output column blocks (every kernel with a BLOCK_O)
#   flow_bj             BLOCK_J of _pair_kernel with FLOW=True
#   self_bj             BLOCK_J of _pair_kernel with FLOW=False in self mode: ksum_and_square (SQUARE=True, two
#                       accumulators) and ksum(x, None, w), whose outputs must agree bitwise (same tiles)
#   step_bj             BLOCK_J of _flow_step_kernel
#   score_bj            BLOCK_J of _score_kernel and _score_bwd_x_kernel (default: bj)
#   score_gy_max_o      output block cap of _score_bwd_y_kernel
#   score_gy_bj         rows of y per program of _score_bwd_y_kernel (its BLOCK_J)
#   hvp_bi / hvp_bj / hvp_max_o / hvp_warps   the _hvp_kernel tile, output block cap and warps
#   num_stages          software-pipelining stages of the tiled kernels (Triton's default is 3)
_TABLE = {
    (80, "fp32"): dict(
        bi=64, bj=64, bd=32, bc=32, num_warps=8,
        max_o=32,           # 64 spilled 340-1884 B (score, score bwd, flow step, pair, gram_h)
        flow_bj=64, step_bj=64,
        self_bj=64,         # SQUARE (two accumulators) at 64: 0 B here (184 B on sm_90)
        score_gy_max_o=32, score_gy_bj=64,
        hvp_bi=32, hvp_max_o=64,  # 64 x 64 spilled 444 B, 64 rows x 32 columns still 300 B
        hvp_bj=32, hvp_warps=8,
        num_stages=1,       # with the caps above: fewer live tiles
    ),
    (80, "half"): dict(
        bi=64, bj=64, bd=32, bc=32, num_warps=8,
        max_o=32,           # as fp32 (gram_h and the score kernels run in fp32 or on fp32 dots)
        flow_bj=32,         # 64 spilled 440 B (the fp16 / bf16 dots of the flow tile)
        self_bj=64,         # SQUARE at 64: 0 B here (88 B on sm_90)
        step_bj=64,
        score_gy_max_o=32, score_gy_bj=64,
        hvp_bi=64, hvp_max_o=32,  # 64 output columns spilled 304 B; 32 rows x 64 columns still 224 B
        hvp_bj=16,          # 32 spilled 80 B for ratquad / imq
        hvp_warps=8,
        num_stages=1,
    ),
    (80, "fp64"): dict(
        bi=32, bj=32, bd=16, bc=16, num_warps=4, max_o=32, flow_bj=32, self_bj=32, step_bj=32, score_gy_max_o=32,
        score_gy_bj=32, hvp_bi=32, hvp_bj=32, hvp_max_o=32, hvp_warps=8, num_stages=3,  # no spills
    ),
    (90, "fp32"): dict(
        bi=64, bj=64, bd=32, bc=32, num_warps=8, max_o=64,
        flow_bj=64,
        self_bj=32,         # 64 spilled 184 B (SQUARE, Gaussian; 1 stage 92 B, 32 rows 20 B); 32: 0 B
        step_bj=64,
        score_gy_max_o=32, score_gy_bj=64,  # 64 output columns spilled 92 B
        hvp_bi=32, hvp_max_o=32,  # 64 x 64 spilled 492 B, 32 x 64 80 B, 64 x 32 108 B
        hvp_bj=32, hvp_warps=8,
        num_stages=3,       # 1 made _hvp_kernel spill more (660 B)
    ),
    (90, "half"): dict(
        bi=64, bj=64, bd=32, bc=32, num_warps=8, max_o=64,
        flow_bj=32,         # 64 spilled 544 B
        self_bj=32,         # 64 spilled 88 B (SQUARE, Gaussian; 1 stage 88 B); 32: 0 B
        step_bj=64,
        score_gy_max_o=32, score_gy_bj=64,  # the score kernels run in fp32: as fp32
        hvp_bi=64, hvp_max_o=32,  # 64 output columns spilled 84 B; 32 rows x 64 columns 136 B
        hvp_bj=32, hvp_warps=8,
        num_stages=3,
    ),
    (90, "fp64"): dict(
        bi=32, bj=32, bd=16, bc=16, num_warps=4, max_o=32, flow_bj=32, self_bj=32, step_bj=32, score_gy_max_o=32,
        score_gy_bj=32, hvp_bi=32, hvp_max_o=32, hvp_warps=8, num_stages=3,
        hvp_bj=16,          # 32 spilled 68 B (4 warps: 188 B)
    ),
}
# Overrides of a row when the fp32 contractions use TF32 dots (``prec == "tf32"``, allow_tf32 on)
_TF32 = {
    (80, "half"): dict(score_gy_bj=32),  # the score kernels run in fp32: as fp32
    (90, "fp32"): dict(
        hvp_bj=16,          # 32 spilled 328 B with TF32 (wgmma) dots (64 x 64 output: 320 B)
        score_bj=32,        # _score_bwd_x_kernel at 64 spilled 72 B (32 output columns)
    ),
    (90, "half"): dict(score_bj=32),  # the score kernels run in fp32: as fp32
    (80, "fp32"): dict(
        score_gy_bj=32,     # 64 rows spilled 216 B with TF32 dots (16 output columns: 236 B)
        hvp_bj=16,          # 32 spilled 96-180 B (Gaussian, SIDE=0 / SIDE=1 SELF with NEED_C)
    ),
}
# Overrides of a row for one kernel family (``LaunchConfig.for_family``; the launchers of the kernels with a
# FAMILY constexpr apply it: _pair_kernel, _hvp_kernel, _flow_step_kernel).  The polynomial family's
# (gamma a.b + c)^n by repeated squaring keeps several more BLOCK_I x BLOCK_J tiles live than the other
# families' phi; RationalQuadratic / InverseMultiquadric carry the per-component steep-power branch, and
# the polyharmonic flow step its log.  Spills at the row's blocks -> with the override (IEEE dots, largest
# output blocks; full matrix of `make aot`, 2026-12-07):
_FLOW16 = dict(flow_bj=16)  # fp64 flows of RQ / IMQ: 32 spilled 104-144 B
_FP64_HVP = dict(hvp_bj=16)  # sm_80 fp64 _hvp_kernel SIDE=1 SELF of RQ / IMQ / Laplacian: 32 spilled 104-300 B
_FAMILY = {
    (80, "fp64", RATIONAL_QUADRATIC): {**_FLOW16, **_FP64_HVP},
    (80, "fp64", INVERSE_MULTIQUADRIC): {**_FLOW16, **_FP64_HVP},
    (80, "fp64", LAPLACIAN): _FP64_HVP,
    (90, "fp64", RATIONAL_QUADRATIC): _FLOW16,
    (90, "fp64", INVERSE_MULTIQUADRIC): _FLOW16,
    (90, "fp32", POLYHARMONIC): dict(step_bj=32),  # _flow_step_kernel 72 B
    (90, "half", POLYHARMONIC): dict(step_bj=32),  # (runs in fp32): as fp32
    (80, "fp32", POLYNOMIAL): dict(
        step_bj=32,         # _flow_step_kernel 1048 B -> 0 B
    ),
    (80, "half", POLYNOMIAL): dict(
        flow_bj=16,         # _pair_kernel FLOW 656 B -> 0 B
        step_bj=32,         # _flow_step_kernel (runs in fp32): as fp32
        hvp_max_o=16,       # _hvp_kernel 152 B -> 0 B (32 rows instead, the same tile area: 60 B)
    ),
    (90, "fp32", POLYNOMIAL): dict(
        flow_bj=32,         # _pair_kernel FLOW 68 B -> 0 B
        step_bj=32,         # _flow_step_kernel 1540 B -> 24 B (16: 0 B; 32 output columns: 1140 B)
    ),
    (90, "half", POLYNOMIAL): dict(
        flow_bj=16,         # _pair_kernel FLOW 180 B -> 0 B
        step_bj=32,         # _flow_step_kernel (runs in fp32): as fp32
        hvp_bj=16,          # _hvp_kernel 1360 B -> 40 B, 64 B without NEED_C (32 rows instead: 712 B)
    ),
}
# Family overrides that apply only with TF32 dots (on top of _TF32 and _FAMILY): the 3xTF32 distance dots
# keep more of the tile live.  sm_80: _pair_kernel FLOW of RQ / IMQ 296-300 B, Energy / Laplacian 68-72 B;
# _flow_step_kernel of RQ / IMQ / polyharmonic 84-104 B.  sm_90: _pair_kernel FLOW of RQ / IMQ 80-104 B,
# Energy 68-72 B.
_FLOW32 = dict(flow_bj=32)
_STEP32 = dict(step_bj=32)
_FAMILY_TF32 = {
    **{(80, "fp32", f): {**_FLOW32, **_STEP32} for f in (RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC)},
    **{(80, "fp32", f): _FLOW32 for f in (ENERGY, LAPLACIAN)},
    **{(80, "half", f): _STEP32 for f in (RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, POLYHARMONIC)},
    (80, "fp32", POLYHARMONIC): _STEP32,
    **{(90, "fp32", f): _FLOW32 for f in (RATIONAL_QUADRATIC, INVERSE_MULTIQUADRIC, ENERGY)},
}
# TRITON_INTERPRET=1 (tests on CPU): small blocks, one warp
_INTERPRETER = dict(bi=16, bj=16, bd=16, bc=16, num_warps=1, max_o=16, flow_bj=16, self_bj=16, step_bj=16,
                    score_gy_max_o=16, score_gy_bj=16, hvp_bi=16, hvp_bj=16, hvp_max_o=16, hvp_warps=1,
                    num_stages=3)


def dtype_class(dtype: torch.dtype) -> str:
    """"fp64", "half" (fp16 / bf16) or "fp32": the dtype axis of the config table."""
    if dtype == torch.float64:
        return "fp64"
    return "half" if dtype in (torch.float16, torch.bfloat16) else "fp32"


class LaunchConfig:
    """Block sizes, warps, pipeline stages and dot precisions of every Triton launcher, for one input
    dtype and architecture.

    ``acc`` / ``acc_torch``: the accumulation dtype (fp64 for fp64 inputs, else fp32).  ``prec``: the
    ``tl.dot`` precision of fp32 contractions (``precision_of_fp32_contractions``); ``prec_raw``: that of
    dots on the raw inputs (fp16 / bf16 values are exact in TF32 and their products exact in fp32).
    The block sizes come from ``_TABLE[(arch, dtype class)]`` (see there; ``for_family`` applies the
    per-family overrides of ``_FAMILY``, for the kernels with a FAMILY constexpr); ``arch`` is 80 or 90, by
    default that of ``x``'s CUDA device (``cuda_arch``); the ahead-of-time compile check
    (gankernels/aot.py, docs/AOT.md) passes it explicitly.  ``target_programs`` for launches that split
    rows to fill the device.
    """

    def __init__(self, x: torch.Tensor, arch: int | None = None):
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
            self.arch = None
            row = _INTERPRETER
            self.target_programs = 8
        else:
            if arch is None:
                arch = cuda_arch(x.device)
            self.arch = 90 if arch >= 90 else 80
            row = _TABLE[(self.arch, dtype_class(x.dtype))]
            if self.prec == "tf32":
                row = {**row, **_TF32.get((self.arch, dtype_class(x.dtype)), {})}
        self._dtype_class = dtype_class(x.dtype)
        self._set_blocks(row)

    def _set_blocks(self, row: dict) -> None:
        self._row = row
        self.bi, self.bj, self.bd, self.bc = row["bi"], row["bj"], row["bd"], row["bc"]
        self.max_o, self.flow_bj, self.score_gy_max_o = row["max_o"], row["flow_bj"], row["score_gy_max_o"]
        self.self_bj, self.step_bj, self.score_gy_bj = row["self_bj"], row["step_bj"], row["score_gy_bj"]
        self.score_bj = row.get("score_bj", row["bj"])
        self.hvp_bi, self.hvp_bj, self.hvp_max_o = row["hvp_bi"], row["hvp_bj"], row["hvp_max_o"]
        self.num_warps, self.hvp_warps, self.num_stages = row["num_warps"], row["hvp_warps"], row["num_stages"]

    def for_family(self, family: int) -> "LaunchConfig":
        """This configuration with the overrides of kernel family ``family`` (``_FAMILY``, and ``_FAMILY_TF32``
        with TF32 dots) applied: a copy, or ``self`` where the family has none (and under the interpreter)."""
        key = (self.arch, self._dtype_class, int(family))
        over = {**_FAMILY.get(key, {}), **(_FAMILY_TF32.get(key, {}) if self.prec == "tf32" else {})}
        if not over:
            return self
        cfg = copy.copy(self)
        cfg._set_blocks({**self._row, **over})
        return cfg

    def cblock(self, c: int) -> int:
        """Block of weight columns for C columns."""
        return pow2_block(c, 16, self.bc)

    def oblock(self, n: int, cap: int | None = None) -> int:
        """Block of output columns for n columns (at most ``cap``, default ``max_o``)."""
        return pow2_block(n, 16, self.max_o if cap is None else cap)
