"""Launch hygiene of the CUDA (Triton) kernels, on a GPU machine (skipped elsewhere; ``make test-gpu``).

* CUDA-graph capture: after a warm-up call, ``langevin_step_`` and the ``mmd2`` forward make no host
  synchronisation and no host-to-device copy, so they can be captured and replayed.
* Device guard: tensors on a device that is not the current one are computed on their own device.
* Precision policy: with TF32 switched on globally, squared distances keep about fp32 accuracy.
"""
from __future__ import annotations

import pytest
import torch

import gankernels as gk
from gankernels import reference as ref

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_langevin_step_inplace_is_graph_capturable():
    """The in-place op with a fixed seed (the public ``langevin_step_`` draws its seed from a
    torch.Generator with one ``.item()``, which is a host synchronisation: seed the op directly
    inside a captured region)."""
    x = torch.randn(4096, 8, device="cuda")
    drift = torch.randn_like(x)
    op = torch.ops.gankernels.langevin_step_
    with torch.no_grad():
        op(x, drift, 0.01, 1.0, 1234)  # warm-up: compiles, caches the constants
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            op(x, drift, 0.01, 0.0, 1234)
        before = x.clone()
        graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(x, before + 0.01 * drift)


@cuda
def test_mmd2_forward_is_graph_capturable():
    x = torch.randn(512, 16, device="cuda")
    y = torch.randn(512, 16, device="cuda") + 0.5
    kernel = gk.Gaussian((1.0, 2.0))
    want = gk.mmd2(x, y, kernel)  # warm-up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = gk.mmd2(x, y, kernel)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, want)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_a_device_that_is_not_current():
    x = torch.randn(300, 7, device="cuda:1")
    y = torch.randn(200, 7, device="cuda:1")
    kernel = gk.Gaussian(1.0)
    with torch.cuda.device(0):
        out = gk.kernel_flow(x, y, kernel)
        score = gk.smoothed_score(x, y, 0.5)
        pt = gk.pulling_away(x)
    assert out.device == x.device and score.device == x.device and pt.device == x.device
    torch.testing.assert_close(out.double().cpu(), ref.kernel_flow(x.double().cpu(), y.double().cpu(), kernel),
                               rtol=1e-4, atol=1e-5)


@cuda
def test_tf32_switched_on_keeps_distances_accurate():
    g = torch.Generator(device="cuda").manual_seed(0)
    x = 10.0 + torch.randn(1000, 64, device="cuda", generator=g)
    y = 10.0 + torch.randn(900, 64, device="cuda", generator=g)
    kernel = gk.Gaussian(4.0)
    oracle = ref.kernel_sum(x.double().cpu(), y.double().cpu(), kernel)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        ieee = gk.kernel_sum(x, y, kernel).double().cpu()
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = gk.kernel_sum(x, y, kernel).double().cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    err_ieee = float((ieee - oracle).abs().max() / oracle.abs().max())
    err_tf32 = float((tf32 - oracle).abs().max() / oracle.abs().max())
    # TF32 contractions (the kernel values times the weights) cost ~1e-3; distances must not add more
    assert err_ieee < 1e-5 and err_tf32 < 2e-3, (err_ieee, err_tf32)
