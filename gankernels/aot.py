"""Ahead-of-time compile check of the Triton kernels (no GPU needed).

What: every ``@triton.jit`` kernel of ``triton_pairwise``, ``triton_score``, ``triton_langevin`` and
``triton_pulling_away`` is compiled with ``triton.compile`` for sm_80 and sm_90
in the configurations its launcher picks on CUDA, and each variant is checked
for a compile error, register spills over ``SPILL_LIMIT`` bytes and static
shared memory over the architecture's per-block limit.  The table records
registers, spill bytes, shared memory and how ``tl.dot`` was lowered
(``wgmma`` / ``mma`` with the operand type, or ``FMA`` when neither appears).

How: the block sizes, ``num_warps`` and ``num_stages`` come from the launchers' config class
(``triton_utils.LaunchConfig``, built for a stand-in CUDA tensor of each dtype with the
table row of the architecture compiled for, with ``allow_tf32`` off and on, and the
family's overrides where the kernel takes a family); the flag
combinations, pointer dtypes and family codes mirror the launch calls.
Registers and spills come from the ``ptxas -v`` log of the compile (or a second
``ptxas -v`` run where the log is not available).

    python -m gankernels.aot                 # the full matrix -> docs/AOT.md, exit 1 on a problem
    python -m gankernels.aot --count         # how many variants, nothing compiled
    python -m gankernels.aot --shard 0/4     # a quarter of it (merge the JSON files with --merge)

Limits:

* The matrix is launcher-reachable but not the full cross product (about
  15,000 compiles for the two architectures): it is swept one axis at a time
  around each kernel's heaviest point -- the largest block configuration (the
  one chosen for D and C of 64 or more, the worst case for registers and shared
  memory) with the flags that do the most work.  All 8 families are compiled
  there with every flag combination of ``_pair_kernel`` and every output
  combination of ``_hvp_kernel`` (in its self-mode SIDE=1 role); the other
  flag combinations and the smaller block configurations (small D or C) are
  compiled for the Gaussian family.  Each family is compiled with its own
  blocks (``LaunchConfig.for_family``: the polynomial family has smaller ones).
  Every dtype, and for fp32 dots both IEEE
  and TF32 (``allow_tf32``), is crossed with all of that.  Score / Langevin kernels upcast
  half inputs, so their fp16 / bf16 variants are the fp32 ones (compiled once).
* Integer arguments are compiled unspecialised and pointers as 16-byte aligned;
  at run time Triton may also specialise integers divisible by 16 (or equal to
  1), which can change vectorisation and register use a little.
* Static analysis only: nothing is launched, so no timing and no correctness.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import torch

from .kernels import GAUSSIAN, POLYNOMIAL
from .triton_utils import LaunchConfig

ARCHS = (80, 90)
SHARED_LIMIT = {80: 166_912, 90: 232_448}  # bytes per block with the opt-in carve-out
SPILL_LIMIT = 64  # bytes
KEPT_SECTION = "## Architecture-aware configurations"  # hand-written end of docs/AOT.md, kept by write_markdown
DTYPES = ("fp32", "fp16", "bf16", "fp64")
_TORCH_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
_FAMILIES = tuple(range(8))
_FAMILY_NAME = {0: "gaussian", 1: "ratquad", 2: "imq", 3: "laplacian", 4: "energy", 5: "polyharm",
                6: "poly", 7: "linear"}
_SIZES = (1, 16, 17, 32, 33, 64, 65, 4096)  # D / C values that reach every block choice of oblock / cblock
# Families of the representative variants of the kernels with a FAMILY constexpr: the Gaussian, and the
# polynomial family, which has blocks of its own (``LaunchConfig.for_family``, triton_utils._FAMILY)
_REPRESENTED_FAMILIES = (GAUSSIAN, POLYNOMIAL)


@dataclass
class Variant:
    """One compile: kernel, pointer / int types, constexprs, options, and the labels for the table."""
    module: str
    kernel: str
    arch: int
    dtypes: Tuple[str, ...]          # input dtypes that launch exactly this compile
    prec: str                        # "ieee" / "tf32" / "-" (no fp32 dot)
    sig: Dict[str, str]              # argument -> "*fp32", "i32", ... (constexprs excluded)
    constexprs: Dict[str, object]
    num_warps: int
    num_stages: int = 3               # Triton's default; the launchers pass LaunchConfig.num_stages
    representative: bool = False     # the heaviest flags at the largest blocks, Gaussian or poly (for the test)
    top: bool = True                 # the largest block configuration of its kernel and dtype

    def config(self) -> str:
        skip = {"ACC", "PREC", "PREC_RAW"}
        parts = []
        for k, v in self.constexprs.items():
            if k in skip or k == "RADIAL":
                continue
            if k == "FAMILY":
                parts.append(_FAMILY_NAME[v])
                continue
            if isinstance(v, bool):
                if v:
                    parts.append(k)
                continue
            parts.append(f"{k}={v}")
        if "PREC_RAW" in self.constexprs:
            parts.append(f"raw={self.constexprs['PREC_RAW']}")
        parts.append(f"w{self.num_warps}")
        if self.num_stages != 3:
            parts.append(f"s{self.num_stages}")
        return " ".join(parts)

    def _identity(self) -> list:
        """The compile's identity: kernel, arch, types, constexprs, options."""
        cx = {k: (str(v) if not isinstance(v, (bool, int, str)) else v) for k, v in self.constexprs.items()}
        key = [self.kernel, self.arch, self.sig, cx, self.num_warps]
        if self.num_stages != 3:
            key.append(self.num_stages)
        return key

    def key(self) -> str:
        return json.dumps(self._identity(), sort_keys=True)

    def result_key(self) -> str:
        """``key()``'s identity plus a hash of the kernel's source and of the jitted functions it calls
        (Triton's ``cache_key``): a stored result is reused only for the source it was compiled from."""
        return json.dumps([self._identity(), _source_hash(self.module, self.kernel)], sort_keys=True)


