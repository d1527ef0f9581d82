"""Recipes: one small object per GAN family (SPEC §5) that owns its networks and losses.

A recipe builds a generator G: z -> x (an MLP; tanh output for images) plus
whatever its family needs, and implements ``critic_step`` (skipped when it has
no critic network) and ``generator_step``; ``Recipe.step`` runs ``n_critic``
critic steps then one generator step.  All randomness comes from the
``torch.Generator`` of the ``Context``, so a checkpoint of the networks, the
optimisers and that generator resumes a run exactly.  Under torchrun the
``Context`` hands each rank its rows of the global batch and the sharded
pairwise ops (``ctx.ops``), and ``Recipe.wrap`` puts the networks in DDP; the
recipes themselves do not change (``parallel.py``).

Every pairwise or per-sample term uses the fused ops: ``mmd2`` / ``witness``
(mmd-gan, with the witness gradient penalty through double backward),
``kernel_flow`` (flow-gan), ``smoothed_score`` (score-gan), ``pulling_away``
(ebgan).  None of them allocates anything batch x batch, so mmd-gan and
flow-gan train at batch 65,536 in O(batch) memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

import gankernels as gk

from . import losses as L
from .data import Dataset
from .errors import ConfigError, require_op
from .models import mlp

__all__ = ["Context", "Recipe", "RECIPES", "make_recipe", "data_kernel"]


def data_kernel(scale: float) -> gk.Gaussian:
    """Gaussian mixture with a doubling ladder of bandwidths scale * (1/32 ... 1) for data-space kernels."""
    return gk.Gaussian(tuple(scale * 2.0 ** -k for k in range(5, -1, -1)))


ZERO_MEANS_OFF = ("gp", "pt", "l1")   # weights of optional terms; every other number must be positive


def _check_numbers(opts: Dict[str, Any]) -> None:
    for k, v in opts.items():
        if v is None or isinstance(v, str):
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0 or (v == 0 and k not in ZERO_MEANS_OFF):
            need = ">= 0" if k in ZERO_MEANS_OFF else "> 0"
            raise ConfigError(f"--{k.replace('_', '-')} must be a finite number {need}, got {v!r}")


@dataclass
class Context:
    """What a recipe may draw from during a step: real batches, latent noise, the pairwise ops.

    ``batch`` is the global batch; under ``world_size`` K > 1 each draw is of the global
    batch, of which this rank keeps its B/K rows (``shard``), so the ranks together see
    what one process would.  ``ops``: ``gankernels`` or its sharded counterparts.
    """
    data: Dataset
    batch: int
    z_dim: int
    generator: torch.Generator
    device: torch.device
    rank: int = 0
    world_size: int = 1
    ops: Any = gk

    def shard(self, t: torch.Tensor) -> torch.Tensor:
        rows = t.shape[0] // self.world_size
        return t[self.rank * rows:(self.rank + 1) * rows].to(self.device)

    def real(self) -> torch.Tensor:
        return self.shard(self.data.sample(self.batch, self.generator))

    def noise(self, n: Optional[int] = None) -> torch.Tensor:
        return self.shard(torch.randn(n or self.batch, self.z_dim, generator=self.generator))

    def uniform(self) -> torch.Tensor:
        """U(0, 1) weights [rows, 1], e.g. of the gradient penalty's interpolates."""
        return self.shard(torch.rand(self.batch, 1, generator=self.generator))


