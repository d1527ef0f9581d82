"""gankernels.train: a thin trainer layer over the fused ops (docs/MATH.md §5–6).

A *recipe* is a small object holding the networks and losses of one GAN family
(``fgan`` with every f-divergence of docs/MATH.md §5, ``wgan-gp``, ``mmd-gan``,
``flow-gan``, ``score-gan``, ``ebgan``, ``alpha-gan``); one loop drives any
recipe, evaluates it (docs/MATH.md §6 metrics), draws sample pictures and writes atomic
checkpoints that resume exactly.  Command line: ``python -m gankernels train``
and ``python -m gankernels sample``; data-parallel under
``torchrun --nproc-per-node K -m gankernels train ...`` (``parallel.py``).

    from gankernels.train import RunConfig, train
    train(RunConfig(recipe="mmd-gan", data="ring8", batch=1024, steps=2000), out="runs/ring")
"""
from .data import Dataset, load_data
from .errors import ConfigError
from .loop import RunConfig, load_run, resume, sample, train
from .losses import DIVERGENCES
from .metrics import evaluate
from .recipes import RECIPES, Recipe

__all__ = ["RunConfig", "train", "resume", "sample", "load_run", "load_data", "Dataset", "evaluate",
           "RECIPES", "Recipe", "DIVERGENCES", "ConfigError"]
