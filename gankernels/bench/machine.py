"""What the benchmark runs on, and the empirical ceilings of that machine.

Machine description (CPU model, SIMD flags, clock, CUDA device name, library
versions, git revision) for the report header and every row, and the two
roofline ceilings measured at the start of a run:

* fp32 GEMM rate: ``torch.mm`` of two square fp32 matrices (2048 on CPU, 8192 on
  CUDA) at the run's thread count, 2 n^3 flops per call, the fastest of 10 calls;
* copy bandwidth: ``dst.copy_(src)`` of 2^26 fp32 (256 MiB; 2^28 on CUDA), counted
  as read + write = 2 x the buffer size per call, the fastest of 10 calls.

An op whose model flops / flops ceiling exceeds its model bytes / bandwidth is
compute bound, else memory bound; its roofline time is the larger of the two
(see ``roofline``).
"""
from __future__ import annotations

import os
import platform
import subprocess
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpuinfo(key: str) -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_mhz() -> Optional[float]:
    """The first "cpu MHz" of /proc/cpuinfo (a nominal value inside a VM)."""
    v = _cpuinfo("cpu MHz")
    try:
        return float(v) if v else None
    except ValueError:
        return None


def simd_summary() -> str:
    flags = set((_cpuinfo("flags") or "").split())
    isa = [f for f in ("avx512f", "avx2", "fma", "aes", "vaes") if f in flags]
    return "+".join(isa) if isa else "no AVX2/FMA flags"


def logical_cpus() -> int:
    return os.cpu_count() or 1


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def git_revision() -> str:
    """Short revision of the checkout the package was imported from (+dirty), or "unknown"."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=_PACKAGE_DIR, capture_output=True, text=True,  # noqa: E731
                                        timeout=10).stdout.strip()
        rev = run("rev-parse", "--short", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> Dict[str, Optional[str]]:
    """torch, triton, gankernels and the optional baselines' versions (None when not installed)."""
    import importlib.metadata as md

    out: Dict[str, Optional[str]] = {"torch": torch.__version__}
    for name in ("triton", "gankernels", "pykeops", "geomloss", "torchmetrics"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    if out["gankernels"] is None:
        import gankernels
        out["gankernels"] = gankernels.__version__
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]; nan for no values."""
    v = sorted(float(a) for a in values)
    if not v:
        return float("nan")
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def wall_times(fn: Callable[[], object], reps: int, warmup: int = 1,
               sync: Callable[[], None] = lambda: None) -> List[float]:
    """Wall-clock seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed ones (``sync`` ends each call)."""
    for _ in range(warmup):
        fn()
        sync()
    times: List[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def _best_time(fn: Callable[[], object], reps: int, sync: Callable[[], None]) -> float:
    """The fastest of ``reps`` calls after one warm-up: a ceiling is what the machine can do."""
    return min(wall_times(fn, reps, 1, sync))


def measure_ceilings(device: str = "cpu", gemm_n: Optional[int] = None, copy_elems: Optional[int] = None,
                     reps: int = 10) -> Dict[str, float]:
    """Empirical fp32 GEMM FLOP/s and copy bandwidth (bytes/s) of ``device`` at the current thread count."""
    cuda = device.startswith("cuda")
    gemm_n = gemm_n or (8192 if cuda else 2048)
    copy_elems = copy_elems or (1 << 28 if cuda else 1 << 26)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(gemm_n, gemm_n, generator=g).to(device)
    b = torch.randn(gemm_n, gemm_n, generator=g).to(device)
    c = torch.empty_like(a)
    t_gemm = _best_time(lambda: torch.mm(a, b, out=c), reps, sync)
    del a, b, c
    src = torch.ones(copy_elems, device=device)
    dst = torch.empty_like(src)
    t_copy = _best_time(lambda: dst.copy_(src), reps, sync)
    return {"gemm_flops": 2.0 * gemm_n ** 3 / t_gemm, "copy_bytes_per_s": 2.0 * 4 * copy_elems / t_copy,
            "gemm_n": gemm_n, "copy_elems": copy_elems}


def roofline(flops: float, nbytes: float, ceilings: Optional[Dict[str, float]]):
    """(roofline seconds, bound) for a computation of ``flops`` model flops moving ``nbytes`` bytes."""
    if not ceilings:
        return float("nan"), ""
    t_flops = flops / ceilings["gemm_flops"]
    t_bytes = nbytes / ceilings["copy_bytes_per_s"]
    return max(t_flops, t_bytes), ("compute" if t_flops >= t_bytes else "memory")


def describe(device: str, threads: int) -> Dict[str, object]:
    """The machine part of the report header (and of every row)."""
    info: Dict[str, object] = {
        "device": device, "device_name": device_name(device), "threads": threads,
        "cpu": cpu_model(), "simd": simd_summary(), "logical_cpus": logical_cpus(), "cpu_mhz": cpu_mhz(),
        "git": git_revision(),
    }
    info.update(versions())
    return info


def write_section(path: str, heading: str, text: str) -> None:
    """Writes ``text`` (which starts with ``heading``) into the markdown file ``path``:
    replaces the section that starts with that heading line (up to the next "## "), else appends."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if not old.strip():
        new = "# gankernels benchmark results\n\n" + text
    elif heading + "\n" in old:
        start = old.index(heading + "\n")
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt != -1 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)
