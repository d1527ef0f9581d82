"""Preflight of ``make test-gpu`` / ``make bench-gpu``: is there a usable CUDA GPU for the Triton kernels?

What: checks that torch sees a CUDA device, that the driver is new enough for
the ptxas bundled with the installed Triton (Triton compiles every kernel to a
cubin with that ptxas; a driver whose CUDA version has an older major version
cannot load the cubin), and that one Triton kernel of the package compiles,
loads and gives the right answer.  Prints one line per check and exits 0 when
all pass, 2 when there is no CUDA device, 3 when the driver is too old, 4 when
the smoke launch fails.

How: ``python -m gankernels.gpucheck``.  The driver's CUDA version comes from
``torch._C._cuda_getDriverVersion()`` (else ``nvidia-smi``), the ptxas version
from ``ptxas --version`` of the path Triton itself uses for the device's
compute capability.

Limits: a driver with the same major version but an older minor version than
ptxas is accepted with a warning (CUDA minor-version compatibility loads the
cubin; PTX JIT would not be available); the rule is a heuristic, the smoke
launch is the real test.
"""
from __future__ import annotations

import re
import subprocess
import sys
from typing import Optional, Tuple

Version = Tuple[int, int]


def parse_cuda_int(v: int) -> Version:
    """12040 -> (12, 4) (the integer form of cudaDriverGetVersion)."""
    return v // 1000, (v % 1000) // 10


def parse_ptxas_version(text: str) -> Optional[Version]:
    """'Cuda compilation tools, release 12.9, V12.9.86' -> (12, 9)."""
    m = re.search(r"release (\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_smi_cuda(text: str) -> Optional[Version]:
    """'CUDA Version: 12.4' in nvidia-smi's header -> (12, 4)."""
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def verdict(driver: Version, ptxas: Version) -> Tuple[str, str]:
    """('ok' | 'warn' | 'too old', message) for a driver CUDA version against a ptxas version."""
    d, p = f"{driver[0]}.{driver[1]}", f"{ptxas[0]}.{ptxas[1]}"
    if driver[0] < ptxas[0]:
        return "too old", (f"the driver supports CUDA {d} but Triton's bundled ptxas is CUDA {p}: cubins it builds "
                           f"will not load (CUDA_ERROR_UNSUPPORTED_PTX_VERSION / no kernel image). Update the driver "
                           f"to one for CUDA {ptxas[0]}.x, or point TRITON_PTXAS_PATH (and TRITON_PTXAS_BLACKWELL_PATH, "
                           f"which recent Triton uses for sm_90+) at a ptxas of CUDA <= {d}.")
    if driver < ptxas:
        return "warn", (f"the driver supports CUDA {d}, older than ptxas {p}: cubins load under minor-version "
                        f"compatibility; if a launch fails, update the driver.")
    return "ok", f"driver CUDA {d} >= ptxas {p}"


def _driver_version() -> Optional[Version]:
    import torch
    try:
        v = int(torch._C._cuda_getDriverVersion())
        if v > 0:
            return parse_cuda_int(v)
    except Exception:  # noqa: BLE001 - fall back to nvidia-smi
        pass
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
        return parse_smi_cuda(out)
    except Exception:  # noqa: BLE001
        return None


def _ptxas(capability: int) -> Tuple[Optional[str], Optional[Version]]:
    """(path, version) of the ptxas Triton uses for this compute capability (e.g. 90)."""
    try:
        from triton.backends.nvidia import compiler as nv
    except Exception:  # noqa: BLE001
        return None, None
    path = None
    get = getattr(nv, "get_ptxas", None)
    for args in ((capability,), ()):
        try:
            tool = get(*args) if get else None
            path = tool if isinstance(tool, str) else getattr(tool, "path", None)
            if path:
                break
        except TypeError:
            continue
        except Exception:  # noqa: BLE001
            break
    if path is None:
        try:
            import triton
            path = triton.knobs.nvidia.ptxas.path
        except Exception:  # noqa: BLE001
            return None, None
    try:
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:  # noqa: BLE001
        return path, None
    return path, parse_ptxas_version(text)


def _smoke() -> str:
    """One Triton kernel of the package on the GPU against the float64 reference."""
    import torch

    from . import triton_pairwise as te
    g = torch.Generator().manual_seed(0)
    x, y, w = (torch.randn(n, c, generator=g) for n, c in ((37, 5), (29, 5), (29, 3)))
    out = te.ksum(x.cuda(), y.cuda(), w.cuda(), te.GAUSSIAN, [1.0]).cpu().double()
    x, y, w = x.double(), y.double(), w.double()
    ref = torch.exp(-0.5 * torch.cdist(x, y) ** 2) @ w
    err = (out - ref).abs().max().item()
    if not err < 1e-3:
        raise AssertionError(f"ksum on the GPU differs from the reference by {err:.3g}")
    return f"Triton ksum on the GPU matches the reference (max error {err:.1e})"


def main() -> int:
    import torch
    if not torch.cuda.is_available():
        print("gpucheck: no CUDA device (torch.cuda.is_available() is False, torch "
              f"{torch.__version__}, built with CUDA {torch.version.cuda}). make test-gpu / bench-gpu need a "
              "machine with an NVIDIA GPU; on this one use make test.")
        return 2
    cap = torch.cuda.get_device_capability(0)
    capability = cap[0] * 10 + cap[1]
    print(f"gpucheck: {torch.cuda.get_device_name(0)} (sm_{capability}), torch {torch.__version__} "
          f"(CUDA {torch.version.cuda})")
    try:
        import triton
        print(f"gpucheck: triton {triton.__version__}")
    except Exception as e:  # noqa: BLE001
        print(f"gpucheck: triton is not importable ({type(e).__name__}: {e}); the CUDA ops need it")
        return 4
    driver = _driver_version()
    path, ptxas = _ptxas(capability)
    print(f"gpucheck: driver CUDA {'?' if driver is None else '%d.%d' % driver}; "
          f"ptxas {path} = CUDA {'?' if ptxas is None else '%d.%d' % ptxas}")
    if driver is not None and ptxas is not None:
        state, msg = verdict(driver, ptxas)
        if state == "too old":
            print(f"gpucheck: DRIVER TOO OLD: {msg}")
            return 3
        print(f"gpucheck: {'WARNING: ' if state == 'warn' else ''}{msg}")
    else:
        print("gpucheck: could not read both versions; relying on the smoke launch")
    try:
        print("gpucheck: " + _smoke())
    except Exception as e:  # noqa: BLE001
        print(f"gpucheck: the smoke launch FAILED ({type(e).__name__}: {' '.join(str(e).split())[:500]}). "
              "If the error mentions the PTX version or a missing kernel image, the driver is too old for "
              "Triton's ptxas.")
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
