"""The AVX-512 tile GEMM (csrc/gemm.h) against a float64 loop, built standalone with the system C++
compiler (tests/gemm_check.cpp).  The engine's ops exercise it through their own float64 references
too; this checks the GEMM's contract directly: op(A) op(B) for every transpose case, beta = 0 ignoring
NaN in C, beta != 0, shapes off the micro-tile and cache-block edges, and no writes outside C."""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _has_avx512() -> bool:
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return all(f" {f}" in info for f in ("avx512f", "avx512vl", "avx512dq", "avx512bw"))


@pytest.mark.skipif(not _has_avx512(), reason="the CPU has no AVX-512 (the engine uses BLAS there)")
@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_tile_gemm_matches_float64(tmp_path):
    exe = tmp_path / "gemm_check"
    subprocess.run(["g++", "-O2", "-std=c++17", "-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw", "-mfma",
                    f"-I{ROOT / 'csrc'}", str(ROOT / "tests" / "gemm_check.cpp"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok")
