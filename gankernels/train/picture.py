"""Sample pictures: a scatter with the mode centres (2-D data) or an image grid (digits).

With matplotlib installed the picture is drawn by its object-oriented API (no
pyplot, no global backend change); without it a small numpy renderer and PNG
writer (zlib) produce the same content without axes.  Data of other
dimensions is shown by its first two coordinates.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional

import numpy as np
import torch

from .data import Dataset

__all__ = ["save_picture", "render", "write_png"]

GRID = 8          # digits: an 8 x 8 grid of samples
SIZE = 480        # fallback scatter: pixels per side


def _limits(data: Dataset, pts: np.ndarray):
    ref = data.held_out[:, :2].numpy() if data.modes is None else data.modes[:, :2].numpy()
    lo, hi = ref.min(0), ref.max(0)
    pad = 0.25 * float((hi - lo).max() + 1e-6)
    return lo - pad, hi + pad


def _tiles(samples: np.ndarray, shape) -> np.ndarray:
    """[GRID*h, GRID*w] in [0, 1] from the first GRID^2 samples (data in [-1, 1]); missing tiles are blank."""
    h, w = shape
    img = np.zeros((GRID * h, GRID * w))
    for k, s in enumerate(samples[: GRID * GRID]):
        r, c = divmod(k, GRID)
        img[r * h:(r + 1) * h, c * w:(c + 1) * w] = np.clip((s.reshape(h, w) + 1) / 2, 0, 1)
    return img


def render(samples: torch.Tensor, data: Dataset) -> np.ndarray:
    """The picture as RGB uint8 [H, W, 3] (numpy only)."""
    x = samples.detach().float().cpu().numpy()
    if data.image_shape is not None:
        img = _tiles(x, data.image_shape)
        img = np.kron(img, np.ones((6, 6)))           # upscale each pixel to 6 x 6
        return np.repeat((255 * (1 - img)).astype(np.uint8)[:, :, None], 3, 2)
    canvas = np.full((SIZE, SIZE, 3), 255, np.uint8)
    lo, hi = _limits(data, x)

    def pix(p):
        q = (p[:, :2] - lo) / (hi - lo) * (SIZE - 1)
        ok = np.isfinite(q).all(1) & (q >= 0).all(1) & (q <= SIZE - 1).all(1)
        q = q[ok].round().astype(int)
        return q[:, 0], SIZE - 1 - q[:, 1]

    cx, cy = pix(x)
    for dx in (0, 1):
        for dy in (0, 1):
            canvas[np.minimum(cy + dy, SIZE - 1), np.minimum(cx + dx, SIZE - 1)] = (31, 119, 180)
    if data.modes is not None:
        mx, my = pix(data.modes.numpy())
        for d in range(-4, 5):
            canvas[np.clip(my + d, 0, SIZE - 1), np.clip(mx + d, 0, SIZE - 1)] = (214, 39, 40)
            canvas[np.clip(my - d, 0, SIZE - 1), np.clip(mx + d, 0, SIZE - 1)] = (214, 39, 40)
    return canvas


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write an RGB uint8 [H, W, 3] array as a PNG (8-bit truecolour, one IDAT chunk)."""
    h, w, _ = rgb.shape

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    raw = b"".join(b"\x00" + row.tobytes() for row in np.ascontiguousarray(rgb, np.uint8))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _matplotlib_picture(path: str, samples: torch.Tensor, data: Dataset, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = samples.detach().float().cpu().numpy()
    fig = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if data.image_shape is not None:
        ax.imshow(_tiles(x, data.image_shape), cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
    else:
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5, label="samples")
        if data.modes is not None:
            ax.scatter(data.modes[:, 0], data.modes[:, 1], marker="x", c="tab:red", s=40, label="mode centres")
            ax.legend(loc="upper right", fontsize=7)
        lo, hi = _limits(data, x)
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    fig.savefig(path)


def save_picture(path: str, samples: torch.Tensor, data: Dataset, title: str = "",
                 use_matplotlib: Optional[bool] = None) -> None:
    """PNG of ``samples`` at ``path``; matplotlib when installed (or as ``use_matplotlib`` says)."""
    if use_matplotlib is None:
        try:
            import matplotlib  # noqa: F401
            use_matplotlib = True
        except ImportError:
            use_matplotlib = False
    if use_matplotlib:
        _matplotlib_picture(path, samples, data, title)
    else:
        write_png(path, render(samples, data))
