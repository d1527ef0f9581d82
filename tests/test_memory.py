"""Peak host memory of mmd2 forward + backward at N = M = 65536 (never an N x M matrix).

A Gram matrix of that size would be 16 GiB in float32 (65536^2 * 4 bytes) per block;
the fused ops must stay within O((N + M) D) memory.  Measured in a fresh subprocess
(so the peak RSS belongs to this computation and torch's import only) with the
process's high-water mark ``VmHWM`` of ``/proc/self/status`` -- not ``ru_maxrss``,
which Linux carries over from the parent across fork + exec, so that it would
report the pytest process's size; the bound is 1 GiB.  It also reports
the wall time of the forward + backward (printed with ``pytest -s`` / in the failure
message), which the pairwise engine should keep around a couple of minutes on 2 cores.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

LIMIT_BYTES = 1 << 30
TIMEOUT_S = 900

SCRIPT = textwrap.dedent("""
    import json, resource, time
    import torch
    import gankernels as gk

    def peak_kib():
        try:
            with open("/proc/self/status") as f:
                return int(next(line for line in f if line.startswith("VmHWM:")).split()[1])
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    g = torch.Generator().manual_seed(0)
    n = m = 65536
    d = 16
    x = torch.randn(n, d, generator=g).requires_grad_(True)
    y = (torch.randn(m, d, generator=g) * 1.1 + 0.1).requires_grad_(True)
    kernel = gk.Gaussian((1, 2, 4, 8, 16))
    base = peak_kib()
    t0 = time.perf_counter()
    loss = gk.mmd2(x, y, kernel)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    peak = peak_kib()
    print(json.dumps({
        "maxrss_kib": peak, "rss_before_kib": base, "forward_s": t1 - t0, "backward_s": t2 - t1,
        "loss": loss.item(), "grads_finite": bool(torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()),
        "threads": torch.get_num_threads(),
    }))
""")


@pytest.mark.slow
def test_mmd2_65536_peak_memory():
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nmmd2 65536 x 65536 x 16 float32: {res}")
    peak = res["maxrss_kib"] * 1024  # KiB
    assert res["grads_finite"], res
    assert res["loss"] == res["loss"], res  # not NaN
    assert peak < LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB >= 1024 MiB: {res}"