@dataclass
class Result:
    ok: bool
    error: str = ""
    registers: int = -1
    spill_stores: int = 0
    spill_loads: int = 0
    shared: int = 0
    dot: str = ""
    seconds: float = 0.0
    problems: List[str] = field(default_factory=list)

    @property
    def spill(self) -> int:
        return max(self.spill_stores, self.spill_loads)


# ----------------------------------------------------------------------------
# the matrix
# ----------------------------------------------------------------------------
class _StandIn:
    """What the config classes read from a tensor: dtype and a CUDA device."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.device = torch.device("cuda")


def _configs(cfg_class, dtype: str, arch: int):
    """[(prec label, cfg)] for allow_tf32 off / on (one entry when both give the same precisions), with the
    config table of ``arch``."""
    out = []
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            cfg = cfg_class(_StandIn(_TORCH_DTYPE[dtype]), arch=arch)
            label = (cfg.prec, getattr(cfg, "prec_raw", None))
            if all(label != seen for seen, _ in out):
                out.append((label, cfg))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return out


def _tname(t) -> str:
    """Triton signature name of a torch / triton dtype ('fp32', ...)."""
    s = str(t)
    return {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.float64": "fp64",
            "fp32": "fp32", "fp64": "fp64"}.get(s, s)


def _sig(kernel, ptrs: Dict[str, str], i64: Iterable[str] = ()) -> Dict[str, str]:
    """Pointers from ``ptrs`` (arg -> element type), i64 for ``i64``, i32 for every other non-constexpr."""
    sig = {}
    for name in kernel.arg_names:
        if name in ptrs:
            sig[name] = "*" + ptrs[name]
        elif name in i64:
            sig[name] = "i64"
        else:
            sig[name] = "i32"
    return sig


def _largest(values):
    return max(values)


def _launch_configs(arch: int):
    """(dtype, accumulation dtype, cfg, prec label, prec_raw label, first) for every dtype and each distinct
    allow_tf32 setting of it (``_configs``, table row of ``arch``); first: the dtype's first setting (allow_tf32
    off)."""
    for dt in DTYPES:
        for i, ((prec, raw), cfg) in enumerate(_configs(LaunchConfig, dt, arch)):
            yield dt, _tname(cfg.acc_torch), cfg, prec, raw, i == 0


def _output_blocks(cfg, cap: Optional[int] = None) -> List[int]:
    """Every output block ``cfg.oblock`` picks (with ``cap``), smallest first."""
    return sorted({cfg.oblock(n, cap) for n in _SIZES})


def _variant(kernel, arch: int, dt: str, prec: str, cfg, ptrs: Dict[str, str], constexprs: Dict[str, object], *,
             i64: Iterable[str] = (), num_warps: Optional[int] = None, num_stages: Optional[int] = None,
             representative: bool = False, top: bool = True) -> Variant:
    """The compile of one launch of ``kernel`` (a jitted kernel of a gankernels module) for input dtype ``dt``:
    signature from ``ptrs`` and ``i64`` (see ``_sig``), warps and stages those of ``cfg`` unless given."""
    return Variant(kernel.__module__.rpartition(".")[2], kernel.__name__, arch, (dt,), prec, _sig(kernel, ptrs, i64),
                   constexprs, cfg.num_warps if num_warps is None else num_warps,
                   num_stages=cfg.num_stages if num_stages is None else num_stages,
                   representative=representative, top=top)


def _engine_variants(arch: int) -> List[Variant]:
    from . import triton_pairwise as te

    out: List[Variant] = []
    for dt, acc, cfg, prec, _raw, _first in _launch_configs(arch):
        ob = _output_blocks(cfg)
        cb = sorted({cfg.cblock(n) for n in _SIZES})
        cpair = sorted({(cfg.cblock(n), cfg.oblock(n)) for n in _SIZES})  # blocks fixed by one C
        common = dict(ACC=cfg.acc, PREC=cfg.prec)
        pair_ptrs = {"R": dt, "Q": dt, "RC": dt, "QC": dt, "OUT": acc, "OUT2": acc, "P": acc}
        # _pair_kernel: FLOW=False has NO = C (both blocks from C); FLOW=True has NO = D
        for flow in (False, True):
            blocks = cpair if not flow else [(c, o) for c in cb for o in ob]
            top = (max(b[0] for b in blocks), max(b[1] for b in blocks))
            for self_mode in (False, True):
                for fam in _FAMILIES:
                    fc = cfg.for_family(fam)  # _FAMILY changes no bc / max_o: the blocks above hold
                    for bc, bo in blocks:
                        if (bc, bo) != top and (fam != 0 or self_mode):
                            continue
                        cx = dict(FAMILY=fam, RADIAL=fam not in te._DOT_FAMILIES, FLOW=flow, SELF=self_mode,
                                  SQUARE=False, **common, BLOCK_I=fc.bi,
                                  BLOCK_J=fc.flow_bj if flow else fc.self_bj if self_mode else fc.bj,
                                  BLOCK_D=fc.bd, BLOCK_C=bc, BLOCK_O=bo)
                        out.append(_variant(te._pair_kernel, arch, dt, prec, fc, pair_ptrs, cx,
                                            representative=flow and not self_mode and (bc, bo) == top
                                            and fam in _REPRESENTED_FAMILIES, top=(bc, bo) == top))
        # SQUARE (ksum_and_square, self mode): the variance's two indicator columns, blocks of 16
        for fam in _FAMILIES:
            fc = cfg.for_family(fam)
            cx = dict(FAMILY=fam, RADIAL=fam not in te._DOT_FAMILIES, FLOW=False, SELF=True, SQUARE=True,
                      **common, BLOCK_I=fc.bi, BLOCK_J=fc.self_bj, BLOCK_D=fc.bd, BLOCK_C=fc.cblock(2),
                      BLOCK_O=fc.oblock(2))
            out.append(_variant(te._pair_kernel, arch, dt, prec, fc, pair_ptrs, cx, representative=fam == 0,
                                top=False))
        # _hvp_kernel: (SIDE, SELF, ACCUM_D) as the two launch pairs pass them; NEED_D / NEED_C from the mask.
        # Swept one axis at a time around the heaviest point (SIDE=1 self mode with ACCUM_D, both outputs,
        # largest blocks): families x outputs there, roles x outputs and block sizes for the Gaussian.
        roles = [(0, False, False), (1, False, False), (0, True, False), (1, True, True)]
        needs = [(True, True), (True, False), (False, True)]
        heavy = roles[3]
        for role in roles:
            side, self_mode, accum = role
            for need_d, need_c in needs:
                for fam in _FAMILIES:
                    fc = cfg.for_family(fam)  # a family's overrides may change hvp_max_o too
                    ob_h = _output_blocks(fc, fc.hvp_max_o)
                    cpair_h = sorted({(fc.cblock(n), fc.oblock(n, fc.hvp_max_o)) for n in _SIZES})
                    top = (max(c for c, _ in cpair_h), max(o for _, o in cpair_h), max(ob_h))
                    for bc, boc in cpair_h:
                        for bod in ob_h:
                            blocks_top = (bc, boc, bod) == top
                            if fam != 0 and not (role == heavy and blocks_top):
                                continue
                            if not blocks_top and not (role == heavy and need_d and need_c):
                                continue
                            ptrs = {"R": dt, "Q": dt, "H": dt, "RC": dt, "QC": dt, "OUTD": acc if need_d else dt,
                                    "OUTC": acc if need_c else dt, "P": acc}
                            cx = dict(FAMILY=fam, RADIAL=fam not in te._DOT_FAMILIES, SIDE=side, SELF=self_mode,
                                      NEED_D=need_d, NEED_C=need_c, ACCUM_D=accum, **common,
                                      BLOCK_I=fc.hvp_bi, BLOCK_J=fc.hvp_bj, BLOCK_D=fc.bd, BLOCK_C=bc,
                                      BLOCK_OD=bod, BLOCK_OC=boc)
                            out.append(_variant(te._hvp_kernel, arch, dt, prec, fc, ptrs, cx,
                                                num_warps=fc.hvp_warps,
                                                representative=role == heavy and need_d and need_c and blocks_top
                                                and fam in _REPRESENTED_FAMILIES, top=blocks_top))
    return out


def _score_variants(arch: int) -> List[Variant]:
    from . import triton_pairwise as te
    from . import triton_langevin as tlg
    from . import triton_score as ts

    out: List[Variant] = []
    for dt, acc, cfg, prec, _raw, _first in _launch_configs(arch):
        ob = _output_blocks(cfg)
        blk = dict(ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.score_bj, BLOCK_D=cfg.bd)
        # every pointer of these kernels is in the accumulation dtype (inputs are shifted / upcast first)
        if prec == "ieee":  # no dot: one variant per dtype; the launcher's BLOCK = 1024, 4 warps
            for noise in (False, True):
                out.append(_variant(tlg._langevin_kernel, arch, dt, "-", cfg,
                                    {"X": dt, "DR": dt, "OUT": dt, "SC": acc}, dict(NOISE=noise, BLOCK=1024),
                                    i64=("seed",), num_warps=4, num_stages=3, representative=noise))
        for bo in ob:
            top = bo == max(ob)
            for has_w, update in ((False, False), (True, False), (False, True)):
                out.append(_variant(ts._score_kernel, arch, dt, prec, cfg,
                                    {k: acc for k in ("X", "Y", "LOGW", "SCORE", "LSE", "XOUT", "SC")},
                                    dict(HAS_W=has_w, UPDATE=update, NOISE=update, **blk, BLOCK_O=bo),
                                    i64=("seed",), representative=top and has_w, top=top))
            for has_w in (False, True):
                out.append(_variant(ts._score_bwd_x_kernel, arch, dt, prec, cfg,
                                    {k: acc for k in ("X", "Y", "G", "W", "LSE", "GBAR", "SC", "GX")},
                                    dict(HAS_W=has_w, **blk, BLOCK_O=bo), representative=top and has_w, top=top))
            for noise in (False, True):
                for fam in _FAMILIES:
                    if fam != 0 and not top:
                        continue
                    fc = cfg.for_family(fam)
                    out.append(_variant(tlg._flow_step_kernel, arch, dt, prec, fc,
                                        {k: acc for k in ("X", "C", "W", "P", "XOUT", "SC")},
                                        dict(FAMILY=fam, RADIAL=fam not in te._DOT_FAMILIES, NOISE=noise,
                                             **dict(blk, BLOCK_I=fc.bi, BLOCK_J=fc.step_bj), BLOCK_O=bo),
                                        i64=("seed",), representative=top and noise and fam in _REPRESENTED_FAMILIES,
                                        top=top))
        ob_gy = _output_blocks(cfg, cfg.score_gy_max_o)  # its own output block cap
        for bo in ob_gy:
            top = bo == max(ob_gy)
            for has_w, need_y, need_w in ((False, True, False), (True, True, False), (True, True, True),
                                          (True, False, True)):
                out.append(_variant(ts._score_bwd_y_kernel, arch, dt, prec, cfg,
                                    {k: acc for k in ("X", "Y", "G", "W", "LSE", "GBAR", "SC", "GY", "GW")},
                                    dict(HAS_W=has_w, NEED_Y=need_y, NEED_W=need_w,
                                         **dict(blk, BLOCK_J=cfg.score_gy_bj), BLOCK_O=bo),
                                    representative=top and need_y and need_w, top=top))
    return out


def _pulling_away_variants(arch: int) -> List[Variant]:
    from . import triton_pulling_away as tp

    out: List[Variant] = []
    for dt, acc, cfg, prec, raw, first in _launch_configs(arch):
        ob = _output_blocks(cfg)
        for bo in ob:
            top = bo == max(ob)
            if first:  # no dot in these two
                out.append(_variant(tp._norm_kernel, arch, dt, "-", cfg,
                                    {"S": dt, "EPS": "fp64", "INV": acc, "Q": acc, "PROJ": acc},
                                    dict(ACC=cfg.acc, BLOCK_N=cfg.bi, BLOCK_D=bo), representative=top, top=top))
                for diag in (False, True):
                    out.append(_variant(tp._finish_kernel, arch, dt, "-", cfg,
                                        {"S": dt, "INV": acc, "Q": acc, "PROJ": acc, "H": acc, "C": acc, "OUT": dt},
                                        dict(DIAG=diag, ACC=cfg.acc, BLOCK_N=cfg.bi, BLOCK_D=bo),
                                        representative=top and diag, top=top))
            out.append(_variant(tp._gram_h_kernel, arch, dt, prec, cfg, {"S": dt, "INV": acc, "H": acc},
                                dict(ACC=cfg.acc, PREC_RAW=raw, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.bi,
                                     BLOCK_D=cfg.bd, BLOCK_O=bo),
                                representative=top and first, top=top))
            out.append(_variant(tp._cov_kernel, arch, dt, prec, cfg, {"S": dt, "INV": acc, "PART": acc},
                                dict(ACC=cfg.acc, PREC=cfg.prec, BLOCK_N=cfg.bi, BLOCK_A=bo, BLOCK_B=bo),
                                representative=top and first, top=top))
            out.append(_variant(tp._cov_h_kernel, arch, dt, prec, cfg, {"S": dt, "INV": acc, "G": acc, "H": acc},
                                dict(ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_K=cfg.bd, BLOCK_O=bo),
                                representative=top and first, top=top))
        out.append(_variant(tp._gram_fwd_kernel, arch, dt, prec, cfg, {"S": dt, "INV": acc, "PART": acc},
                            dict(ACC=cfg.acc, PREC_RAW=raw, BLOCK=cfg.bi, BLOCK_D=cfg.bd), representative=first))
    return out


def _merge_dtypes(variants: List[Variant]) -> List[Variant]:
    """One variant per distinct compile; its dtype label lists every input dtype that launches it."""
    seen: Dict[str, Variant] = {}
    for v in variants:
        k = v.key()
        if k in seen:
            old = seen[k]
            old.dtypes = tuple(dict.fromkeys(old.dtypes + v.dtypes))
            old.representative = old.representative or v.representative
            if old.prec != v.prec:
                old.prec = "/".join(dict.fromkeys(old.prec.split("/") + [v.prec]))
        else:
            seen[k] = v
    return list(seen.values())


def matrix(archs: Iterable[int] = ARCHS) -> List[Variant]:
    """Every variant, ordered so that a partial run covers every kernel first: the representative ones,
    then the ieee ones at the largest blocks, then tf32, then the smaller block configurations."""
    _require_compiler()
    out: List[Variant] = []
    for arch in archs:
        out += _engine_variants(arch) + _score_variants(arch) + _pulling_away_variants(arch)
    out = _merge_dtypes(out)

    def priority(v: Variant):
        return (not v.representative, not v.top, "tf32" in v.prec, v.constexprs.get("FAMILY", 0), v.kernel, v.arch)

    return sorted(out, key=priority)


def representative(archs: Iterable[int] = ARCHS, dtypes: Iterable[str] = DTYPES) -> List[Variant]:
    """One variant per kernel x dtype x arch (heaviest flags, largest blocks, Gaussian, ieee); the pair
    kernel's SQUARE variant counts as a kernel of its own, and so does the polynomial family of each kernel
    with a FAMILY constexpr (its own blocks: ``LaunchConfig.for_family``)."""
    want = set(dtypes)
    out = [v for v in matrix(archs) if v.representative and "tf32" not in v.prec.split("/")[0]]
    keep, seen = [], set()
    for v in out:
        ds = [d for d in v.dtypes if d in want]
        if not ds:
            continue
        k = (v.kernel, bool(v.constexprs.get("SQUARE")), v.constexprs.get("FAMILY", 0), v.arch, v.dtypes)
        if k not in seen:
            seen.add(k)
            keep.append(v)
    return keep


# ----------------------------------------------------------------------------
# compiling
# ----------------------------------------------------------------------------
def _require_compiler():
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise RuntimeError("gankernels.aot compiles real kernels: unset TRITON_INTERPRET")
    from . import triton_pairwise as te
    if not te.HAS_TRITON:
        raise RuntimeError("gankernels.aot needs triton")


def _jitted(module: str, kernel: str):
    import importlib
    return getattr(importlib.import_module(f"gankernels.{module}"), kernel)


def _kernel(v: Variant):
    return _jitted(v.module, v.kernel)


@functools.lru_cache(maxsize=None)
def _source_hash(module: str, kernel: str) -> str:
    return _jitted(module, kernel).cache_key[:16]


_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REG_RE = re.compile(r"Used (\d+) registers")
_MMA_RE = re.compile(r"\bmma\.sync\.aligned\.m\d+n\d+k\d+\.row\.col\.\w+\.(\w+)\.")
_WGMMA_RE = re.compile(r"\bwgmma\.mma_async\.sync\.aligned\.m\d+n\d+k\d+\.\w+\.(\w+)")


def dot_lowering(ptx: str) -> str:
    """'wgmma(f16)', 'mma(tf32,f64)', ... from the PTX; 'FMA' when no tensor-core instruction appears."""
    kinds = []
    for name, rx in (("wgmma", _WGMMA_RE), ("mma", _MMA_RE)):
        types = sorted(set(rx.findall(ptx)))
        if types:
            kinds.append(f"{name}({','.join(types)})")
    return " ".join(kinds) if kinds else "FMA"


def _ptxas_log(ptx: str, arch: int) -> str:
    """A second ``ptxas -v`` run, used where the compile's own log was not captured."""
    from triton.backends.nvidia import compiler as nv
    path = nv.get_ptxas(arch).path if hasattr(nv, "get_ptxas") else nv.knobs.nvidia.ptxas.path
    name = nv.sm_arch_from_capability(arch)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([path, "-v", "--regAllocOptLevel=2", f"--gpu-name={name}", src, "-o",
                            os.path.join(d, "k.o")], capture_output=True, text=True)
        return r.stdout + r.stderr