class Recipe:
    """Base: a generator, optimiser groups, the step schedule, generation and checkpoint state."""

    name = ""
    options: Dict[str, Any] = {}      # recipe-specific options and their defaults
    lr = 1e-3
    betas = (0.5, 0.9)
    n_critic = 1

    def __init__(self, data: Dataset, hidden: int, z_dim: int, lr: Optional[float], options: Dict[str, Any]):
        self.opts = dict(self.options)
        self.opts.update({k: v for k, v in options.items() if v is not None})
        _check_numbers(self.opts)
        self.dim, self.z_dim, self.hidden, self.scale = data.dim, z_dim, hidden, data.scale
        self.G = mlp(z_dim, data.dim, hidden, out="tanh" if data.image_shape else None)
        self.nets: Dict[str, nn.Module] = {"G": self.G}
        groups = self.build(data)
        lr = self.lr if lr is None else lr
        self.optims = {g: torch.optim.Adam([p for n in names for p in self.nets[n].parameters()], lr=lr,
                                           betas=self.betas) for g, names in groups.items()}

    # -- what a family defines
    def build(self, data: Dataset) -> Dict[str, List[str]]:
        """Create the family's networks in ``self.nets``; return the optimiser groups (group -> net names)."""
        return {"G": ["G"]}

    def critic_step(self, ctx: Context) -> Dict[str, float]:
        return {}

    def generator_step(self, ctx: Context) -> Dict[str, float]:
        raise NotImplementedError

    def critic(self, real: torch.Tensor, fake: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """D(x) (higher = more like the data) for discriminator-guided Langevin; None: no critic network."""
        return None

    # -- shared machinery
    def step(self, ctx: Context) -> Dict[str, float]:
        logs: Dict[str, float] = {}
        for _ in range(self.n_critic if "D" in self.optims else 0):
            logs.update(self.critic_step(ctx))
        logs.update(self.generator_step(ctx))
        return logs

    def update(self, group: str, loss: torch.Tensor) -> float:
        opt = self.optims[group]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def to(self, device) -> "Recipe":
        for net in self.nets.values():
            net.to(device)
        return self

    def wrap(self, fn: Callable[[nn.Module], nn.Module]) -> None:
        """Replace the network attributes the steps use (self.G, self.V, ...) by ``fn(net)`` (e.g. DDP);
        ``self.nets`` keeps the bare networks for checkpoints and generation."""
        wrapped = {id(net): fn(net) for net in self.nets.values()}
        for name, value in list(vars(self).items()):
            if id(value) in wrapped:
                setattr(self, name, wrapped[id(value)])

    @torch.no_grad()
    def generate(self, z: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        return torch.cat([self.nets["G"](c) for c in z.split(chunk)])

    def state_dict(self) -> Dict[str, Any]:
        return {"nets": {k: v.state_dict() for k, v in self.nets.items()},
                "optims": {k: v.state_dict() for k, v in self.optims.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k, v in self.nets.items():
            v.load_state_dict(state["nets"][k])
        for k, v in self.optims.items():
            v.load_state_dict(state["optims"][k])


class FGAN(Recipe):
    """f-GAN (Nowozin et al.): any f-divergence of SPEC §5 through its activation and conjugate."""

    name = "fgan"
    options = {"divergence": "gan"}

    def build(self, data):
        if self.opts["divergence"] not in L.DIVERGENCES:
            raise ConfigError(f"--divergence {self.opts['divergence']!r}: unknown; use one of "
                              f"{', '.join(L.DIVERGENCES)}")
        self.div = L.DIVERGENCES[self.opts["divergence"]]
        self.V = self.nets["V"] = mlp(self.dim, 1, self.hidden, act="lrelu")
        return {"G": ["G"], "D": ["V"]}

    def critic_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise()).detach()
        return {"loss_d": self.update("D", L.fgan_critic_loss(self.V(real), self.V(fake), self.div))}

    def generator_step(self, ctx):
        return {"loss_g": self.update("G", L.fgan_generator_loss(self.V(self.G(ctx.noise())), self.div))}

    def critic(self, real, fake):
        return lambda x: self.V(x).squeeze(1)


class WGANGP(Recipe):
    """WGAN-GP (Gulrajani et al.): critic loss E V(fake) - E V(real) + gp * penalty, 5 critic steps."""

    name = "wgan-gp"
    options = {"gp": 10.0, "n_critic": 5}
    lr = 1e-4

    def build(self, data):
        self.n_critic = int(self.opts["n_critic"])
        self.V = self.nets["V"] = mlp(self.dim, 1, self.hidden, act="lrelu")
        return {"G": ["G"], "D": ["V"]}

    def critic_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise()).detach()
        penalty = L.gradient_penalty(self.V, real, fake, ctx.uniform())
        loss = self.V(fake).mean() - self.V(real).mean() + self.opts["gp"] * penalty
        return {"loss_d": self.update("D", loss), "gp": float(penalty.detach())}

    def generator_step(self, ctx):
        return {"loss_g": self.update("G", -self.V(self.G(ctx.noise())).mean())}

    def critic(self, real, fake):
        return lambda x: self.V(x).squeeze(1)


class MMDGAN(Recipe):
    """MMD-GAN (Li et al.; Binkowski et al.): unbiased MMD^2 of critic features, optional witness penalty."""

    name = "mmd-gan"
    options = {"kernel": "gaussian", "gp": 1.0, "features": 16}
    KERNELS = {"gaussian": lambda: gk.Gaussian((1.0, 2.0, 4.0, 8.0, 16.0)), "rq": lambda: gk.RationalQuadratic()}

    def build(self, data):
        if self.opts["kernel"] not in self.KERNELS:
            raise ConfigError(f"--kernel {self.opts['kernel']!r}: mmd-gan takes one of {', '.join(self.KERNELS)}")
        self.kernel = self.KERNELS[self.opts["kernel"]]()
        self.phi = self.nets["phi"] = mlp(self.dim, int(self.opts["features"]), self.hidden, act="lrelu")
        return {"G": ["G"], "D": ["phi"]}

    def critic_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise()).detach()
        hr, hf = self.phi(real), self.phi(fake)
        loss = -ctx.ops.mmd2(hr, hf, self.kernel, "unbiased")
        logs = {"mmd2_feat": -float(loss.detach())}
        if self.opts["gp"] > 0:
            penalty = L.gradient_penalty(lambda x: ctx.ops.witness(self.phi(x), hr, hf, self.kernel), real, fake,
                                         ctx.uniform())
            loss = loss + self.opts["gp"] * penalty
            logs["gp"] = float(penalty.detach())
        logs["loss_d"] = self.update("D", loss)
        return logs

    def generator_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise())
        return {"loss_g": self.update("G", ctx.ops.mmd2(self.phi(real), self.phi(fake), self.kernel, "unbiased"))}

    def critic(self, real, fake):
        with torch.no_grad():
            hr, hf = self.phi(real), self.phi(fake)
        return lambda x: gk.witness(self.phi(x), hr, hf, self.kernel)


