"""Launch helpers shared by the Triton modules (triton_engine, triton_score, triton_pulling_away).

* ``on_input_device``: a launcher decorator that makes the device of the launcher's first tensor
  argument current for the launch (Triton launches on the current device; a tensor on ``cuda:1``
  while ``cuda:0`` is current would otherwise be read from the wrong device).
* ``device_constants``: small per-launch constant tensors (kernel parameters, sigma-derived scalars)
  created once per (values, dtype, device) and reused, so that a steady-state call makes no host to
  device copy and can be captured in a CUDA graph.
* ``precision_of_fp32_contractions``: the ``tl.dot`` input precision of the fp32 tile contractions
  (TF32 only when the user opted in through PyTorch's matmul settings).  Squared distances never use
  plain TF32: the kernels raise it to 3xTF32 (``tf32x3``, about fp32 accuracy) when TF32 is on.
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import torch

_CONSTANTS: dict = {}
_MAX_CONSTANTS = 512


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1`` (Triton kernels run on CPU tensors, for tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def on_input_device(fn):
    """Run ``fn`` with the CUDA device of its first tensor argument current (no-op for CPU tensors)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for a in args:
            if isinstance(a, torch.Tensor):
                if a.device.type == "cuda":
                    with torch.cuda.device(a.device):
                        return fn(*args, **kwargs)
                break
        return fn(*args, **kwargs)

    return wrapper


def device_constants(values: Sequence, dtype: torch.dtype, device) -> torch.Tensor:
    """A read-only tensor of ``values`` on ``device``, cached by (values, dtype, device)."""
    flat = tuple(float(v) for v in values)
    key = (flat, dtype, str(device))
    hit = _CONSTANTS.get(key)
    if hit is None:
        if len(_CONSTANTS) >= _MAX_CONSTANTS:
            _CONSTANTS.clear()
        hit = torch.tensor(flat if flat else (0.0,), dtype=dtype, device=device)
        _CONSTANTS[key] = hit
    return hit


def precision_of_fp32_contractions(x: torch.Tensor) -> str:
    """"tf32" where the user allows TF32 matmuls on CUDA (``torch.backends.cuda.matmul.allow_tf32`` or
    ``torch.set_float32_matmul_precision("high" / "medium")``), else "ieee"."""
    if x.device.type != "cuda" or x.dtype == torch.float64:
        return "ieee"
    allowed = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if allowed else "ieee"
