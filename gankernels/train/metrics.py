"""Sample-quality metrics (docs/MATH.md §6), computed on the CPU.

* Every dataset: exact KID (unbiased MMD^2 with Polynomial(3), all pairs, ``gk.kid``) and
  unbiased MMD^2 with a Gaussian mixture of bandwidths scale * (1/32 ... 1) (``gk.mmd2``),
  both against the held-out data -- fused, so no subsets are needed.  KID's cubic kernel
  (x.y / D + 1)^3 is not scale free: on raw grid25 points (|x| up to 5.7) its values run
  to the hundreds and are dominated by the spread.  For data without an image shape (the
  2-D mixtures, tensor files) KID is therefore computed on *standardised* features: both
  sets centred and scaled per dimension by the held-out set's mean and std.  Digits keep
  raw pixels in [-1, 1] (already of unit scale).
* Mixtures (ring8, grid25): a sample is high quality if it lies within 3 std of its
  nearest mean; a mode is covered if it has at least one high-quality sample; the
  mode histogram of the high-quality samples is compared with the uniform one by
  KL(hist || uniform) (NaN when there is no high-quality sample).
* Digits: a small MLP classifier, trained once on the training split and cached, labels
  the samples; a sample is confident if its top probability is >= 0.9; a class is covered
  if it has a confident sample; KL of the confident-class histogram to uniform.
Memory: the nearest-mean search is [samples, modes]; nothing samples x samples.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional

import torch

import gankernels as gk

from .data import Dataset, digits_arrays, split_indices
from .models import mlp

__all__ = ["evaluate", "mode_metrics", "histogram_kl", "digits_classifier", "standardise"]

EVAL_SAMPLES = 2500
CONFIDENT = 0.9


def histogram_kl(counts: torch.Tensor) -> float:
    """KL(p || uniform) of the histogram ``counts`` over K bins; NaN for an empty histogram."""
    total = float(counts.sum())
    if total == 0:
        return math.nan
    p = counts.double() / total
    nz = p > 0
    return float((p[nz] * (p[nz] * counts.numel()).log()).sum())


def mode_metrics(samples: torch.Tensor, modes: torch.Tensor, std: float) -> Dict[str, float]:
    """modes covered, fraction high quality, KL of the high-quality mode histogram to uniform."""
    dist = torch.cdist(samples.double(), modes.double())          # [n, K]
    nearest_dist, nearest = dist.min(1)
    hq = nearest_dist <= 3 * std
    counts = torch.bincount(nearest[hq], minlength=modes.shape[0])
    return {"modes": int((counts > 0).sum()), "n_modes": modes.shape[0],
            "hq": float(hq.double().mean()), "kl": histogram_kl(counts)}


def standardise(held: torch.Tensor, x: torch.Tensor, data: Dataset):
    """(held, x) as KID sees them: per-dimension z-scores w.r.t. the held-out set, except for images."""
    if data.image_shape is not None:
        return held, x
    mean, std = held.mean(0), held.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))   # a constant column stays as it is (centred)
    return (held - mean) / std, (x - mean) / std


def _cache_dir() -> str:
    return os.environ.get("GANKERNELS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gankernels")


def digits_classifier() -> torch.nn.Module:
    """An MLP 64 -> 128 -> 10 trained (seed 0, full batch Adam) on the digits training split, cached on disk."""
    path = os.path.join(_cache_dir(), "digits_mlp_v1.pt")
    if os.path.isfile(path):
        try:
            net = mlp(64, 10, 128, layers=1)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.eval()
        except Exception:
            pass  # a damaged cache is retrained
    x, y = digits_arrays()
    train, _ = split_indices(x.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = mlp(64, 10, 128, layers=1)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(300):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[train]), y[train]).backward()
            opt.step()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net.eval()


def class_metrics(samples: torch.Tensor, classifier: torch.nn.Module) -> Dict[str, float]:
    with torch.no_grad():
        prob = classifier(samples.float()).softmax(1)
    top, label = prob.max(1)
    confident = top >= CONFIDENT
    counts = torch.bincount(label[confident], minlength=prob.shape[1])
    return {"classes": int((counts > 0).sum()), "confident": float(confident.double().mean()),
            "class_kl": histogram_kl(counts)}


def evaluate(data: Dataset, samples: torch.Tensor, classifier: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """All metrics of ``samples`` [n, D] (any device) against ``data``'s held-out set."""
    from .recipes import data_kernel

    x = samples.detach().float().cpu()
    out: Dict[str, float] = {}
    if not torch.isfinite(x).all():
        out["nonfinite"] = int((~torch.isfinite(x).all(1)).sum())
    held = data.held_out.to(x.dtype)
    # the unbiased estimate only (gk.kid also pays for its standard error)
    out["kid"] = float(gk.mmd2(*standardise(held, x, data), gk.Polynomial(3), estimator="unbiased"))
    out["mmd2"] = float(gk.mmd2(held, x, data_kernel(data.scale), "unbiased"))
    if data.modes is not None:
        out.update(mode_metrics(x, data.modes, data.mode_std))
    if data.image_shape is not None and classifier is not None:
        out.update(class_metrics(x, classifier))
    return out
