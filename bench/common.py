"""Shared pieces of the benchmarks: the eager baseline, inputs, timing, machine info.

The eager baseline is written here on purpose (not imported from the package):
it is the formulation common MMD-GAN code uses, three dense Gram blocks built
with ``torch.cdist`` and a sum of Gaussians over the bandwidths.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from typing import Callable, List, Optional, Sequence, Tuple

import torch

SIGMAS: Tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- the eager baseline

def _gaussian_mixture_gram(a: torch.Tensor, b: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    d = torch.cdist(a, b) ** 2
    return sum(torch.exp(-d / (2.0 * s * s)) for s in sigmas)


def eager_mmd2(x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float] = SIGMAS) -> torch.Tensor:
    """Biased MMD^2 with the Gaussian mixture kernel sum_s exp(-|a-b|^2 / 2 s^2), as MMD-GAN code does it.

    Three dense blocks (XX, XY, YY) of squared ``torch.cdist`` distances, the
    kernel summed over the bandwidths, then ``mean(Kxx) + mean(Kyy) - 2 mean(Kxy)``.
    Memory: several N x M temporaries per block (more under autograd).
    """
    kxx = _gaussian_mixture_gram(x, x, sigmas)
    kyy = _gaussian_mixture_gram(y, y, sigmas)
    kxy = _gaussian_mixture_gram(x, y, sigmas)
    return kxx.mean() + kyy.mean() - 2.0 * kxy.mean()


# ----------------------------------------------------------------------------- inputs

def make_inputs(n: int, m: int, d: int, seed: int = 0, dtype=torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """Deterministic inputs: x ~ N(0, I) [n, d], y ~ N(0.25, 1.1^2 I) [m, d] (fp64 draw, then cast).

    The same (n, m, d, seed) gives bitwise the same tensors in every process,
    so implementations timed in separate processes see the same data.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + n * 7919 + m * 104729 + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 1.1 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.25
    return x.to(dtype), y.to(dtype)


def checksum(*ts: torch.Tensor) -> str:
    """A short fingerprint of tensors (to check that separate processes used the same inputs)."""
    acc = 0.0
    for t in ts:
        acc += float(t.double().sum()) + 0.5 * float((t.double() ** 2).sum())
    return f"{acc:.10e}"


# ----------------------------------------------------------------------------- statistics and timing

def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    v = sorted(float(a) for a in values)
    if not v:
        return float("nan")
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def time_calls(fn: Callable[[], object], reps: int) -> List[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def adaptive_reps(first_s: float, budget_s: float, max_reps: int, min_reps: int = 1) -> int:
    """How many timed repeats fit in ``budget_s`` after a warm-up call that took ``first_s``."""
    if first_s <= 0:
        return max_reps
    return int(max(min_reps, min(max_reps, budget_s // first_s)))


# ----------------------------------------------------------------------------- machine description

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_mhz() -> Optional[float]:
    """The first "cpu MHz" of /proc/cpuinfo (a nominal value inside a VM)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_flags() -> List[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return line.split(":", 1)[1].split()
    except OSError:
        pass
    return []


def simd_summary() -> str:
    flags = set(cpu_flags())
    isa = [f for f in ("avx512f", "avx2", "fma") if f in flags]
    return "+".join(isa) if isa else "no AVX2/FMA flags"


def logical_cpus() -> int:
    return os.cpu_count() or 1


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) if rev else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fmt_time(s: float) -> str:
    """Seconds -> a short human string in ms or s."""
    if s is None or not math.isfinite(s):
        return "nan"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def write_section(path: str, heading: str, text: str) -> None:
    """Writes ``text`` (which starts with ``heading``) into the markdown file ``path``:
    replaces the section that starts with that heading line (up to the next "## "), else appends."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if not old.strip():
        new = "# gankernels benchmark results\n\n" + text
    elif heading in old:
        start = old.index(heading)
        nxt = old.find("\n## ", start + len(heading))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt != -1 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(new)
