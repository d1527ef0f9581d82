"""CUDA kernels of the kernel-smoothed score and its backward, written in Triton.

Math (the CPU version is ``csrc/score.cpp`` / ``csrc/score.h``; docs/MATH.md):

* ``smoothed_score(x, y, w, sigma)``  ``score_i = (ybar_i - x_i) / sigma^2``, ``ybar_i = sum_j p_ij y_j``,
  ``p_ij = softmax_j(log w_j - z_ij / 2 sigma^2)``, ``z_ij = |x_i - y_j|^2``; also returns
  ``lse_i = log sum_j w_j exp(-z_ij / 2 sigma^2)``.
* ``smoothed_score_backward``  with ``gbar_i = g_i . ybar_i``, ``T_ij = g_i . y_j``,
  ``C_ij = p_ij (T_ij - gbar_i)``:
  ``gx_i = sum_j C_ij y_j / sigma^4 - g_i / sigma^2``,
  ``gy_j = sum_i p_ij g_i / sigma^2 + sum_i C_ij (x_i - y_j) / sigma^4``,
  ``gw_j = sum_i q_ij (T_ij - gbar_i) / sigma^2`` with ``q_ij = p_ij / w_j = exp(-z_ij / 2 sigma^2 - lse_i)``.

What is fused: one flash-attention-style pass.  A program owns ``BLOCK_I`` query rows (and one block of
output columns) and streams over ``BLOCK_J`` centre tiles: the tile's ``z`` comes from the pairwise
engine's ``_tile_z`` (``tl.dot`` expansion, clamped), the logits are exponentiated against a running row
maximum, the normaliser and ``acc = sum_j p_ij y_j`` (``tl.dot(P, Y)``) are rescaled when the maximum
grows; the epilogue writes the score and lse (or, for ``kde_langevin`` in triton_langevin.py, applies
the Langevin update: ``UPDATE=True``).  Queries and centres are shifted by the centres' mean first
(translation invariance), which keeps the expansion accurate for data far from the origin.  The backward
recomputes ``p`` from ``lse`` tile by tile (``_score_tile``): one launch owns rows of x (gx), a second
owns rows of y (gy, gw; the tile is computed in the same orientation and transposed for the
contraction), so there are no atomics and the result is deterministic.

Memory: nothing N x M is allocated; extra memory O((N + M) D) (the shifted copies of x and y, ``ybar``
in the backward).  Accumulation is fp32 for fp16 / bf16 / fp32 inputs, fp64 for fp64 (half inputs are
upcast once, so every ``tl.dot`` runs on fp32 or fp64 operands).  Float scalars (1 / sigma^2, step
sizes) reach the kernels in a small cached device tensor of the accumulation dtype, because Triton
passes Python floats as fp32.

Limits:

* Verified under ``TRITON_INTERPRET=1`` on CPU tensors and compiled ahead of time for sm_80 / sm_90
  (docs/AOT.md); not yet run on a GPU.
* ``z`` comes from the expansion ``|a|^2 + |b|^2 - 2 a.b`` (after the shift), so queries ``R`` away from
  the centres' mean carry an absolute error of about ``eps R^2`` in ``z`` (fp32: 6e-8 R^2), i.e.
  ``eps R^2 / 2 sigma^2`` in the logits; the CPU kernel recomputes near pairs exactly, this one does not.
* Blocks of output columns (D above 64, or 32 for fp64) recompute the tile's ``z`` and softmax once per
  block.  fp32 dots use TF32 only where the user allows TF32 matmuls.
* The data-dependent weight checks (non-negative, not all zero) are done by the Python API
  (``gankernels.smoothed_score``), not here, to avoid a device sync: a negative weight gives NaN,
  all-zero weights NaN.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from . import _checks
from .triton_utils import HAS_TRITON, LaunchConfig, device_constants, on_input_device, tl, triton

if HAS_TRITON:
    from .triton_pairwise import _program_block, _span, _tile_p, _tile_z
    from .triton_noise import _update

__all__ = ["smoothed_score", "smoothed_score_backward"]


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit(do_not_specialize=["seed", "step"])
    def _score_kernel(X, Y, LOGW, SCORE, LSE, XOUT, SC,
                      N, M, D, s_x, s_y, s_out, seed, step,
                      HAS_W: tl.constexpr, UPDATE: tl.constexpr, NOISE: tl.constexpr,
                      ACC: tl.constexpr, PREC: tl.constexpr,
                      BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                      BLOCK_O: tl.constexpr):
        """Online log-sum-exp over all centres for BLOCK_I query rows, output columns of block pid 1.

        UPDATE=False: SCORE[i, o] = (ybar_i - x_i)_o / sigma^2 and LSE[i] (written by column block 0).
        UPDATE=True:  XOUT[i, o] = x_io + eta score_io + scale xi(seed, step, i D + o) (SCORE, LSE unused).
        SC = [ea, sa, eta, scale, eb, sb] in the accumulation dtype: 1 / 2 sigma^2 = ea eb, 1 / sigma^2 = sa sb
        (eb = sb = 1 unless the coefficient overflows the dtype, see ``_sigma_scalars``).
        """
        ea = tl.load(SC)
        eb = tl.load(SC + 4)
        ri, mi, ro, mo = _program_block(N, D, BLOCK_I, BLOCK_O)
        m = tl.full([BLOCK_I], float("-inf"), ACC)  # running max of the logits
        l = tl.zeros([BLOCK_I], ACC)                # running sum of exp(logit - m)
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)     # running sum of exp(logit - m) y_j
        for j0 in range(0, M, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, M)
            z = _tile_z(X, Y, ri, rj, mi, mj, D, s_x, s_y, True, False, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
            logit = -((z * ea) * eb)  # z = 0: exactly 0 even where 1 / 2 sigma^2 overflows
            if HAS_W:
                logit += tl.load(LOGW + rj, mask=mj, other=0.0)[None, :]
            logit = tl.where(mj[None, :], logit, float("-inf"))
            m_new = tl.maximum(m, tl.max(logit, 1))
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # no positive weight yet: p = 0, no NaN
            alpha = tl.exp(m - m_ref)
            p = tl.exp(logit - m_ref[:, None])  # NaN logits (NaN inputs) stay NaN
            l = l * alpha + tl.sum(p, 1)
            v = tl.load(Y + rj[:, None] * s_y + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=PREC)
            m = m_new
        m2 = mi[:, None] & mo[None, :]
        x = tl.load(X + ri[:, None] * s_x + ro[None, :], mask=m2, other=0.0)
        score = ((acc / l[:, None] - x) * tl.load(SC + 1)) * tl.load(SC + 5)
        if UPDATE:
            e = ri[:, None] * D + ro[None, :]
            out = _update(x, score, e, tl.load(SC + 2), tl.load(SC + 3), seed, step, NOISE)
            tl.store(XOUT + ri[:, None] * s_out + ro[None, :], out, mask=m2)
        else:
            tl.store(SCORE + ri[:, None] * s_out + ro[None, :], score, mask=m2)
            if tl.program_id(1) == 0:
                tl.store(LSE + ri, m + tl.log(l), mask=mi)

    @triton.jit
    def _score_tile(X, Y, G, W, LSE, GBAR, ri, rj, mi, mj, D, s_x, s_y, s_g, ea, eb,
                    HAS_W: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
        """(p, C, q (T - gbar)) on the tile (rows ri of x, rows rj of y), zero outside it."""
        z = _tile_z(X, Y, ri, rj, mi, mj, D, s_x, s_y, True, False, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
        t = _tile_p(G, Y, ri, rj, mi, mj, D, s_g, s_y, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)  # g_i . y_j
        lse = tl.load(LSE + ri, mask=mi, other=0.0)
        gbar = tl.load(GBAR + ri, mask=mi, other=0.0)
        inside = mi[:, None] & mj[None, :]
        q = tl.where(inside, tl.exp(-((z * ea) * eb) - lse[:, None]), 0.0)
        cq = q * (t - gbar[:, None])
        if HAS_W:  # p = w_j q, and exactly 0 for a zero weight (q may overflow there)
            w = tl.load(W + rj, mask=mj, other=0.0)[None, :]
            p = tl.where(w == 0.0, 0.0, q * w)
            c = tl.where(w == 0.0, 0.0, cq * w)
        else:
            p = q
            c = cq
        return p, c, cq

    @triton.jit
    def _score_bwd_x_kernel(X, Y, G, W, LSE, GBAR, SC, GX,
                            N, M, D, s_x, s_y, s_g, s_out,
                            HAS_W: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr,
                            BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                            BLOCK_O: tl.constexpr):
        """GX[i, o] = sum_j C_ij y_jo / sigma^4 - g_io / sigma^2 (program owns rows of x);
        SC = [ea, 1 / sigma^2, 1 / sigma^4, eb] with 1 / 2 sigma^2 = ea eb."""
        ea = tl.load(SC)
        eb = tl.load(SC + 3)
        ri, mi, ro, mo = _program_block(N, D, BLOCK_I, BLOCK_O)
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        for j0 in range(0, M, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, M)
            _p, c, _cq = _score_tile(X, Y, G, W, LSE, GBAR, ri, rj, mi, mj, D, s_x, s_y, s_g, ea, eb,
                                     HAS_W, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
            v = tl.load(Y + rj[:, None] * s_y + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
            acc += tl.dot(c, v, input_precision=PREC)
        m2 = mi[:, None] & mo[None, :]
        g = tl.load(G + ri[:, None] * s_g + ro[None, :], mask=m2, other=0.0)
        gx = acc * tl.load(SC + 2) - g * tl.load(SC + 1)
        tl.store(GX + ri[:, None] * s_out + ro[None, :], gx, mask=m2)

    @triton.jit
    def _score_bwd_y_kernel(X, Y, G, W, LSE, GBAR, SC, GY, GW,
                            N, M, D, s_x, s_y, s_g, s_out,
                            HAS_W: tl.constexpr, NEED_Y: tl.constexpr, NEED_W: tl.constexpr,
                            ACC: tl.constexpr, PREC: tl.constexpr,
                            BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                            BLOCK_O: tl.constexpr):
        """Program owns BLOCK_J rows of y and loops over x tiles:
        GY[j, o] = sum_i p_ij g_io / sigma^2 + (sum_i C_ij x_io - y_jo sum_i C_ij) / sigma^4,
        GW[j] = sum_i q_ij (T_ij - gbar_i) / sigma^2 (written by column block 0); SC as for gx."""
        ea = tl.load(SC)
        eb = tl.load(SC + 3)
        inv_s2 = tl.load(SC + 1)
        rj, mj, ro, mo = _program_block(M, D, BLOCK_J, BLOCK_O)
        acc_p = tl.zeros([BLOCK_J, BLOCK_O], ACC)  # sum_i p_ij g_i
        acc_c = tl.zeros([BLOCK_J, BLOCK_O], ACC)  # sum_i C_ij x_i
        csum = tl.zeros([BLOCK_J], ACC)
        wsum = tl.zeros([BLOCK_J], ACC)
        for i0 in range(0, N, BLOCK_I):
            ri, mi = _span(i0, BLOCK_I, N)
            p, c, cq = _score_tile(X, Y, G, W, LSE, GBAR, ri, rj, mi, mj, D, s_x, s_y, s_g, ea, eb,
                                   HAS_W, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
            if NEED_Y:
                m2 = mi[:, None] & mo[None, :]
                g = tl.load(G + ri[:, None] * s_g + ro[None, :], mask=m2, other=0.0)
                x = tl.load(X + ri[:, None] * s_x + ro[None, :], mask=m2, other=0.0)
                acc_p += tl.dot(tl.trans(p), g, input_precision=PREC)
                acc_c += tl.dot(tl.trans(c), x, input_precision=PREC)
                csum += tl.sum(c, 0)
            if NEED_W:
                wsum += tl.sum(cq, 0)
        if NEED_Y:
            m2 = mj[:, None] & mo[None, :]
            y = tl.load(Y + rj[:, None] * s_y + ro[None, :], mask=m2, other=0.0)
            gy = acc_p * inv_s2 + (acc_c - y * csum[:, None]) * tl.load(SC + 2)
            tl.store(GY + rj[:, None] * s_out + ro[None, :], gy, mask=m2)
        if NEED_W:
            if tl.program_id(1) == 0:
                tl.store(GW + rj, wsum * inv_s2, mask=mj)


# ----------------------------------------------------------------------------
# Python side: checks, preparation, launchers
# ----------------------------------------------------------------------------
def _config(x: torch.Tensor, w: Optional[torch.Tensor]) -> Tuple[LaunchConfig, Optional[torch.Tensor]]:
    """(launch configuration, weights [M] in its accumulation dtype, contiguous, or None) of checked arguments."""
    cfg = LaunchConfig(x)
    return cfg, None if w is None else w.to(cfg.acc_torch).contiguous()


def _shift(x: torch.Tensor, y: torch.Tensor, acc) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - mu, y - mu, mu) in the accumulation dtype, contiguous and fresh; mu = mean of y."""
    ya = y.to(acc)
    mu = ya.mean(0, keepdim=True)
    return (x.to(acc) - mu).contiguous(), (ya - mu).contiguous(), mu


