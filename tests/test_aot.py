"""AOT compile check of the Triton kernels (``gankernels.aot``), no GPU needed.

One representative variant per kernel x arch (sm_80, sm_90) in fp32 and in fp16
(the heaviest flags at the largest blocks, Gaussian, IEEE dots; the score
kernels upcast fp16, so their fp16 launch is the fp32 compile) is compiled
with ``triton.compile``; the pair kernel's SQUARE variant and the polynomial
family of the three kernels with a FAMILY constexpr (blocks of its own,
``LaunchConfig.for_family``) count as kernels of their own.  Each must compile, fit the architecture's shared
memory, and spill no more than today: ``KNOWN_SPILLS`` lists the variants that
spill now with the bytes measured (Triton 3.9.0, ptxas 12.9 for sm_80 and 13.4
for sm_90) -- the work left to do; every other variant must not spill at all.
The block sizes are those of the architecture's row of ``LaunchConfig``'s table (with the family's
overrides).
With another Triton version (other ptxas) the bound is the recorded bytes or
``aot.SPILL_LIMIT``, whichever is larger.  The full matrix is ``make aot``.

Runs in the plain (non-interpreted) pytest run; skipped without triton or
under ``TRITON_INTERPRET=1`` (interpreted kernels cannot be compiled).
"""
from __future__ import annotations

import os

import pytest

triton = pytest.importorskip("triton")
if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    pytest.skip("the AOT check compiles real kernels (unset TRITON_INTERPRET)", allow_module_level=True)

from gankernels import aot  # noqa: E402
from gankernels.kernels import POLYNOMIAL  # noqa: E402

MEASURED_WITH = "3.9.0"

# (kernel, dtype label, arch) -> spill bytes (max of stores and loads) measured with MEASURED_WITH.
# With the architecture-aware LaunchConfig table (triton_utils._TABLE, _FAMILY; before / after in
# docs/AOT.md) none is over aot.SPILL_LIMIT; these small ones remain.
KNOWN_SPILLS = {
    ("_gram_fwd_kernel", "fp16", 80): 8,
    ("_gram_fwd_kernel", "fp32", 80): 8,   # 0 with 3 stages; the sm_80 row has 1
    ("_gram_h_kernel", "fp32", 90): 36,
    ("_hvp_kernel", "fp16", 90): 28,
    ("_hvp_kernel", "fp32", 80): 24,
    ("_pair_kernel", "fp32", 90): 32,
    ("_score_bwd_x_kernel", "fp32/fp16", 90): 40,
    ("_flow_step_kernel+poly", "fp32/fp16", 90): 24,  # step_bj 32 (16: 0 B)
    ("_hvp_kernel+poly", "fp16", 90): 40,
    ("_hvp_kernel+poly", "fp32", 80): 24,  # as the Gaussian
}

VARIANTS = aot.representative(dtypes=("fp32", "fp16"))


def _id(v):
    return f"{_kernel(v)}-{'/'.join(d for d in v.dtypes if d in ('fp32', 'fp16'))}-sm{v.arch}"


def _kernel(v):
    """The kernel's name, with "+SQUARE" for the sums-and-squares variant of the pair kernel and "+poly" for
    the polynomial family."""
    poly = v.constexprs.get("FAMILY") == POLYNOMIAL
    return v.kernel + ("+SQUARE" if v.constexprs.get("SQUARE") else "") + ("+poly" if poly else "")


def _label(v):
    return "/".join(d for d in v.dtypes if d in ("fp32", "fp16"))


def test_matrix_covers_every_kernel():
    """Every @triton.jit kernel (not the jitted helpers) of the four kernel modules is in the matrix, for both archs."""
    import importlib

    from triton.runtime.jit import JITFunction

    helpers = {"_phi", "_tile_dots", "_tile_z", "_tile_z_hz", "_tile_p", "_hvp_flow_terms", "_hvp_store_d", "_normal",
               "_update", "_score_tile", "_unit_rows_and_h", "_span", "_distance_dot", "_program_block", "_z_from_dots",
               "_pow_steep"}
    want = set()
    for mod in ("triton_pairwise", "triton_score", "triton_langevin", "triton_pulling_away"):
        m = importlib.import_module(f"gankernels.{mod}")
        for name, obj in vars(m).items():
            if isinstance(obj, JITFunction) and obj.__module__ == m.__name__ and name not in helpers:
                want.add(name)
    got = {(v.kernel, v.arch) for v in VARIANTS}
    assert {(k, a) for k in want for a in aot.ARCHS} <= got, sorted({(k, a) for k in want for a in aot.ARCHS} - got)


@pytest.mark.parametrize("v", VARIANTS, ids=_id)
def test_compiles_without_new_spills(v):
    with aot._private_cache():
        r = aot.compile_variant(v)
    assert r.ok, r.error
    assert r.registers > 0
    assert r.shared <= aot.SHARED_LIMIT[v.arch]
    known = KNOWN_SPILLS.get((_kernel(v), _label(v), v.arch), 0)
    bound = known if triton.__version__ == MEASURED_WITH else max(known, aot.SPILL_LIMIT)
    assert r.spill <= bound, (f"{v.kernel} {v.config()} {_label(v)} sm_{v.arch} spills {r.spill} B "
                              f"(recorded: {known} B)")


def test_launch_config_arch(monkeypatch):
    """LaunchConfig picks its table row by architecture: explicit, or from the tensor's CUDA device."""
    import torch

    from gankernels.triton_utils import LaunchConfig

    x = aot._StandIn(torch.float32)
    assert LaunchConfig(x, arch=80).max_o == 32 and LaunchConfig(x, arch=80).num_stages == 1
    assert LaunchConfig(x, arch=90).max_o == 64
    assert LaunchConfig(x, arch=86).arch == 80 and LaunchConfig(x, arch=100).arch == 90
    for cap, arch in (((8, 0), 80), ((8, 9), 80), ((9, 0), 90), ((10, 0), 90)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, cap=cap: cap)
        assert LaunchConfig(x).arch == arch
    half = LaunchConfig(aot._StandIn(torch.float16), arch=90)
    assert half.flow_bj == 32 and half.bj == 64 and half.self_bj == 32


def test_launch_config_family():
    """for_family applies the per-family overrides (a copy) and leaves the other families' blocks alone."""
    import torch

    from gankernels.kernels import GAUSSIAN
    from gankernels.triton_utils import LaunchConfig

    for dt in (torch.float32, torch.float16, torch.float64):
        for arch in aot.ARCHS:
            cfg = LaunchConfig(aot._StandIn(dt), arch=arch)
            assert cfg.for_family(GAUSSIAN) is cfg
            poly = cfg.for_family(POLYNOMIAL)
            assert poly.step_bj <= cfg.step_bj and poly.flow_bj <= cfg.flow_bj and poly.hvp_bj <= cfg.hvp_bj
            assert (poly.bi, poly.bj, poly.max_o, poly.acc, poly.prec) == (cfg.bi, cfg.bj, cfg.max_o, cfg.acc, cfg.prec)
    cfg = LaunchConfig(aot._StandIn(torch.float32), arch=80)
    poly = cfg.for_family(POLYNOMIAL)
    assert poly.step_bj == 32 and cfg.step_bj == 64 and cfg.bj == 64