class FlowGAN(Recipe):
    """Flow-GAN (seed 000): no critic network; G follows the flow of the closed-form witness of real vs fake."""

    name = "flow-gan"
    options = {"kernel": "gaussian", "eta": 1.0}

    def build(self, data):
        kernels = {"gaussian": lambda: data_kernel(self.scale), "energy": gk.Energy}
        if self.opts["kernel"] not in kernels:
            raise ConfigError(f"--kernel {self.opts['kernel']!r}: flow-gan takes one of {', '.join(kernels)}")
        self.kernel = kernels[self.opts["kernel"]]()
        return {"G": ["G"]}

    def generator_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise())
        x = fake.detach()
        n = ctx.batch   # the global count of real and of fake rows: weights +-1/B over the global batch
        weights = torch.cat([x.new_full((real.shape[0],), 1.0 / n), x.new_full((x.shape[0],), -1.0 / n)])
        drift = ctx.ops.kernel_flow(x, torch.cat([real, x]), self.kernel, weights)   # grad of the witness at G(z)
        return {"loss_g": self.update("G", L.follow_loss(fake, drift, self.opts["eta"]))}


class ScoreGAN(Recipe):
    """Score-GAN (seed 000): G follows the difference of the smoothed scores of the data and of its samples.

    drift = mean over sigma of sigma^2 (score_sigma(data) - score_sigma(samples)): each term is the
    difference of the Gaussian-weighted local means of data and samples around G(z) (mean-shift
    form), over the bandwidth ladder of ``data_kernel`` (scale/32 ... scale) as in multi-noise-level
    score matching; ``--sigma`` uses one bandwidth only.
    """

    name = "score-gan"
    options = {"sigma": None, "eta": 1.0}

    def build(self, data):
        require_op("smoothed_score", "--recipe score-gan")
        sigma = self.opts["sigma"]
        self.sigmas = (float(sigma),) if sigma is not None else data_kernel(self.scale).sigmas
        return {"G": ["G"]}

    def generator_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise())
        x = fake.detach()
        score = ctx.ops.smoothed_score
        drift = sum(s * s * (score(x, real, s) - score(x, x, s)) for s in self.sigmas)
        return {"loss_g": self.update("G", L.follow_loss(fake, drift / len(self.sigmas), self.opts["eta"]))}


