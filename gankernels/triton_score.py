"""CUDA kernels of the smoothed score and the fused Langevin ops, written in Triton.

Math (the CPU twin is ``csrc/score.cpp``, whose header has the same formulas):

* ``smoothed_score(x, y, w, sigma)``  ``score_i = (ybar_i - x_i) / sigma^2``, ``ybar_i = sum_j p_ij y_j``,
  ``p_ij = softmax_j(log w_j - z_ij / 2 sigma^2)``, ``z_ij = |x_i - y_j|^2``; also returns
  ``lse_i = log sum_j w_j exp(-z_ij / 2 sigma^2)``.
* ``smoothed_score_backward``  with ``gbar_i = g_i . ybar_i``, ``T_ij = g_i . y_j``,
  ``C_ij = p_ij (T_ij - gbar_i)``:
  ``gx_i = sum_j C_ij y_j / sigma^4 - g_i / sigma^2``,
  ``gy_j = sum_i p_ij g_i / sigma^2 + sum_i C_ij (x_i - y_j) / sigma^4``,
  ``gw_j = sum_i q_ij (T_ij - gbar_i) / sigma^2`` with ``q_ij = p_ij / w_j = exp(-z_ij / 2 sigma^2 - lse_i)``.
* ``langevin_step(x, drift, eta, tau, seed)``  ``x + eta drift + sqrt(2 eta tau) xi``.
* ``kernel_langevin``  ``steps`` times ``x <- x + eta sum_j w_j grad_1 k(x, c_j) + sqrt(2 eta tau) xi``.
* ``kde_langevin``  for each sigma_k, ``steps_per_sigma`` times
  ``x <- x + (alpha_k / 2) smoothed_score(x, data, sigma_k) + sqrt(alpha_k) xi``,
  ``alpha_k = eps sigma_k^2 / sigma_L^2``.

What is fused: the smoothed score is one flash-attention-style pass.  A program
owns ``BLOCK_I`` query rows (and one block of output columns) and streams over
``BLOCK_J`` centre tiles: the tile's ``z`` comes from the pairwise engine's
``_tile_z`` (``tl.dot`` expansion, clamped), the logits are exponentiated
against a running row maximum, the normaliser and ``acc = sum_j p_ij y_j``
(``tl.dot(P, Y)``) are rescaled when the maximum grows; the epilogue writes the
score and lse.  Queries and centres are shifted by the centres' mean first (the
problem is translation invariant), which keeps the expansion accurate for data
far from the origin.  The backward recomputes ``p`` from ``lse`` tile by tile
(helper ``_score_tile``): one launch owns rows of x (gx), a second owns rows of
y (gy, gw; the tile is computed in the same orientation and transposed for the
contraction), so there are no atomics and the result is deterministic.  The
Langevin chains are one launch per step: ``kde_langevin`` is the score kernel
with the update applied in its epilogue (``UPDATE=True``), ``kernel_langevin``
a flow kernel (``_phi`` of the engine on the ``_tile_z`` tile, ``tl.dot`` with
the centres) with the update in its epilogue.  Each step reads one buffer and
writes the other (ping-pong), so blocks of output columns never race on a row.

Noise: ``xi`` of element ``e`` (row-major index in the ``[N, D]`` or flattened
tensor) at chain step ``t`` is a pure function of ``(seed, t, e)``: one
Philox4x32-10 call (``tl.philox``, key = the 64-bit seed, counter =
``(e_lo, e_hi, t, 0)``) gives two 24-bit uniforms in (0, 1), and Box-Muller
turns them into one normal (|xi| <= 5.9).  So the same seed gives the same
result on the device, independent of block sizes; ``langevin_step`` uses
``t = 0``, so one ``kde_langevin`` / ``kernel_langevin`` step reproduces the
noise of ``langevin_step`` with the same seed.  The noise is NOT bitwise equal
to the CPU kernels' (``csrc/noise.h``: ARS-7 on AES rounds, four normals per block);
both are standard normal streams keyed by the same seed.  Cost: one Philox call
(about 100 integer operations) per element, of which two of the four words are
used; ``langevin_step`` may therefore be bound by integer throughput rather
than memory on a GPU (packing four normals per call is a possible speed-up).

Memory: nothing N x M is allocated.  Extra memory is O((N + M) D): the shifted
fp32 / fp64 copies of x and y, ``ybar`` in the backward, and the second
ping-pong buffer of the chains.  Accumulation (and the chains' state) is fp32
for fp16 / bf16 / fp32 inputs, fp64 for fp64 inputs (half inputs are upcast
once, so every ``tl.dot`` runs on fp32 or fp64 operands); the noise is fp32.
Float scalars (1 / sigma^2, step sizes) reach the kernels in a small device
tensor of the accumulation dtype, because Triton passes Python floats as fp32.

Limits:

* Verified only under ``TRITON_INTERPRET=1`` on CPU tensors so far (tests in
  ``tests/test_triton_score.py``); not yet compiled or run on a GPU.
* ``z`` comes from the expansion ``|a|^2 + |b|^2 - 2 a.b`` (after the shift), so
  queries ``R`` away from the centres' mean carry an absolute error of about
  ``eps R^2`` in ``z`` (fp32: 6e-8 R^2), i.e. ``eps R^2 / 2 sigma^2`` in the
  logits; the CPU kernel recomputes near pairs exactly, this one does not.
  A query far from every centre still gets the nearest centre's score.
* Blocks of output columns (D above 64, or 32 for fp64) recompute the tile's
  ``z`` and softmax once per block.  fp32 dots use TF32 only when
  ``torch.backends.cuda.matmul.allow_tf32`` is set (the engine's rule).
* The op-level checks are the static ones (shapes, dtypes, parameters); the
  data-dependent weight checks (non-negative, not all zero) are done by the
  Python API (``gankernels.smoothed_score``) and are not repeated here to avoid
  a device sync: a negative weight gives NaN, all-zero weights NaN.
* CPU tensors are supported only under ``TRITON_INTERPRET=1`` (tests).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

from . import _checks
from ._checks import _require, check_positive as _positive
from .triton_utils import device_constants, on_input_device
from .triton_engine import HAS_TRITON, _DOT_FAMILIES, _Cfg, _interpreting, _param_tensor

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .triton_engine import _phi, _span, _tile_p, _tile_z

__all__ = [
    "smoothed_score", "smoothed_score_backward", "langevin_step", "langevin_step_", "kernel_langevin",
    "kde_langevin",
]


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _normal(seed, step, e):
        """Standard normals (fp32) for the int64 element indices e at chain step ``step``."""
        zero = e * 0
        c0 = e.to(tl.uint32)
        c1 = (e >> 32).to(tl.uint32)
        c2 = (zero + step).to(tl.uint32)
        c3 = zero.to(tl.uint32)
        r0, r1, _r2, _r3 = tl.philox(seed, c0, c1, c2, c3)
        u0 = ((r0 >> 8).to(tl.int32).to(tl.float32) + 0.5) * 5.9604644775390625e-08  # (k + 1/2) / 2^24
        u1 = ((r1 >> 8).to(tl.int32).to(tl.float32) + 0.5) * 5.9604644775390625e-08
        return tl.sqrt(-2.0 * tl.log(u0)) * tl.cos(6.283185307179586 * u1)

    @triton.jit
    def _update(x, drift, e, eta, scale, seed, step, NOISE: tl.constexpr):
        """x + eta drift + scale xi(seed, step, e), in the dtype of x."""
        out = x + eta * drift
        if NOISE:
            out += scale * _normal(seed, step, e).to(x.dtype)
        return out

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
        pid_i = tl.program_id(0)
        pid_o = tl.program_id(1)
        ri, mi = _span(pid_i * BLOCK_I, BLOCK_I, N)
        ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
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
            if pid_o == 0:
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
        pid_i = tl.program_id(0)
        pid_o = tl.program_id(1)
        ri, mi = _span(pid_i * BLOCK_I, BLOCK_I, N)
        ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
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
        pid_j = tl.program_id(0)
        pid_o = tl.program_id(1)
        rj, mj = _span(pid_j * BLOCK_J, BLOCK_J, M)
        ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
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
            if pid_o == 0:
                tl.store(GW + rj, wsum * inv_s2, mask=mj)

    @triton.jit(do_not_specialize=["seed", "step"])
    def _flow_step_kernel(X, C, W, P, XOUT, SC,
                          N, M, D, s_x, s_c, s_out, NP, IP, seed, step,
                          FAMILY: tl.constexpr, RADIAL: tl.constexpr, NOISE: tl.constexpr,
                          ACC: tl.constexpr, PREC: tl.constexpr,
                          BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_O: tl.constexpr):
        """XOUT[i, o] = x_io + eta flow_io + scale xi(seed, step, i D + o),
        flow_i = sum_j w_j grad_1 k(x_i, c_j) (radial: 2 sum_j w_j phi'(z_ij) (x_i - c_j)); SC = [eta, scale]."""
        pid_i = tl.program_id(0)
        pid_o = tl.program_id(1)
        ri, mi = _span(pid_i * BLOCK_I, BLOCK_I, N)
        ro = pid_o * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
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
# Python side: checks, preparation, launchers
# ----------------------------------------------------------------------------
def _points(x: torch.Tensor, y: torch.Tensor, xname: str, yname: str) -> _Cfg:
    """The op-level checks of the CPU kernels (2-D, non-empty, floating, same dtype / device / dim); config."""
    for t, name in ((x, xname), (y, yname)):
        _require(t.dim() == 2 and t.size(0) > 0 and t.size(1) > 0,
                 f"{name} must be a non-empty 2-D tensor [points, dim], got shape {tuple(t.shape)}")
        _require(t.is_floating_point(), f"{name} must be a floating tensor, got {t.dtype}", TypeError)
    _require(x.dtype == y.dtype, f"{xname} and {yname} must have the same dtype, got {x.dtype} and {y.dtype}",
             TypeError)
    _require(x.device == y.device, f"{xname} and {yname} must be on the same device, got {x.device} and {y.device}")
    _require(x.size(1) == y.size(1),
             f"{xname} and {yname} must have the same dimension, got {x.size(1)} and {y.size(1)}")
    return _Cfg(x)


def _vector(w: Optional[torch.Tensor], m: int, like: torch.Tensor, acc) -> Optional[torch.Tensor]:
    """Weights [m] in the accumulation dtype, contiguous (None stays None)."""
    if w is None:
        return None
    _require(w.is_floating_point(), f"weights must be a floating tensor, got {w.dtype}", TypeError)
    _require(w.dim() == 1 and w.size(0) == m, f"weights must have shape [{m}], got {tuple(w.shape)}")
    _require(w.device == like.device, f"weights must be on the device of the centres, got {w.device}")
    return w.to(acc).contiguous()


def _shift(x: torch.Tensor, y: torch.Tensor, acc) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - mu, y - mu, mu) in the accumulation dtype, contiguous and fresh; mu = mean of y."""
    ya = y.to(acc)
    mu = ya.mean(0, keepdim=True)
    return (x.to(acc) - mu).contiguous(), (ya - mu).contiguous(), mu


def _scalars(rows, cfg: _Cfg, device) -> torch.Tensor:
    """Per-launch float scalars as a device tensor in the accumulation dtype (kernel float arguments are fp32),
    cached by value: a steady-state call makes no host-to-device copy."""
    flat = [v for row in rows for v in (row if isinstance(row, (list, tuple)) else [row])]
    shape = (len(rows), len(rows[0])) if rows and isinstance(rows[0], (list, tuple)) else (len(rows),)
    return device_constants(flat, cfg.acc_torch, device).view(shape)


def _split(u: float, root: float, cfg: _Cfg) -> Tuple[float, float]:
    """(a, b) with a b = u: b = 1 unless u overflows the accumulation dtype, then a = b = sqrt(u) (clamped)."""
    mx = float(torch.finfo(cfg.acc_torch).max)
    if u <= mx:
        return u, 1.0
    r = min(root, mx)
    return r, r


def _sigma_scalars(sigma: float, cfg: _Cfg) -> Tuple[float, float, float, float]:
    """(ea, eb, sa, sb): 1 / 2 sigma^2 = ea eb and 1 / sigma^2 = sa sb, folded in fp64: a tiny sigma
    whose coefficients overflow the dtype gives a logit of exactly 0 at z = 0 and a score of 0 where ybar = x."""
    s2 = sigma * sigma
    ea, eb = _split(0.5 / s2 if s2 > 0 else math.inf, math.sqrt(0.5) / sigma, cfg)
    sa, sb = _split(1.0 / s2 if s2 > 0 else math.inf, 1.0 / sigma, cfg)
    return ea, eb, sa, sb


def _grid(cfg: _Cfg, rows: int, rows_block: int, cols: int):
    bo = cfg.oblock(cols)
    return (triton.cdiv(rows, rows_block), triton.cdiv(cols, bo)), bo


def _launch_score(cfg: _Cfg, xs, ys, logw, sc, score=None, lse=None, xout=None, seed=0, step=0) -> None:
    """score / lse (``xout`` None) or the Langevin update of xs into ``xout``; sc = [ea, sa, eta, scale, eb, sb]."""
    N, D = xs.shape
    update = xout is not None
    out = xout if update else score
    grid, bo = _grid(cfg, N, cfg.bi, D)
    _score_kernel[grid](
        xs, ys, xs if logw is None else logw, out, xs if update else lse, out, sc,
        N, ys.size(0), D, xs.stride(0), ys.stride(0), out.stride(0), int(seed), int(step),
        HAS_W=logw is not None, UPDATE=update, NOISE=update,
        ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.bj, BLOCK_D=cfg.bd, BLOCK_O=bo,
        num_warps=cfg.num_warps,
    )


def _check_score(x, y, w, sigma):
    _checks.score_args(x, y, w, sigma)
    cfg = _points(x, y, "x", "y")
    sigma = _positive(sigma, "sigma")
    return cfg, _vector(w, y.size(0), y, cfg.acc_torch), sigma


# ----------------------------------------------------------------------------
# The six ops
# ----------------------------------------------------------------------------
@on_input_device
def smoothed_score(x: torch.Tensor, y: torch.Tensor, w: Optional[torch.Tensor], sigma: float
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(score [N, D] in x.dtype, lse [N] in the accumulation dtype)."""
    cfg, wa, sigma = _check_score(x, y, w, sigma)
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
    _checks.score_backward_args(grad, x, y, w, sigma, score, lse, output_mask)
    cfg, wa, sigma = _check_score(x, y, w, sigma)
    N, D = x.shape
    M = y.size(0)
    for t, name in ((grad, "grad"), (score, "score")):
        _require(tuple(t.shape) == (N, D), f"{name} must have shape {(N, D)}, got {tuple(t.shape)}")
    _require(lse.dim() == 1 and lse.size(0) == N, f"lse must have shape [{N}], got {tuple(lse.shape)}")
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
        meta = dict(HAS_W=wa is not None, ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_J=cfg.bj,
                    BLOCK_D=cfg.bd, num_warps=cfg.num_warps)
        if need_x:
            grid, bo = _grid(cfg, N, cfg.bi, D)
            _score_bwd_x_kernel[grid](*args, gx, *sizes, BLOCK_O=bo, **meta)
        if need_y or need_w:
            grid, bo = _grid(cfg, M, cfg.bj, D)
            grid = grid if need_y else (grid[0], 1)
            _score_bwd_y_kernel[grid](*args, gy, gw if need_w else gy, *sizes,
                                      NEED_Y=need_y, NEED_W=need_w, BLOCK_O=bo, **meta)
    return gx.to(x.dtype), gy.to(x.dtype), gw.to(x.dtype if w is None else w.dtype)


