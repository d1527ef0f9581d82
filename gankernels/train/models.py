"""Small MLPs for the recipes: 2-D mixtures and flattened 8x8 digits."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["mlp"]


def mlp(d_in: int, d_out: int, hidden: int, layers: int = 3, act: str = "relu",
        out: Optional[str] = None) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``; ``act`` relu | lrelu; optional ``out`` tanh."""
    mods, width = [], d_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU() if act == "relu" else nn.LeakyReLU(0.2)]
        width = hidden
    mods.append(nn.Linear(width, d_out))
    if out == "tanh":
        mods.append(nn.Tanh())
    return nn.Sequential(*mods)
