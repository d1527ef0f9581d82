"""The preflight of make test-gpu / bench-gpu (gankernels.gpucheck): version parsing, the driver rule,
and the clear refusal on a machine without CUDA."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gankernels import gpucheck as g


def test_parsing():
    assert g.parse_cuda_int(12040) == (12, 4)
    assert g.parse_cuda_int(13000) == (13, 0)
    assert g.parse_ptxas_version("Cuda compilation tools, release 12.9, V12.9.86") == (12, 9)
    assert g.parse_ptxas_version("no version here") is None
    assert g.parse_smi_cuda("| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |") == (12, 4)


@pytest.mark.parametrize("driver, ptxas, state", [((12, 4), (13, 4), "too old"), ((12, 4), (12, 9), "warn"),
                                                  ((13, 0), (12, 9), "ok"), ((12, 9), (12, 9), "ok")])
def test_driver_rule(driver, ptxas, state):
    got, msg = g.verdict(driver, ptxas)
    assert got == state
    assert f"{ptxas[0]}.{ptxas[1]}" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_no_cuda_is_a_clear_refusal():
    res = subprocess.run([sys.executable, "-m", "gankernels.gpucheck"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "no CUDA device" in res.stdout and "make test" in res.stdout