def _scalars(rows, cfg: LaunchConfig, device) -> torch.Tensor:
    """Per-launch float scalars as a device tensor in the accumulation dtype (kernel float arguments are fp32),
    cached by value: a steady-state call makes no host-to-device copy."""
    flat = [v for row in rows for v in (row if isinstance(row, (list, tuple)) else [row])]
    shape = (len(rows), len(rows[0])) if rows and isinstance(rows[0], (list, tuple)) else (len(rows),)
    return device_constants(flat, cfg.acc_torch, device).view(shape)


def _split(u: float, root: float, cfg: LaunchConfig) -> Tuple[float, float]:
    """(a, b) with a b = u: b = 1 unless u overflows the accumulation dtype, then a = b = sqrt(u) (clamped)."""
    mx = float(torch.finfo(cfg.acc_torch).max)
    if u <= mx:
        return u, 1.0
    r = min(root, mx)
    return r, r


def _sigma_scalars(sigma: float, cfg: LaunchConfig) -> Tuple[float, float, float, float]:
    """(ea, eb, sa, sb): 1 / 2 sigma^2 = ea eb and 1 / sigma^2 = sa sb, folded in fp64: a tiny sigma
    whose coefficients overflow the dtype gives a logit of exactly 0 at z = 0 and a score of 0 where ybar = x."""
    s2 = sigma * sigma
    ea, eb = _split(0.5 / s2 if s2 > 0 else math.inf, math.sqrt(0.5) / sigma, cfg)
    sa, sb = _split(1.0 / s2 if s2 > 0 else math.inf, 1.0 / sigma, cfg)
    return ea, eb, sa, sb


