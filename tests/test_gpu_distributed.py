"""GPU runs of the distributed code at world size 1 (``make test-gpu``; skipped without CUDA).

* ``gankernels.distributed`` under an NCCL process group of one rank, on CUDA tensors, against the
  single-process ops (values and gradients): the collectives' NCCL paths run for real.
* The trainer under ``torchrun --nproc-per-node 1 --device cuda``: at world size 1 it creates no
  process group (``train.parallel.session``), so this checks the launch and the CUDA training path only.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import child_env, torchrun_train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (NCCL)")


_NCCL_SCRIPT = r"""
import sys, torch, torch.distributed as dist
import gankernels as gk
from gankernels import distributed as gd
from gankernels.kernels import Gaussian
dist.init_process_group("nccl", init_method="file://" + sys.argv[1], rank=0, world_size=1)
torch.cuda.set_device(0)
g = torch.Generator().manual_seed(0)
x = torch.randn(300, 5, generator=g).cuda().requires_grad_()
y = torch.randn(200, 5, generator=g).cuda().requires_grad_()
k = Gaussian((1.0, 2.0))
a = gd.mmd2(x, y, k, "unbiased")
gxa, gya = torch.autograd.grad(a, (x, y))
b = gk.mmd2(x, y, k, "unbiased")
gxb, gyb = torch.autograd.grad(b, (x, y))
torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
torch.testing.assert_close(gxa, gxb, rtol=1e-4, atol=1e-6)
torch.testing.assert_close(gya, gyb, rtol=1e-4, atol=1e-6)
torch.testing.assert_close(gd.kernel_flow(x.detach(), y.detach(), k), gk.kernel_flow(x.detach(), y.detach(), k),
                           rtol=1e-5, atol=1e-6)
dist.destroy_process_group()
print("nccl ok")
"""


def _env():
    return child_env(drop=("TRITON_INTERPRET",))   # the real Triton kernels on the GPU


def test_distributed_ops_under_nccl_world_size_one(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_nccl_available():
        pytest.skip("this torch build has no NCCL")
    res = subprocess.run([sys.executable, "-c", _NCCL_SCRIPT, str(tmp_path / "store")], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "nccl ok" in res.stdout, res.stderr[-3000:]


def test_torchrun_trainer_on_cuda_world_size_one(tmp_path):
    out = tmp_path / "run"
    res, lines = torchrun_train(1, ["--recipe", "mmd-gan", "--data", "ring8", "--batch", "64", "--steps", "3",
                                    "--device", "cuda", "--out", str(out)], _env(), timeout=300)
    assert json.loads(lines[-1])["step"] == 3, res.stdout
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True, map_location="cpu")
    assert ckpt["step"] == 3 and ckpt["config"]["device"].startswith("cuda")
