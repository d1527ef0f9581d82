"""Recipes: one small object per GAN family (docs/MATH.md §5) that owns its networks and losses.

A recipe builds a generator G: z -> x (an MLP; tanh output for images) plus
whatever its family needs, and implements ``critic_step`` (skipped when it has
no critic network) and ``generator_step``; ``Recipe.step`` runs ``d_steps``
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

__all__ = ["Context", "Recipe", "RECIPES", "make_recipe", "data_kernel", "flow_sign", "FLOW_KERNELS"]


def data_kernel(scale: float) -> gk.Gaussian:
    """Gaussian mixture with a doubling ladder of bandwidths scale * (1/32 ... 1) for data-space kernels."""
    return gk.Gaussian(tuple(scale * 2.0 ** -k for k in range(5, -1, -1)))


ZERO_MEANS_OFF = ("gp", "pt", "l1")   # weights of optional terms; every other number must be positive
INTEGER_OPTIONS = ("d_steps", "features", "code")


def _check_numbers(opts: Dict[str, Any]) -> None:
    for k, v in opts.items():
        if v is None or isinstance(v, str):
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0 or (v == 0 and k not in ZERO_MEANS_OFF):
            need = ">= 0" if k in ZERO_MEANS_OFF else "> 0"
            raise ConfigError(f"--{k.replace('_', '-')} must be a finite number {need}, got {v!r}")
        if k in INTEGER_OPTIONS and v != int(v):
            raise ConfigError(f"--{k.replace('_', '-')} must be a positive integer, got {v!r}")


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
    """Base: a generator, optimiser groups, the step schedule, generation and checkpoint state.

    Training settings are per recipe (class attributes, a family may refine them in ``build``):
    Adam's ``lr`` and ``betas`` and ``d_steps``, the critic steps per generator step (option
    ``--d-steps`` of every recipe with a critic).  ``source`` says where they come from; all of
    it goes into ``settings()`` and from there into the run's report.md.
    """

    name = ""
    options: Dict[str, Any] = {}      # recipe-specific options and their defaults
    lr = 1e-3
    betas = (0.5, 0.9)
    d_steps = 1
    source = ""

    def __init__(self, data: Dataset, hidden: int, z_dim: int, lr: Optional[float], options: Dict[str, Any]):
        self.opts = dict(self.options)
        self.opts.update({k: v for k, v in options.items() if v is not None})
        _check_numbers(self.opts)
        self.dim, self.z_dim, self.hidden, self.scale = data.dim, z_dim, hidden, data.scale
        self.G = mlp(z_dim, data.dim, hidden, out="tanh" if data.image_shape else None)
        self.nets: Dict[str, nn.Module] = {"G": self.G}
        groups = self.build(data)
        if "d_steps" in self.opts:
            self.d_steps = int(self.opts["d_steps"])
        self.lr = self.lr if lr is None else lr
        self.optims = {g: torch.optim.Adam([p for n in names for p in self.nets[n].parameters()], lr=self.lr,
                                           betas=self.betas) for g, names in groups.items()}

    def settings(self) -> Dict[str, Any]:
        """The optimiser and schedule this run uses, with their source (for report.md)."""
        out = {"optimizer": "Adam", "lr": self.lr, "betas": list(self.betas)}
        if "D" in self.optims:
            out["d_steps"] = self.d_steps
        out.update({k: v for k, v in self.opts.items() if k != "d_steps"})
        out["source"] = self.source
        return out

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
        for _ in range(self.d_steps if "D" in self.optims else 0):
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
    """f-GAN (Nowozin et al.): any f-divergence of docs/MATH.md §5 through its activation and conjugate.

    The critic is regularised by a zero-centred gradient penalty
    ``gp/2 (E_data |grad V|^2 + E_gen |grad V|^2)`` on its raw output v (``L.critic_gradient_penalty``;
    Roth et al. 2017 regularise f-GAN critics by their input-gradient norm on both
    distributions; Mescheder et al. 2018 show the zero-centred form makes GAN training
    converge locally).  Without it the critic of an unbounded conjugate (kl: exp, pearson:
    square, neyman) runs away and the losses overflow, and tv's tanh saturates.  The penalty
    weight and the learning rate are per divergence (``FGAN_SETTINGS``, measured on ring8).
    """

    name = "fgan"
    options = {"divergence": "gan", "gp": None, "d_steps": 1}
    source = ("Nowozin et al. 2016 (objective, non-saturating generator loss); critic penalty after Roth et al. "
              "2017 / Mescheder et al. 2018 (zero-centred); lr, betas and gp per divergence measured on ring8")

    def build(self, data):
        if self.opts["divergence"] not in L.DIVERGENCES:
            raise ConfigError(f"--divergence {self.opts['divergence']!r}: unknown; use one of "
                              f"{', '.join(L.DIVERGENCES)}")
        self.div = L.DIVERGENCES[self.opts["divergence"]]
        tuned = FGAN_SETTINGS[self.div.name]
        self.lr, self.betas = tuned["lr"], tuned["betas"]
        if self.opts["gp"] is None:
            self.opts["gp"] = tuned["gp"]
        self.V = self.nets["V"] = mlp(self.dim, 1, self.hidden, act="lrelu")
        return {"G": ["G"], "D": ["V"]}

    def critic_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise()).detach()
        logs = {}
        if self.opts["gp"] > 0:
            (v_real, v_fake), penalty = L.critic_gradient_penalty(self.V, real, fake)
            loss = L.fgan_critic_loss(v_real, v_fake, self.div) + 0.5 * self.opts["gp"] * penalty
            logs["gp"] = float(penalty.detach())
        else:
            loss = L.fgan_critic_loss(self.V(real), self.V(fake), self.div)
        logs["loss_d"] = self.update("D", loss)
        return logs

    def generator_step(self, ctx):
        return {"loss_g": self.update("G", L.fgan_generator_loss(self.V(self.G(ctx.noise())), self.div))}

    def critic(self, real, fake):
        return lambda x: self.V(x).squeeze(1)


# per-divergence training settings of fgan, measured on ring8 (batch 512, 3,000 steps, seed 0; README):
# penalty weight 1 for all; Adam 1e-3 for most, while pearson and tv oscillate between mode sets at 1e-3
# (6/8 and 7/8 modes at the end; a 10x penalty made it worse) and settle at the DCGAN learning rate 2e-4
# (Radford et al. 2016's Adam setting): 8/8 for both
FGAN_SETTINGS = {name: {"lr": 1e-3, "betas": (0.5, 0.9), "gp": 1.0} for name in L.DIVERGENCES}
FGAN_SETTINGS["pearson"]["lr"] = FGAN_SETTINGS["tv"]["lr"] = 2e-4


class WGANGP(Recipe):
    """WGAN-GP (Gulrajani et al.): critic loss E V(fake) - E V(real) + gp * penalty, 5 critic steps."""

    name = "wgan-gp"
    options = {"gp": 10.0, "d_steps": 5}
    lr = 1e-4
    betas = (0.5, 0.9)
    source = ("Gulrajani et al. 2017, Algorithm 1: Adam lr 1e-4, 5 critic steps, lambda 10; betas (0.5, 0.9) "
              "instead of the paper's (0, 0.9), which on ring8 at 3,000 steps covered 6/8 modes at 0.7 % HQ "
              "(8/8 at 37 % with (0.5, 0.9))")

    def build(self, data):
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
    options = {"kernel": "gaussian", "gp": 1.0, "features": 16, "d_steps": 1}
    source = ("toy setting (measured on ring8 / grid25); the papers' image settings: Li et al. 2017 RMSProp "
              "lr 5e-5 with 5 critic steps, Binkowski et al. 2018 Adam")
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
        with torch.no_grad():  # the real features need no gradient here: mmd2 then skips their side's work
            hr = self.phi(real)
        return {"loss_g": self.update("G", ctx.ops.mmd2(hr, self.phi(fake), self.kernel, "unbiased"))}

    def critic(self, real, fake):
        with torch.no_grad():
            hr, hf = self.phi(real), self.phi(fake)
        return lambda x: gk.witness(self.phi(x), hr, hf, self.kernel)


def _ladder(scale: float):
    return tuple(scale * 2.0 ** -k for k in range(5, -1, -1))


def flow_sign(kernel) -> float:
    """+1 or -1: the sign that makes the witness flow of ``kernel`` pull toward the data.

    The drift is sign * grad_x (E_data k(x, .) - E_gen k(x, .)).  A radial kernel that decreases
    with distance (Gaussian, Laplacian, inverse multiquadric, rational quadratic; Energy = -r)
    pulls x toward the data and pushes it away from the other samples: sign +1.  One that
    increases with distance (polyharmonic r^k, k odd) does the opposite: sign -1, which makes
    polyharmonic(1) the energy kernel.  r^k log r (k even) is not monotone in r (r^2 log r
    decreases up to r = e^(-1/2), then grows): its flow attracts at some distances and repels
    at others whatever the sign, so it is refused.
    """
    if isinstance(kernel, (gk.Gaussian, gk.Laplacian, gk.InverseMultiquadric, gk.RationalQuadratic, gk.Energy)):
        return 1.0
    if isinstance(kernel, gk.Polyharmonic) and kernel.k > 0 and kernel.k % 2 == 1:
        return -1.0
    raise ConfigError(f"{kernel}: its flow does not pull toward the data at every distance; use a kernel that "
                      "is monotone in the distance")


# flow-gan's data-space kernels, built from the data's RMS radius (tests/test_train.py checks that each pulls
# every sample toward the data with its ``flow_sign``)
FLOW_KERNELS = {
    "gaussian": data_kernel,
    "laplacian": lambda scale: gk.Laplacian(_ladder(scale)),
    "imq": lambda scale: gk.InverseMultiquadric(_ladder(scale), -0.5),
    "energy": lambda scale: gk.Energy(),
    "polyharmonic1": lambda scale: gk.Polyharmonic(1),   # = energy, through the sign
}
# not offered: Polyharmonic(3), r^3 with sign -1, pulls each sample toward each data point, but its
# repulsion between samples grows as r^2, so spread-out samples push a sample near the data away from it
# (the flow test fails at radius 0.05 with samples out to 3)


class FlowGAN(Recipe):
    """Flow-GAN (seed 000): no critic network; G follows the flow of the closed-form witness of real vs fake.

    L_G = 1/2 |G(z) - sg[G(z) + drift]|^2: its gradient in sample space is -drift / B, so Adam
    moves the generator's outputs along the drift; the size of the step is set by ``--lr``
    (Adam divides out any constant factor of the drift, so the trainer has no step-size option).
    """

    name = "flow-gan"
    options = {"kernel": "gaussian"}
    source = "toy setting (measured on ring8 / grid25): Adam lr 1e-3, betas (0.5, 0.9); no critic"

    def build(self, data):
        if self.opts["kernel"] not in FLOW_KERNELS:
            raise ConfigError(f"--kernel {self.opts['kernel']!r}: flow-gan takes one of {', '.join(FLOW_KERNELS)}")
        self.kernel = FLOW_KERNELS[self.opts["kernel"]](self.scale)
        self.sign = flow_sign(self.kernel)
        return {"G": ["G"]}

    def drift(self, ctx, real, x):
        """sign * grad_x (E_data k(x, .) - E_gen k(x, .)) at the detached samples x."""
        n = ctx.batch   # the global count of real and of fake rows: weights +-1/B over the global batch
        w = self.sign / n
        weights = torch.cat([x.new_full((real.shape[0],), w), x.new_full((x.shape[0],), -w)])
        return ctx.ops.kernel_flow(x, torch.cat([real, x]), self.kernel, weights)

    def generator_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise())
        return {"loss_g": self.update("G", L.follow_loss(fake, self.drift(ctx, real, fake.detach())))}


class ScoreGAN(Recipe):
    """Score-GAN (seed 000): G follows the difference of the smoothed scores of the data and of its samples.

    drift = mean over sigma of sigma^2 (score_sigma(data) - score_sigma(samples)): each term is the
    difference of the Gaussian-weighted local means of data and samples around G(z) (mean-shift
    form), over the bandwidth ladder of ``data_kernel`` (scale/32 ... scale) as in multi-noise-level
    score matching; ``--sigma`` uses one bandwidth only.

    The samples' density at a sample leaves that sample out: a point's own kernel weight is
    exp(0) = 1, the largest there is, and at small bandwidths it would dominate the local mean
    (the mean-shift term of the samples would vanish, and with it the repulsion that spreads
    them).  The batch is split into its even and odd rows; the score of the samples at an
    even row uses the odd rows and vice versa (a two-fold leave-out: an exact leave-one-out
    through the log-normaliser would cancel catastrophically where a point has no neighbour).
    """

    name = "score-gan"
    options = {"sigma": None}
    source = "toy setting (measured on ring8 / grid25): Adam lr 1e-3, betas (0.5, 0.9); no critic"

    def build(self, data):
        require_op("smoothed_score", "--recipe score-gan")
        sigma = self.opts["sigma"]
        self.sigmas = (float(sigma),) if sigma is not None else data_kernel(self.scale).sigmas
        return {"G": ["G"]}

    @staticmethod
    def sample_score(score, x, s):
        """The smoothed score of the samples at x, each row left out of its own estimate (even / odd halves)."""
        even, odd = x[0::2], x[1::2]
        out = torch.empty_like(x)
        out[0::2] = score(even, odd, s)
        out[1::2] = score(odd, even, s)
        return out

    def drift(self, ctx, real, x):
        score = ctx.ops.smoothed_score
        return sum(s * s * (score(x, real, s) - self.sample_score(score, x, s)) for s in self.sigmas) / len(self.sigmas)

    def generator_step(self, ctx):
        real, fake = ctx.real(), self.G(ctx.noise())
        return {"loss_g": self.update("G", L.follow_loss(fake, self.drift(ctx, real, fake.detach())))}


class EBGAN(Recipe):
    """EBGAN (Zhao et al.): autoencoder discriminator, margin loss, pulling-away term on the codes of G(z)."""

    name = "ebgan"
    options = {"margin": None, "pt": 0.1, "code": 16, "d_steps": 1}
    source = ("toy setting (measured on ring8 / grid25): Adam lr 1e-3, betas (0.5, 0.9), 1 critic step; "
              "Zhao et al. 2017 chose Adam's settings per data set by a grid search")

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
    options = {"l1": 1.0, "d_steps": 1}
    source = "toy setting (measured on ring8 / grid25): Adam lr 1e-3, betas (0.5, 0.9), 1 critic step"

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