def compile_variant(v: Variant) -> Result:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernel(v)
    sig = dict(v.sig)
    for k in v.constexprs:
        sig[k] = "constexpr"
    sig = {n: sig[n] for n in fn.arg_names}
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n, t in v.sig.items() if t.startswith("*")}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): c for k, c in v.constexprs.items()},
                    attrs=attrs)
    knobs = getattr(triton, "knobs", None)
    t0 = time.time()
    buf = io.StringIO()
    try:
        saved = None
        if knobs is not None and hasattr(knobs.nvidia, "dump_ptxas_log"):
            saved = knobs.nvidia.dump_ptxas_log
            knobs.nvidia.dump_ptxas_log = True
        try:
            with contextlib.redirect_stdout(buf):
                c = triton.compile(src, target=GPUTarget("cuda", v.arch, 32),
                                   options={"num_warps": v.num_warps, "num_stages": v.num_stages,
                                            "enable_fp_fusion": True})
        finally:
            if saved is not None:
                knobs.nvidia.dump_ptxas_log = saved
    except Exception as e:  # the compile error is the result
        msg = " ".join(str(e).split())
        return Result(ok=False, error=f"{type(e).__name__}: {msg[:300]}", seconds=time.time() - t0,
                      problems=["compile error"])
    ptx = c.asm["ptx"]
    log = buf.getvalue()
    if not _REG_RE.search(log):
        log = _ptxas_log(ptx, v.arch)
    regs = _REG_RE.search(log)
    spill = _SPILL_RE.search(log)
    r = Result(ok=True, registers=int(regs.group(1)) if regs else -1,
               spill_stores=int(spill.group(1)) if spill else 0, spill_loads=int(spill.group(2)) if spill else 0,
               shared=int(c.metadata.shared), dot=dot_lowering(ptx), seconds=time.time() - t0)
    if r.spill > SPILL_LIMIT:
        r.problems.append(f"spills {r.spill} B")
    if r.shared > SHARED_LIMIT[v.arch]:
        r.problems.append(f"shared {r.shared} B > {SHARED_LIMIT[v.arch]}")
    return r