def _grid(cfg: LaunchConfig, rows: int, rows_block: int, cols: int, cap=None):
    bo = cfg.oblock(cols, cap)
    return (triton.cdiv(rows, rows_block), triton.cdiv(cols, bo)), bo


def _launch_score(cfg: LaunchConfig, xs, ys, logw, sc, score=None, lse=None, xout=None, seed=0, step=0) -> None:
    """score / lse (``xout`` None) or the Langevin update of xs into ``xout``; sc = [ea, sa, eta, scale, eb, sb]."""
    N, D = xs.shape
    update = xout is not None
    out = xout if update else score
    grid, bo = _grid(cfg, N, cfg.bi, D)
    _score_kernel[grid](
        xs, ys, xs if logw is None else logw, out, xs if update else lse, out, sc,
        N, ys.size(0), D, xs.stride(0), ys.stride(0), out.stride(0), int(seed), int(step),
        HAS_W=logw is not None, UPDATE=update, NOISE=update,
        ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.score_bj, BLOCK_D=cfg.bd, BLOCK_O=bo,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )


# ----------------------------------------------------------------------------
# The two ops
# ----------------------------------------------------------------------------
@on_input_device
def smoothed_score(x: torch.Tensor, y: torch.Tensor, w: Optional[torch.Tensor], sigma: float
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(score [N, D] in x.dtype, lse [N] in the accumulation dtype)."""
    sigma = _checks.score_args(x, y, w, sigma)
    cfg, wa = _config(x, w)
    xs, ys, _mu = _shift(x, y, cfg.acc_torch)
    score = torch.empty_like(xs)
    lse = torch.empty(xs.size(0), dtype=cfg.acc_torch, device=x.device)
    ea, eb, sa, sb = _sigma_scalars(sigma, cfg)
    sc = _scalars([ea, sa, 0.0, 0.0, eb, sb], cfg, x.device)
    _launch_score(cfg, xs, ys, None if wa is None else wa.log(), sc, score=score, lse=lse)
    return score.to(x.dtype), lse


@on_input_device
def smoothed_score_backward(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, w: Optional[torch.Tensor],
                            sigma: float, score: torch.Tensor, lse: torch.Tensor, output_mask: Sequence[bool]
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gx [N, D], gy [M, D], gw [M] or [0]) of L = sum_i grad_i . score_i; masked-off outputs are zeros."""
    sigma = _checks.score_backward_args(grad, x, y, w, sigma, score, lse, output_mask)
    cfg, wa = _config(x, w)
    N, D = x.shape
    M = y.size(0)
    acc = cfg.acc_torch
    need_x, need_y = bool(output_mask[0]), bool(output_mask[1])
    need_w = bool(output_mask[2]) and w is not None
    gx = torch.zeros((N, D), dtype=acc, device=x.device)
    gy = torch.zeros((M, D), dtype=acc, device=x.device)
    gw = torch.zeros((M if w is not None else 0,), dtype=acc, device=x.device)
    if need_x or need_y or need_w:
        s2 = sigma * sigma
        ea, eb, _sa, _sb = _sigma_scalars(sigma, cfg)
        xs, ys, _mu = _shift(x, y, acc)
        g = grad.to(acc).contiguous()
        gbar = (g * (xs + score.to(acc) * s2)).sum(1)  # g_i . ybar_i
        args = (xs, ys, g, xs if wa is None else wa, lse.to(acc).contiguous(), gbar,
                _scalars([ea, 1.0 / s2, 1.0 / (s2 * s2), eb], cfg, x.device))
        sizes = (N, M, D, xs.stride(0), ys.stride(0), g.stride(0), D)
        meta = dict(HAS_W=wa is not None, ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.score_bj,
                    BLOCK_D=cfg.bd, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
        if need_x:
            grid, bo = _grid(cfg, N, cfg.bi, D)
            _score_bwd_x_kernel[grid](*args, gx, *sizes, BLOCK_O=bo, **meta)
        if need_y or need_w:
            grid, bo = _grid(cfg, M, cfg.score_gy_bj, D, cfg.score_gy_max_o)
            grid = grid if need_y else (grid[0], 1)
            _score_bwd_y_kernel[grid](*args, gy, gw if need_w else gy, *sizes,
                                      NEED_Y=need_y, NEED_W=need_w, BLOCK_O=bo, **dict(meta, BLOCK_J=cfg.score_gy_bj))
    return gx.to(x.dtype), gy.to(x.dtype), gw.to(x.dtype if w is None else w.dtype)
