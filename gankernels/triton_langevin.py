"""CUDA kernels of the fused Langevin updates and chains, written in Triton.

Math (the CPU version is ``csrc/langevin.cpp``; docs/MATH.md):

* ``langevin_step(x, drift, eta, tau, seed)``  ``x + eta drift + sqrt(2 eta tau) xi``.
* ``kernel_langevin``  ``steps`` times ``x <- x + eta sum_j w_j grad_1 k(x, c_j) + sqrt(2 eta tau) xi``.
* ``kde_langevin``  for each sigma_k, ``steps_per_sigma`` times
  ``x <- x + (alpha_k / 2) smoothed_score(x, data, sigma_k) + sqrt(alpha_k) xi``,
  ``alpha_k = eps sigma_k^2 / sigma_L^2``.

What is fused: ``langevin_step`` is one pass over memory with the noise generated in the kernel
(triton_noise.py).  The chains are one launch per step: ``kde_langevin`` is the score kernel of
triton_score.py with the update applied in its epilogue (``UPDATE=True``), ``kernel_langevin`` a flow
kernel (``_phi`` of the engine on the ``_tile_z`` tile, ``tl.dot`` with the centres) with the update in
its epilogue.  Each step reads one buffer and writes the other (ping-pong), so blocks of output columns
never race on a row.

Memory: nothing N x M; the shifted state and the second ping-pong buffer, O((N + M) D).  The chains'
state is fp32 for fp16 / bf16 / fp32 inputs, fp64 for fp64; the noise is fp32.  ``langevin_step`` may be
bound by the integer throughput of Philox rather than by memory on a GPU.  Verified under
``TRITON_INTERPRET=1`` and compiled ahead of time for sm_80 / sm_90; not yet run on a GPU.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from . import _checks
from .triton_pairwise import _DOT_FAMILIES, _param_tensor
from .triton_score import _config, _grid, _launch_score, _scalars, _shift, _sigma_scalars
from .triton_utils import HAS_TRITON, LaunchConfig, interpreting, on_input_device, tl, triton

if HAS_TRITON:
    from .triton_pairwise import _phi, _program_block, _span, _tile_z
    from .triton_noise import _update

__all__ = ["langevin_step", "langevin_step_", "kernel_langevin", "kde_langevin"]


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit(do_not_specialize=["seed"])
    def _langevin_kernel(X, DR, OUT, SC, n, seed, NOISE: tl.constexpr, BLOCK: tl.constexpr):
        """OUT[e] = X[e] + eta DR[e] + scale xi(seed, 0, e) over contiguous memory (OUT may be X);
        SC = [eta, scale] in the accumulation dtype."""
        e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        m = e < n
        eta = tl.load(SC)
        x = tl.load(X + e, mask=m, other=0.0).to(eta.dtype)
        d = tl.load(DR + e, mask=m, other=0.0).to(eta.dtype)
        out = _update(x, d, e, eta, tl.load(SC + 1), seed, 0, NOISE)
        tl.store(OUT + e, out.to(OUT.dtype.element_ty), mask=m)

    @triton.jit(do_not_specialize=["seed", "step"])
    def _flow_step_kernel(X, C, W, P, XOUT, SC,
                          N, M, D, s_x, s_c, s_out, NP, IP, seed, step,
                          FAMILY: tl.constexpr, RADIAL: tl.constexpr, NOISE: tl.constexpr,
                          ACC: tl.constexpr, PREC: tl.constexpr,
                          BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_O: tl.constexpr):
        """XOUT[i, o] = x_io + eta flow_io + scale xi(seed, step, i D + o),
        flow_i = sum_j w_j grad_1 k(x_i, c_j) (radial: 2 sum_j w_j phi'(z_ij) (x_i - c_j)); SC = [eta, scale]."""
        ri, mi, ro, mo = _program_block(N, D, BLOCK_I, BLOCK_O)
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        rsum = tl.zeros([BLOCK_I], ACC)
        for j0 in range(0, M, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, M)
            z = _tile_z(X, C, ri, rj, mi, mj, D, s_x, s_c, RADIAL, False, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
            _f0, f1, _f2 = _phi(z, P, NP, IP, FAMILY, False, True, False)
            w = tl.load(W + rj, mask=mj, other=0.0)
            s = tl.where(mj[None, :], w[None, :] * f1, 0.0)
            v = tl.load(C + rj[:, None] * s_c + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
            acc += tl.dot(s, v, input_precision=PREC)
            if RADIAL:
                rsum += tl.sum(s, 1)
        m2 = mi[:, None] & mo[None, :]
        x = tl.load(X + ri[:, None] * s_x + ro[None, :], mask=m2, other=0.0)
        if RADIAL:
            flow = 2.0 * (x * rsum[:, None] - acc)
        else:
            flow = acc
        e = ri[:, None] * D + ro[None, :]
        out = _update(x, flow, e, tl.load(SC), tl.load(SC + 1), seed, step, NOISE)
        tl.store(XOUT + ri[:, None] * s_out + ro[None, :], out, mask=m2)


# ----------------------------------------------------------------------------
# Python side
# ----------------------------------------------------------------------------
def _launch_langevin(x, drift, out, eta: float, tau: float, seed: int) -> None:
    """out = x + eta drift + sqrt(2 eta tau) xi(seed, 0, e) over contiguous tensors (out may be x)."""
    cfg = LaunchConfig(x)
    n = x.numel()
    if n == 0:
        return
    block = 4096 if interpreting() else 1024
    scale = math.sqrt(2.0 * eta * tau)
    _langevin_kernel[(triton.cdiv(n, block),)](x, drift, out, _scalars([eta, scale], cfg, x.device), n,
                                               int(seed), NOISE=scale != 0.0, BLOCK=block, num_warps=4)


@on_input_device
def langevin_step(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float, seed: int
                  ) -> torch.Tensor:
    """x + eta drift + sqrt(2 eta tau) xi (a new contiguous tensor, any shape)."""
    eta, tau = _checks.step_args(x, drift, step_size, temperature)
    xc = x.contiguous()
    out = torch.empty_like(xc)
    _launch_langevin(xc, drift.contiguous(), out, eta, tau, seed)
    return out


@on_input_device
def langevin_step_(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float, seed: int) -> None:
    """In place; a non-contiguous x goes through a contiguous copy."""
    eta, tau = _checks.step_args(x, drift, step_size, temperature)
    if x.is_contiguous():
        _launch_langevin(x, drift.contiguous(), x, eta, tau, seed)
    else:
        x.copy_(langevin_step(x, drift, eta, tau, seed))


def _chain(state: torch.Tensor, steps: int, launch) -> torch.Tensor:
    """``steps`` launches ``launch(src, dst, t)`` ping-ponging between two buffers; returns the last one."""
    bufs = [state, torch.empty_like(state) if steps > 0 else state]
    for t in range(steps):
        launch(bufs[t % 2], bufs[(t + 1) % 2], t)
    return bufs[steps % 2]


@on_input_device
def kernel_langevin(x: torch.Tensor, centers: torch.Tensor, w: torch.Tensor, family: int, params: Sequence[float],
                    step_size: float, steps: int, temperature: float, seed: int) -> torch.Tensor:
    """``steps`` fused steps x <- x + eta sum_j w_j grad k(x, c_j) + sqrt(2 eta tau) xi."""
    _, eta, steps, tau = _checks.kernel_langevin_args(x, centers, w, family, params, step_size, steps, temperature)
    if steps == 0:
        return x.clone(memory_format=torch.contiguous_format)  # exactly x (no round trip through the shift)
    cfg, wa = _config(x, w)
    fam = int(family)
    cfg = cfg.for_family(fam)
    acc = cfg.acc_torch
    P, np_, ip = _param_tensor(fam, params, acc, x.device)
    radial = fam not in _DOT_FAMILIES
    if radial:  # translation invariant: work relative to the centres' mean
        xs, cs, mu = _shift(x, centers, acc)
    else:
        xs = x.to(acc, memory_format=torch.contiguous_format, copy=True)
        cs = centers.to(acc).contiguous()
        mu = None
    N, D = xs.shape
    grid, bo = _grid(cfg, N, cfg.bi, D)
    scale = math.sqrt(2.0 * eta * tau)
    sc = _scalars([eta, scale], cfg, x.device)

    def launch(src, dst, t):
        _flow_step_kernel[grid](
            src, cs, wa, P, dst, sc, N, cs.size(0), D, src.stride(0), cs.stride(0), dst.stride(0), np_, ip,
            int(seed), t,
            FAMILY=fam, RADIAL=radial, NOISE=scale != 0.0, ACC=cfg.acc, PREC=cfg.prec,
            BLOCK_I=cfg.bi, BLOCK_J=cfg.step_bj, BLOCK_D=cfg.bd, BLOCK_O=bo, num_warps=cfg.num_warps,
            num_stages=cfg.num_stages,
        )

    out = _chain(xs, steps, launch)
    return (out if mu is None else out + mu).to(x.dtype)


@on_input_device
def kde_langevin(x: torch.Tensor, data: torch.Tensor, sigmas: Sequence[float], steps_per_sigma: int, eps: float,
                 seed: int) -> torch.Tensor:
    """Annealed Langevin on the Gaussian-smoothed data, score and update fused (one launch per step)."""
    sig, steps_per_sigma, eps = _checks.kde_langevin_args(x, data, sigmas, steps_per_sigma, eps)
    if steps_per_sigma == 0:
        return x.clone(memory_format=torch.contiguous_format)  # exactly x
    cfg = LaunchConfig(x)
    xs, ds, mu = _shift(x, data, cfg.acc_torch)
    rows = []  # per step: [ea, sa, eta = alpha / 2, scale = sqrt(alpha), eb, sb] (see _sigma_scalars)
    for s in sig:
        alpha = eps * s * s / (sig[-1] * sig[-1])
        ea, eb, sa, sb = _sigma_scalars(s, cfg)
        rows += [[ea, sa, 0.5 * alpha, math.sqrt(alpha), eb, sb]] * steps_per_sigma
    sc = _scalars(rows, cfg, x.device) if rows else None

    def launch(src, dst, t):
        _launch_score(cfg, src, ds, None, sc[t], xout=dst, seed=seed, step=t)

    return (_chain(xs, len(rows), launch) + mu).to(x.dtype)