@contextlib.contextmanager
def _private_cache():
    """A throw-away Triton cache, so every variant is really compiled (and its ptxas log seen)."""
    with tempfile.TemporaryDirectory(prefix="gk-aot-") as d:
        old = os.environ.get("TRITON_CACHE_DIR")
        os.environ["TRITON_CACHE_DIR"] = d
        try:
            import triton
            knobs = getattr(triton, "knobs", None)
            old_knob = knobs.cache.dir if knobs is not None else None
            if knobs is not None:
                knobs.cache.dir = d
            yield
        finally:
            if knobs is not None:
                knobs.cache.dir = old_knob
            if old is None:
                os.environ.pop("TRITON_CACHE_DIR", None)
            else:
                os.environ["TRITON_CACHE_DIR"] = old


# ----------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------
def _versions() -> Dict[str, str]:
    import triton
    out = {"triton": triton.__version__, "torch": torch.__version__}
    try:
        from triton.backends.nvidia import compiler as nv
        for arch in ARCHS:
            text = nv.get_ptxas_version(arch)
            m = re.search(r"release ([\d.]+)", text)
            out[f"ptxas sm_{arch}"] = m.group(1) if m else "?"
    except Exception:  # pragma: no cover - older triton layouts
        pass
    return out


def write_markdown(path: str, rows: List[Tuple[Variant, Result]], total: int, meta: Dict[str, str]) -> None:
    done = len(rows)
    failed = [(v, r) for v, r in rows if not r.ok]
    spilling = [(v, r) for v, r in rows if r.ok and r.spill > 0]
    over = [(v, r) for v, r in rows if r.ok and r.spill > SPILL_LIMIT]
    big = [(v, r) for v, r in rows if r.ok and r.shared > SHARED_LIMIT[v.arch]]
    lines = ["# AOT compile check of the Triton kernels", ""]
    if done < total:
        lines += [f"**PARTIAL TABLE: {done} of {total} variants compiled.** The run did not reach the end; "
                  "`make aot` resumes it from `docs/aot_results.jsonl` and compiles the rest.  The order is "
                  "by priority: first one representative variant per kernel x dtype x arch, then every family "
                  "and flag combination at the largest blocks with IEEE dots, then TF32, then the smaller "
                  "block configurations.", ""]
    lines += [
        f"Produced by `python -m gankernels.aot` on {meta['date']} with Triton {meta['triton']} "
        f"(ptxas {meta.get('ptxas sm_80', '?')} for sm_80, {meta.get('ptxas sm_90', '?')} for sm_90), "
        f"torch {meta['torch']}, without a GPU.  {meta.get('note', '')}".rstrip(),
        "",
        "Each row is one `triton.compile` of a kernel in a configuration its launcher picks on CUDA "
        "(block sizes and warps from the config classes; see the module docstring for how the matrix is "
        "built and what it leaves out).  Registers and spill bytes (max of stores and loads) from `ptxas -v`; "
        "shared = static shared memory per block; dot = tensor-core instructions found in the PTX "
        "(operand type), FMA when none.  Limits: spills <= "
        f"{SPILL_LIMIT} B, shared <= {SHARED_LIMIT[80]:,} B (sm_80) / {SHARED_LIMIT[90]:,} B (sm_90).",
        "",
        "## Summary",
        "",
        f"* compiled: {done - len(failed)} of {done} attempted ({total} in the matrix); compile errors: {len(failed)}",
        f"* variants that spill at all: {len(spilling)}; over {SPILL_LIMIT} B: {len(over)}",
        f"* shared memory over the limit: {len(big)}",
    ]
    for arch in ARCHS:
        peaks = {}
        for v, r in rows:
            if r.ok and v.arch == arch:
                peaks[v.kernel] = max(peaks.get(v.kernel, 0), r.shared)
        if peaks:
            lines.append(f"* sm_{arch} shared-memory peak per kernel: "
                         + ", ".join(f"`{k}` {s:,} B" for k, s in sorted(peaks.items())))
    if spilling:
        lines += ["", "### Spills by kernel, arch and dtype (variants / max bytes)", "",
                  "| kernel | arch | dtype | prec | spilling variants | max spill (B) |", "|---|---|---|---|---:|---:|"]
        groups: Dict[Tuple, List[int]] = {}
        for v, r in spilling:
            groups.setdefault((v.kernel, v.arch, "/".join(v.dtypes), v.prec), []).append(r.spill)
        for (k, a, d, p), s in sorted(groups.items()):
            lines.append(f"| `{k}` | sm_{a} | {d} | {p} | {len(s)} | {max(s)} |")
    if failed:
        lines += ["", "### Compile errors", ""]
        for v, r in failed:
            lines.append(f"* `{v.kernel}` {v.config()} {'/'.join(v.dtypes)} sm_{v.arch}: {r.error}")
    lines += ["", "## All variants", "",
              "| kernel | config | dtype | prec | arch | registers | spill (B) | shared (B) | dot | status |",
              "|---|---|---|---|---|---:|---:|---:|---|---|"]
    for v, r in sorted(rows, key=lambda vr: (vr[0].kernel, vr[0].arch, vr[0].dtypes, vr[0].prec, vr[0].config())):
        status = "ok" if not r.problems else "; ".join(r.problems)
        if r.ok:
            lines.append(f"| `{v.kernel}` | {v.config()} | {'/'.join(v.dtypes)} | {v.prec} | sm_{v.arch} | "
                         f"{r.registers} | {r.spill} | {r.shared:,} | {r.dot} | {status} |")
        else:
            lines.append(f"| `{v.kernel}` | {v.config()} | {'/'.join(v.dtypes)} | {v.prec} | sm_{v.arch} | "
                         f"- | - | - | - | {status} |")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    kept = ""
    if os.path.exists(path):  # the hand-written section at the end is kept
        with open(path) as f:
            old = f.read()
        if KEPT_SECTION in old:
            kept = "\n" + old[old.index(KEPT_SECTION):]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + kept)


