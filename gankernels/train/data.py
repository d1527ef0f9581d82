"""Training data: the docs/MATH.md §6 mixtures (``ring8``, ``grid25``), scikit-learn's ``digits``, tensor files.

A ``Dataset`` draws training batches from a ``torch.Generator`` (fresh samples
for the mixtures, rows drawn with replacement for finite data) and holds a
fixed held-out set for the metrics.  Mixtures know their mode centres and std
(for modes covered / % high quality); digits know their image shape.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .errors import ConfigError, one_line

__all__ = ["Dataset", "load_data", "DATA_NAMES"]

HELD_OUT_SEED = 20240601   # the held-out set does not depend on the run's seed
HELD_OUT_MIXTURE = 2500    # docs/MATH.md §6: metrics on 2,500 samples
HELD_OUT_FRACTION = 0.2    # finite data: the last 20 % of a fixed permutation
MIN_ROWS = 20

DATA_NAMES = ("ring8", "grid25", "digits")


@dataclass
class Dataset:
    name: str
    held_out: torch.Tensor                    # [H, D] float32
    train: Optional[torch.Tensor] = None      # [N, D] finite data; None for mixtures
    modes: Optional[torch.Tensor] = None      # [K, D] mixture centres
    mode_std: float = 0.0
    image_shape: Optional[Tuple[int, int]] = None
    labels_held_out: Optional[torch.Tensor] = None

    @property
    def dim(self) -> int:
        return self.held_out.shape[1]

    @property
    def scale(self) -> float:
        """RMS distance of the held-out points to their mean: sets kernel bandwidths in data space."""
        h = self.held_out.double()
        return float(((h - h.mean(0)) ** 2).sum(1).mean().sqrt())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n training points (CPU float32)."""
        if self.modes is not None:
            return _mixture(self.modes, self.mode_std, n, generator)
        idx = torch.randint(self.train.shape[0], (n,), generator=generator)
        return self.train[idx]

    def reference(self, n: int, seed: int = HELD_OUT_SEED + 1) -> torch.Tensor:
        """n training points from a fixed seed (e.g. the real centres of a Langevin refinement)."""
        return self.sample(n, torch.Generator().manual_seed(seed))


def _mixture(modes: torch.Tensor, std: float, n: int, generator: torch.Generator) -> torch.Tensor:
    idx = torch.randint(modes.shape[0], (n,), generator=generator)
    return modes[idx] + std * torch.randn(n, modes.shape[1], generator=generator)


def ring_modes(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    """k means (cos 2 pi i / k, sin 2 pi i / k): no repeated mode (not linspace(0, 2 pi, k))."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([angles.cos(), angles.sin()], 1)).float()


def grid_modes() -> torch.Tensor:
    v = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(v, v)


def _mixture_dataset(name: str, modes: torch.Tensor, std: float) -> Dataset:
    held = _mixture(modes, std, HELD_OUT_MIXTURE, torch.Generator().manual_seed(HELD_OUT_SEED))
    return Dataset(name, held_out=held, modes=modes, mode_std=std)


def split_indices(n: int):
    """(train, held-out) row indices of finite data: a fixed permutation, the last 20 % held out."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    n_held = max(2, int(round(HELD_OUT_FRACTION * n)))
    return perm[:-n_held], perm[-n_held:]


def digits_arrays():
    """(images [1797, 64] in [-1, 1], labels [1797]); scikit-learn's bundled 8x8 digits."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ConfigError("--data digits needs scikit-learn (pip install scikit-learn); "
                          "ring8, grid25 and .npy/.pt files work without it") from None
    d = load_digits()
    x = torch.as_tensor(d.data, dtype=torch.float32) / 8.0 - 1.0
    return x, torch.as_tensor(d.target, dtype=torch.long)


def _digits() -> Dataset:
    x, labels = digits_arrays()
    train, held = split_indices(x.shape[0])
    return Dataset("digits", held_out=x[held], train=x[train], image_shape=(8, 8), labels_held_out=labels[held])


def _read_tensor(path: str) -> torch.Tensor:
    if not os.path.isfile(path):
        raise ConfigError(f"--data {path}: no such file")
    try:
        if path.endswith(".npy"):
            import numpy as np

            return torch.from_numpy(np.load(path, allow_pickle=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable / pickled objects / wrong format: one line for the user
        why = ("it holds pickled Python objects, which are not loaded" if "weights only load failed"
               in str(exc).lower() else one_line(exc))
        raise ConfigError(f"--data {path}: cannot read it ({why})") from None
    if not isinstance(obj, torch.Tensor):
        raise ConfigError(f"--data {path}: the .pt file must hold one tensor [N, D], got {type(obj).__name__}")
    return obj


def _file_dataset(path: str) -> Dataset:
    x = _read_tensor(path)
    if not (x.is_floating_point()):
        raise ConfigError(f"--data {path}: expected a floating tensor [N, D], got dtype {x.dtype} "
                          "(convert it, e.g. x.astype('float32'))")
    if x.dim() != 2:
        raise ConfigError(f"--data {path}: expected shape [N, D] (one row per sample), got {tuple(x.shape)}; "
                          "flatten images to [N, H*W]")
    if x.shape[0] < MIN_ROWS or x.shape[1] == 0:
        raise ConfigError(f"--data {path}: need at least {MIN_ROWS} rows and 1 column, got {tuple(x.shape)}")
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        raise ConfigError(f"--data {path}: contains NaN or infinite values")
    if bool((x == x[0]).all()):
        raise ConfigError(f"--data {path}: all {x.shape[0]} rows are equal; the data needs some spread "
                          "(its RMS radius sets the kernel bandwidths and the metrics' scale)")
    train, held = split_indices(x.shape[0])
    data = Dataset(os.path.basename(path), held_out=x[held], train=x[train])
    if not data.scale > 0:
        raise ConfigError(f"--data {path}: the {len(held)} held-out rows (a fixed 20 % of the rows) are all "
                          "equal; the data needs some spread (its RMS radius sets the kernel bandwidths)")
    return data


def load_data(name: str) -> Dataset:
    """``ring8`` | ``grid25`` | ``digits`` | a path to a ``.npy`` / ``.pt`` file holding a float tensor [N, D]."""
    if not isinstance(name, str) or not name:
        raise ConfigError("--data must be ring8, grid25, digits or a .npy/.pt file")
    if name == "ring8":
        return _mixture_dataset(name, ring_modes(), 0.01)
    if name == "grid25":
        return _mixture_dataset(name, grid_modes(), 0.05)
    if name == "digits":
        return _digits()
    if name.endswith((".npy", ".pt")):
        return _file_dataset(name)
    raise ConfigError(f"--data {name!r}: unknown dataset; use one of {', '.join(DATA_NAMES)} or a .npy/.pt file")