class EBGAN(Recipe):
    """EBGAN (Zhao et al.): autoencoder discriminator, margin loss, pulling-away term on the codes of G(z)."""

    name = "ebgan"
    options = {"margin": None, "pt": 0.1, "code": 16}

    def build(self, data):
        require_op("pulling_away", "--recipe ebgan")
        code = int(self.opts["code"])
        self.enc = self.nets["enc"] = mlp(self.dim, code, self.hidden, layers=2, act="lrelu")
        self.dec = self.nets["dec"] = mlp(code, self.dim, self.hidden, layers=2, act="lrelu")
        # default margin: a quarter of the data's per-dimension variance (the energy of a constant reconstruction)
        self.margin = float(self.opts["margin"] or 0.25 * self.scale ** 2 / self.dim)
        return {"G": ["G"], "D": ["enc", "dec"]}

    def energy(self, x):
        return L.energy(x, self.dec(self.enc(x)))

    def critic_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise()).detach()
        return {"loss_d": self.update("D", L.ebgan_critic_loss(self.energy(real), self.energy(fake), self.margin))}

    def generator_step(self, ctx):
        fake = self.G(ctx.noise())
        code = self.enc(fake)
        pt = ctx.ops.pulling_away(code)   # over the global batch's codes under torchrun
        loss = L.energy(fake, self.dec(code)).mean() + self.opts["pt"] * pt
        return {"loss_g": self.update("G", loss), "pt": float(pt.detach())}

    def critic(self, real, fake):
        return lambda x: -self.energy(x)


class AlphaGAN(Recipe):
    """alpha-GAN (Rosca et al.): encoder, code discriminator, L1 reconstruction, shared image discriminator."""

    name = "alpha-gan"
    options = {"l1": 1.0}

    def build(self, data):
        self.E = self.nets["E"] = mlp(self.dim, self.z_dim, self.hidden)
        self.D = self.nets["D"] = mlp(self.dim, 1, self.hidden, act="lrelu")
        self.C = self.nets["C"] = mlp(self.z_dim, 1, self.hidden, act="lrelu")
        return {"G": ["G", "E"], "D": ["D", "C"]}

    def critic_step(self, ctx):
        real = ctx.real()
        with torch.no_grad():
            z_enc = self.E(real)
            x_rec, x_gen = self.G(z_enc), self.G(ctx.noise())
        loss = (L.alpha_discriminator_loss(self.D(real), self.D(x_rec), self.D(x_gen))
                + L.alpha_code_loss(self.C(ctx.noise()), self.C(z_enc)))
        return {"loss_d": self.update("D", loss)}

    def generator_step(self, ctx):
        # Rosca et al., Algorithm 1: the encoder minimises L1 + the code term, the generator L1 + the
        # image terms of its reconstructions and samples -- so D(G(E(x))) sees the codes detached
        real = ctx.real()
        z_enc = self.E(real)
        x_rec, x_gen = self.G(z_enc), self.G(ctx.noise())
        l1 = (real - x_rec).abs().sum(1).mean()
        loss = (self.opts["l1"] * l1 + L.density_ratio_term(self.D(self.G(z_enc.detach())))
                + L.density_ratio_term(self.D(x_gen)) + L.density_ratio_term(self.C(z_enc)))
        return {"loss_g": self.update("G", loss), "l1": float(l1.detach())}

    def critic(self, real, fake):
        return lambda x: self.D(x).squeeze(1)


RECIPES = {r.name: r for r in (FGAN, WGANGP, MMDGAN, FlowGAN, ScoreGAN, EBGAN, AlphaGAN)}


def make_recipe(name: str, data: Dataset, hidden: int, z_dim: int, lr: Optional[float],
                options: Dict[str, Any]) -> Recipe:
    """Build a recipe by name; options not of that recipe (given, i.e. not None) are an error."""
    if name not in RECIPES:
        raise ConfigError(f"--recipe {name!r}: unknown; use one of {', '.join(RECIPES)}")
    cls = RECIPES[name]
    extra = sorted(k for k, v in options.items() if v is not None and k not in cls.options)
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        takes = ", ".join("--" + k.replace("_", "-") for k in cls.options) or "none"
        raise ConfigError(f"{flags}: not an option of recipe {name!r} (it takes: {takes})")
    return cls(data, hidden, z_dim, lr, options)