def _load_results(path: str) -> Dict[str, dict]:
    out = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    out[rec["key"]] = rec
    return out


def _result_of(rec: dict) -> Result:
    return Result(**{k: rec[k] for k in ("ok", "error", "registers", "spill_stores", "spill_loads", "shared",
                                         "dot", "seconds", "problems")})


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gankernels.aot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)")
    ap.add_argument("--md", default="docs/AOT.md", help="markdown table to write ('' for none)")
    ap.add_argument("--results", default="docs/aot_results.jsonl",
                    help="one JSON line per compiled variant; a stored line is reused for the same Triton "
                         "version and kernel source")
    ap.add_argument("--representative", action="store_true", help="one variant per kernel x dtype x arch only")
    ap.add_argument("--shard", default="0/1", help="i/n: compile every n-th variant starting at i")
    ap.add_argument("--limit", type=int, default=0, help="stop after this many new compiles (0: no limit)")
    ap.add_argument("--count", action="store_true", help="print the size of the matrix and exit")
    ap.add_argument("--report-only", action="store_true",
                    help="compile nothing: write the table from the variants already in --results")
    args = ap.parse_args(argv)

    import triton
    archs = tuple(int(a) for a in args.arch.split(","))
    variants = representative(archs) if args.representative else matrix(archs)
    if args.count:
        by = {}
        for v in variants:
            by[(v.kernel, v.arch)] = by.get((v.kernel, v.arch), 0) + 1
        for (k, a), n in sorted(by.items()):
            print(f"{k:24s} sm_{a}  {n}")
        print(f"total {len(variants)}")
        return 0
    i, n = (int(s) for s in args.shard.split("/"))
    mine = variants[i::n]
    done = {k: rec for k, rec in _load_results(args.results).items() if rec.get("triton") == triton.__version__}
    if args.results:
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    meta = dict(_versions(), date=datetime.date.today().isoformat())
    rows: List[Tuple[Variant, Result]] = []
    new = 0
    t_start = time.time()
    with _private_cache():
        for idx, v in enumerate(mine):
            k = v.result_key()
            if k in done:
                rows.append((v, _result_of(done[k])))
                continue
            if args.report_only:
                continue
            if args.limit and new >= args.limit:
                break
            r = compile_variant(v)
            new += 1
            rows.append((v, r))
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps(dict(key=k, triton=triton.__version__, **r.__dict__)) + "\n")
            state = "ok" if not r.problems else "; ".join(r.problems)
            print(f"[{idx + 1}/{len(mine)}] {v.kernel} {v.config()} {'/'.join(v.dtypes)} {v.prec} sm_{v.arch}: "
                  f"regs {r.registers} spill {r.spill} shared {r.shared} {r.dot} {r.seconds:.1f}s {state}",
                  flush=True)
            if args.md and new % 25 == 0:
                write_markdown(args.md, rows, len(mine), meta)
    if args.md:
        secs = sum(r.seconds for _, r in rows)
        note = (f"Compile time of the {len(rows)} variants: {secs / 60:.0f} min on one core of a shared "
                f"2-core machine (mean {secs / max(len(rows), 1):.1f} s per variant).")
        write_markdown(args.md, rows, len(mine), dict(meta, note=note))
    bad = [(v, r) for v, r in rows if r.problems]
    print(f"{len(rows)} of {len(mine)} variants; {len(bad)} with problems "
          f"(compile errors, spills over {SPILL_LIMIT} B, shared memory over the limit)")
    return 1 if bad or len(rows) < len(mine) else 0


if __name__ == "__main__":
    sys.exit(main())
