"""The loss math of the recipes (docs/MATH.md §5), as small pure functions that the tests check.

* f-GAN: critic V, activation g_f, conjugate f*; the critic maximises
  E_data[g_f(V)] - E_gen[f*(g_f(V))]; the generator uses the non-saturating
  form of Nowozin et al. (§3.2): maximise E_gen[g_f(V)].  ``f*(g_f(v))`` is
  evaluated in a closed form that is finite for every v (e.g. GAN: softplus(v)).
* Gradient penalty (WGAN-GP; Binkowski et al. on the MMD witness):
  E[(||grad_x f(x_hat)|| - 1)^2] at x_hat = e x_real + (1 - e) x_fake, e ~ U(0, 1).
* EBGAN: energy E(x) = mean_d (AE(x) - x)^2; L_D = E(x) + [m - E(G(z))]^+, L_G = E(G(z)) + l_PT PT.
* alpha-GAN: discriminators output logits v, D = sigmoid(v); the synthetic-likelihood
  (density-ratio) term -log(D / (1 - D)) is -v.
* Flow / score matching: L = 1/2 ||x - sg[x + drift]||^2 (sum over dims, mean over the
  batch); its gradient w.r.t. x is -drift / B, so the generator follows the drift.  (A
  step size eta in front of the drift would only scale this gradient, which Adam divides
  out; the step in parameter space is set by the learning rate.)
"""
from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "Divergence", "DIVERGENCES", "fgan_critic_loss", "fgan_generator_loss", "gradient_penalty",
    "critic_gradient_penalty", "energy", "ebgan_critic_loss", "bce_real", "bce_fake", "alpha_discriminator_loss",
    "alpha_code_loss", "density_ratio_term", "follow_loss",
]

LOG2 = math.log(2.0)


class Divergence(NamedTuple):
    name: str
    activation: Callable[[torch.Tensor], torch.Tensor]      # g_f(v)
    conjugate: Callable[[torch.Tensor], torch.Tensor]       # f*(t), the docs/MATH.md §5 formula
    conjugate_of_activation: Callable[[torch.Tensor], torch.Tensor]  # f*(g_f(v)), stable closed form


DIVERGENCES: Dict[str, Divergence] = {d.name: d for d in [
    Divergence("tv", lambda v: 0.5 * torch.tanh(v), lambda t: t, lambda v: 0.5 * torch.tanh(v)),
    Divergence("kl", lambda v: v, lambda t: torch.exp(t - 1), lambda v: torch.exp(v - 1)),
    Divergence("reverse-kl", lambda v: -torch.exp(-v), lambda t: -1 - torch.log(-t), lambda v: v - 1),
    Divergence("pearson", lambda v: v, lambda t: t * t / 4 + t, lambda v: v * v / 4 + v),
    Divergence("neyman", lambda v: -torch.expm1(-v), lambda t: 2 - 2 * torch.sqrt(1 - t),
               lambda v: 2 - 2 * torch.exp(-v / 2)),
    Divergence("hellinger", lambda v: -torch.expm1(-v), lambda t: t / (1 - t), lambda v: torch.expm1(v)),
    Divergence("js", lambda v: LOG2 - F.softplus(-v), lambda t: -torch.log(2 - torch.exp(t)),
               lambda v: F.softplus(v) - LOG2),
    Divergence("gan", lambda v: -F.softplus(-v), lambda t: -torch.log(-torch.expm1(t)), lambda v: F.softplus(v)),
]}


def fgan_critic_loss(v_real: torch.Tensor, v_fake: torch.Tensor, div: Divergence) -> torch.Tensor:
    """-(E_data[g_f(V)] - E_gen[f*(g_f(V))]): minimised by the critic."""
    return div.conjugate_of_activation(v_fake).mean() - div.activation(v_real).mean()


def fgan_generator_loss(v_fake: torch.Tensor, div: Divergence) -> torch.Tensor:
    """Non-saturating generator loss -E_gen[g_f(V)]."""
    return -div.activation(v_fake).mean()


def gradient_penalty(fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     e: Union[torch.Tensor, torch.Generator]) -> torch.Tensor:
    """E[(||grad f(x_hat)|| - 1)^2] on random interpolates; differentiable (double backward).

    ``e``: the interpolation weights [B, 1] in [0, 1] (``Context.uniform``), or a generator to draw them from.
    """
    if isinstance(e, torch.Generator):
        e = torch.rand(real.shape[0], 1, generator=e)
    e = e.to(device=real.device, dtype=real.dtype)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x_hat).sum(), x_hat, create_graph=True)
    return ((grad.norm(dim=1) - 1) ** 2).mean()


def critic_gradient_penalty(fn: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor):
    """((fn(real), fn(fake)), E_real |grad fn|^2 + E_fake |grad fn|^2): the zero-centred penalty.

    The outputs are returned with the graph of the penalty, so the critic loss and the
    penalty share one forward pass; the penalty is differentiable (double backward).
    """
    x = torch.cat([real.detach(), fake.detach()]).requires_grad_(True)
    v = fn(x).reshape(-1)
    (grad,) = torch.autograd.grad(v.sum(), x, create_graph=True)
    sq = grad.pow(2).sum(1)
    n = real.shape[0]
    return (v[:n], v[n:]), sq[:n].mean() + sq[n:].mean()


def energy(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """EBGAN energy per sample: the autoencoder's mean squared reconstruction error, [B]."""
    return ((reconstruction - x) ** 2).mean(1)


def ebgan_critic_loss(e_real: torch.Tensor, e_fake: torch.Tensor, margin: float) -> torch.Tensor:
    """L_D = E(x) + [m - E(G(z))]^+ (batch means)."""
    return e_real.mean() + F.relu(margin - e_fake).mean()


def bce_real(v: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(v), batch mean."""
    return F.softplus(-v).mean()


def bce_fake(v: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(v)), batch mean."""
    return F.softplus(v).mean()


def alpha_discriminator_loss(v_real, v_reconstructed, v_generated) -> torch.Tensor:
    """Image discriminator of alpha-GAN: data is real; reconstructions and samples are fake."""
    return bce_real(v_real) + bce_fake(v_reconstructed) + bce_fake(v_generated)


def alpha_code_loss(v_prior, v_encoded) -> torch.Tensor:
    """Code discriminator: prior codes z ~ N(0, I) are real, encoder codes E(x) are fake."""
    return bce_real(v_prior) + bce_fake(v_encoded)


def density_ratio_term(v: torch.Tensor) -> torch.Tensor:
    """Synthetic-likelihood term -log(D / (1 - D)) with D = sigmoid(v), i.e. -v (batch mean)."""
    return -v.mean()


def follow_loss(x: torch.Tensor, drift: torch.Tensor) -> torch.Tensor:
    """1/2 ||x - sg[x + drift]||^2, summed over dims, averaged over the batch."""
    target = (x + drift).detach()
    return 0.5 * ((x - target) ** 2).sum(1).mean()