def _check_step(x, drift, step_size, temperature):
    _checks.step_args(x, drift, step_size, temperature)
    _require(isinstance(x, torch.Tensor) and x.is_floating_point(), "x must be a floating tensor", TypeError)
    _require(drift.shape == x.shape, f"drift must have the shape of x {tuple(x.shape)}, got {tuple(drift.shape)}")
    _require(drift.dtype == x.dtype, f"drift must have the dtype of x ({x.dtype}), got {drift.dtype}", TypeError)
    _require(drift.device == x.device, f"drift must be on the device of x ({x.device}), got {drift.device}")
    eta = _positive(step_size, "step_size")
    return _Cfg(x), eta, _positive(temperature, "temperature", allow_zero=True)


def _launch_langevin(cfg: _Cfg, x, drift, out, eta: float, tau: float, seed: int) -> None:
    """out = x + eta drift + sqrt(2 eta tau) xi(seed, 0, e) over contiguous tensors (out may be x)."""
    n = x.numel()
    if n == 0:
        return
    block = 4096 if _interpreting() else 1024
    scale = math.sqrt(2.0 * eta * tau)
    _langevin_kernel[(triton.cdiv(n, block),)](x, drift, out, _scalars([eta, scale], cfg, x.device), n,
                                               int(seed), NOISE=scale != 0.0, BLOCK=block, num_warps=4)


@on_input_device
def langevin_step(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float, seed: int
                  ) -> torch.Tensor:
    """x + eta drift + sqrt(2 eta tau) xi (a new contiguous tensor, any shape)."""
    cfg, eta, tau = _check_step(x, drift, step_size, temperature)
    xc = x.contiguous()
    out = torch.empty_like(xc)
    _launch_langevin(cfg, xc, drift.contiguous(), out, eta, tau, seed)
    return out


@on_input_device
def langevin_step_(x: torch.Tensor, drift: torch.Tensor, step_size: float, temperature: float, seed: int) -> None:
    """In place; a non-contiguous x goes through a contiguous copy."""
    cfg, eta, tau = _check_step(x, drift, step_size, temperature)
    if x.is_contiguous():
        _launch_langevin(cfg, x, drift.contiguous(), x, eta, tau, seed)
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
    _checks.kernel_langevin_args(x, centers, w, family, params, step_size, steps, temperature)
    if int(steps) == 0:
        return x.clone(memory_format=torch.contiguous_format)  # exactly x (no round trip through the shift)
    cfg = _points(x, centers, "x", "centers")
    wa = _vector(w, centers.size(0), centers, cfg.acc_torch)
    eta = _positive(step_size, "step_size")
    tau = _positive(temperature, "temperature", allow_zero=True)
    steps = int(steps)
    _require(steps >= 0, f"steps must be non-negative, got {steps}")
    fam = int(family)
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
            BLOCK_I=cfg.bi, BLOCK_J=cfg.bj, BLOCK_D=cfg.bd, BLOCK_O=bo, num_warps=cfg.num_warps,
        )

    out = _chain(xs, steps, launch)
    return (out if mu is None else out + mu).to(x.dtype)


@on_input_device
def kde_langevin(x: torch.Tensor, data: torch.Tensor, sigmas: Sequence[float], steps_per_sigma: int, eps: float,
                 seed: int) -> torch.Tensor:
    """Annealed Langevin on the Gaussian-smoothed data, score and update fused (one launch per step)."""
    _checks.kde_langevin_args(x, data, sigmas, steps_per_sigma, eps)
    if int(steps_per_sigma) == 0:
        return x.clone(memory_format=torch.contiguous_format)  # exactly x
    cfg = _points(x, data, "x", "data")
    sig = [_positive(s, "sigmas") for s in sigmas]
    _require(len(sig) > 0, "sigmas must not be empty")
    steps_per_sigma = int(steps_per_sigma)
    _require(steps_per_sigma >= 0, f"steps_per_sigma must be non-negative, got {steps_per_sigma}")
    eps = _positive(eps, "eps")
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

# ----------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------
