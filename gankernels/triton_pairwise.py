"""CUDA kernels of the four pairwise primitives, written in Triton.

Math (docs/ENGINE.md is the contract): a kernel is ``k(a, b) = phi(z)`` with
``z = ||a - b||^2`` (radial families 0-5) or ``z = a . b`` (dot-product
families 6-7).  The ops are

* ``ksum(x, y, w)``            ``out_ic = sum_j k(x_i, y_j) w_jc``
* ``ksum_and_square(x, w)``   the same over x (self mode) and ``sum_j k(x_i, x_j)^2 w_jc`` from the same tiles
* ``ksum_backward(g, ...)``    gradients of ``sum_ic g_ic out_ic``
* ``kform(x, y, g, w)``        ``sum_ic g_ic out_ic`` with its x and y gradients (ksum, then ksum_backward)
* ``kflow(x, y, a, b)``        ``out_i = sum_j (a_i . b_j) grad_1 k(x_i, y_j)``
* ``kflow_backward(h, ...)``   gradients of ``sum_i h_i . out_i`` (Hessian-vector products)

What is fused: for one tile of ``BLOCK_I`` query rows and ``BLOCK_J`` rows of
the other set, a program computes ``z`` (radial: the clamped expansion
``max(|a|^2 + |b|^2 - 2 a.b, 0)`` with ``a.b`` from ``tl.dot`` over ``BLOCK_D``
chunks of D and a NaN-preserving clamp; dot kernels: ``a.b``), the pair
weights ``p_ij = a_i . b_j`` (``tl.dot`` over C), ``phi / phi' / phi''`` of the
family, and the coefficient tile that is contracted with the other set's
points or weights by a second ``tl.dot``.

Memory: nothing N x M is ever allocated.  Each program owns ``BLOCK_I`` output
rows and one block of output columns, loops over ``BLOCK_J`` tiles of the other
set, and accumulates in registers (fp32 for fp16 / bf16 / fp32 inputs, fp64 for
fp64 inputs).  Outputs are written once, in the accumulation dtype, and cast to
the input dtype in Python; extra memory is O((N + M) (D + C)).

Kernels (two ``@triton.jit`` kernels specialised by constexpr flags, plus the
jitted helpers ``_tile_dots`` (the one loop over D of a tile's dot products),
``_tile_z`` (z of a tile), ``_tile_p`` (pair weights) and ``_phi``, the one
place that evaluates ``(phi, phi', phi'')`` of a family for a tile; the family
code is a constexpr, mixture constants come in a small device tensor with a
runtime component count):

* ``_pair_kernel``  ``FLOW=False``: ``out = K @ V`` (ksum, gw);
                    ``FLOW=True``:  ``out_i = sum_j p_ij grad_1 k(r_i, q_j)`` (kflow, gx, gy).
* ``_hvp_kernel``   the Hessian-vector terms of kflow_backward; ``SIDE=0`` owns
                    rows of x (gx, ga; ``h`` is attached to the rows),
                    ``SIDE=1`` owns rows of y (gy, gb; ``h`` is attached to the
                    looped-over set).

Determinism: no atomics.  Column-side results (gy, gw, gb) come from a second
launch with the roles of x and y swapped (``grad_2 k(x_i, y_j) =
grad_1 k(y_j, x_i)``), so every output row is owned by exactly one program.
Self mode (``y is None``) runs over the full N x N matrix with ``y = x``; the
two roles of x are fused into one launch for ksum_backward (pair weights
``g_i.w_j + w_i.g_j``) and accumulated by a second, stream-ordered launch for
kflow_backward.  In self mode the diagonal ``z_ii`` is set to exactly 0 (the
expansion leaves rounding noise there, which matters at the kinks of the
Laplacian / Energy / Polyharmonic kernels).

Limits:

* The distance part ``z`` is recomputed once per block of output columns, so
  for D (flows) or C (sums) larger than the output block (64 on GPU, 32 for
  fp64) the pairwise work is repeated ``ceil(D / block)`` times.
* Mixtures have no size limit (a runtime loop over components).
* Polynomial degrees are integers up to 2^53, passed exactly (``IP``) and
  evaluated by repeated squaring, O(log n) products (negative bases allowed);
  other powers use ``exp(e log q)`` with ``q > 0``.
* Extreme but valid parameters (tiny / huge bandwidths and scales): constants
  are derived once, by the C++ engine's ``Family`` (fp64, rounded to the
  accumulation dtype; ``_kernel_params``); a coefficient that
  overflows it is applied as ``a (b z)``, ``phi'(0)`` / ``phi''(0)`` that would
  overflow are 0, and RationalQuadratic / InverseMultiquadric components out of
  range take ``_pow_steep`` (a runtime branch per component; see
  ``_kernel_params`` and csrc/families.h).  Flows keep the factored form
  ``2 (x_i sum_j s_ij - sum_j s_ij y_j)``, so a mixture of a steep bandwidth
  whose ``phi'(0)`` still fits (fp32: sigma ~ 1e-19 .. 1e-7) with ordinary ones
  loses the ordinary ones' flow to cancellation (the CPU engine sums such flows
  pair by pair).
* Precision (README "Precision on CUDA"): the fp32 coefficient-tile contractions
  use TF32 tensor cores only when the user allows TF32 matmuls
  (``torch.backends.cuda.matmul.allow_tf32`` or ``set_float32_matmul_precision``
  "high"/"medium"), IEEE fp32 otherwise; the dots of squared distances are IEEE
  fp32, or 3xTF32 when TF32 is allowed -- never plain TF32.  fp16 / bf16 inputs
  use native half-precision tensor-core dots with fp32 accumulation.
* Radial kernels run on x and y shifted by their common mean (where the offset
  dominates the spread), and self pairs have exactly zero flow; but unlike the
  CPU engine, near-duplicate pairs of distinct points are not recomputed from
  exact differences, so their z and flow terms carry the expansion's rounding
  (absolute error ~ eps (|a|^2 + |b|^2) of the shifted points).
* CPU tensors are supported only under ``TRITON_INTERPRET=1`` (tests).
"""
from __future__ import annotations

import functools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from . import _C  # noqa: F401  (the C++ library: family_constants)
from . import _checks
from .triton_utils import (
    HAS_TRITON, LaunchConfig, as_rows, device_constants, on_input_device, row_stride, tl, triton,
)

__all__ = ["ksum", "ksum_and_square", "ksum_backward", "kform", "kflow", "kflow_backward", "HAS_TRITON"]

# the family codes are defined once, in kernels.py; the kernels compare FAMILY with these constexprs
from .kernels import (  # noqa: E402
    ENERGY, GAUSSIAN, INVERSE_MULTIQUADRIC, LAPLACIAN, LINEAR, POLYHARMONIC, POLYNOMIAL, RATIONAL_QUADRATIC,
)

_DOT_FAMILIES = (POLYNOMIAL, LINEAR)
if HAS_TRITON:
    _GAUSSIAN, _RATIONAL_QUADRATIC = tl.constexpr(GAUSSIAN), tl.constexpr(RATIONAL_QUADRATIC)
    _INVERSE_MULTIQUADRIC, _LAPLACIAN = tl.constexpr(INVERSE_MULTIQUADRIC), tl.constexpr(LAPLACIAN)
    _ENERGY, _POLYHARMONIC, _POLYNOMIAL = tl.constexpr(ENERGY), tl.constexpr(POLYHARMONIC), tl.constexpr(POLYNOMIAL)


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------
if HAS_TRITON:

    @triton.jit
    def _pow_steep(z, S, f0, f1, f2, NEED0: tl.constexpr, NEED1: tl.constexpr, NEED2: tl.constexpr):
        """Adds C (1 + z/s)^beta and its derivatives for a steep RQ / IMQ component (see ``_kernel_params``).

        S = [beta, beta - 1, i1, i2, s, C, ks_hi, ks_lo, kb_hi, kb_lo, big, phi'(0), phi''(0)] with
        1/s = i1 i2: while q = z/s <= big, C exp(beta (log1p(q) + ks)); beyond, exp(beta (log(z + s) + kb)).
        """
        be = tl.load(S)
        q = (z * tl.load(S + 2)) * tl.load(S + 3)
        s = tl.load(S + 4)
        small = q <= tl.load(S + 10)  # NaN: False, then log(NaN)
        u = 1.0 + q
        lu = tl.log(tl.where(small, u, z + s))
        lg = tl.where(small, tl.where(u == 1.0, q, lu * q / (u - 1.0)), lu)  # log1p(q) from one log
        kh = tl.where(small, tl.load(S + 6), tl.load(S + 8))
        kl = tl.where(small, tl.load(S + 7), tl.load(S + 9))
        val = tl.exp(be * ((lg + kh) + kl)) * tl.where(small, tl.load(S + 5), 1.0)
        den = s + z
        r1 = val / den  # a division: no inf * 0 where s + z under- or overflows
        zero = z == 0.0
        if NEED0:
            f0 += val
        if NEED1:
            f1 += tl.where(zero, tl.load(S + 11), be * r1)
        if NEED2:
            f2 += tl.where(zero, tl.load(S + 12), be * (tl.load(S + 1) * (r1 / den)))
        return f0, f1, f2

    @triton.jit
    def _phi(z, P, NP, IP, FAMILY: tl.constexpr, NEED0: tl.constexpr, NEED1: tl.constexpr,
             NEED2: tl.constexpr):
        """(phi, phi', phi'') of the family on a tile of z (unneeded ones are 0).

        P holds the family's derived constants (see ``_kernel_params``, folded in fp64 on the host), NP the
        number of mixture components (Polynomial: the bit length of n - 2), IP an integer parameter
        (polynomial degree n, exact).
        """
        f0 = tl.zeros_like(z)
        f1 = tl.zeros_like(z)
        f2 = tl.zeros_like(z)
        if FAMILY == _GAUSSIAN:  # Gaussian: P = [a, b, phi'(0), phi''(0)]_k, a b = 1 / (2 s_k^2) (b = 1 unless it overflows)
            zero = z == 0.0
            for k in range(NP):
                a = tl.load(P + 4 * k)
                b = tl.load(P + 4 * k + 1)
                e = tl.exp(-(a * (b * z)))  # z = 0: exactly 1, also where a b overflows
                if NEED0:
                    f0 += e
                if NEED1:
                    f1 += tl.where(zero, tl.load(P + 4 * k + 2), -(a * (b * e)))
                if NEED2:
                    f2 += tl.where(zero, tl.load(P + 4 * k + 3), a * (b * (a * (b * e))))
        elif FAMILY == _RATIONAL_QUADRATIC:  # RationalQuadratic: P = [steep, alpha, 1/(2 alpha l^2), 1/(2 l^2), (alpha+1)/(4 alpha l^4), S]_k
            for k in range(NP):
                Q = P + 18 * k
                if tl.load(Q) == 0.0:
                    al = tl.load(Q + 1)
                    u = tl.load(Q + 2)
                    c1 = tl.load(Q + 3)
                    c2 = tl.load(Q + 4)
                    b = 1.0 + u * z
                    t = tl.exp(-al * tl.log(b))
                    ib = 1.0 / b
                    if NEED0:
                        f0 += t
                    if NEED1:
                        f1 -= c1 * t * ib
                    if NEED2:
                        f2 += c2 * t * ib * ib
                else:
                    f0, f1, f2 = _pow_steep(z, Q + 5, f0, f1, f2, NEED0, NEED1, NEED2)
        elif FAMILY == _INVERSE_MULTIQUADRIC:  # InverseMultiquadric: P = [steep, beta, beta - 1, c^2, 0, S]_k
            for k in range(NP):
                Q = P + 18 * k
                if tl.load(Q) == 0.0:
                    be = tl.load(Q + 1)
                    bm = tl.load(Q + 2)
                    cc = tl.load(Q + 3)
                    q = cc + z
                    t = tl.exp(be * tl.log(q))
                    iq = 1.0 / q
                    if NEED0:
                        f0 += t
                    if NEED1:
                        f1 += be * t * iq
                    if NEED2:
                        f2 += be * (bm * (t * iq * iq))
                else:
                    f0, f1, f2 = _pow_steep(z, Q + 5, f0, f1, f2, NEED0, NEED1, NEED2)
        elif FAMILY == _LAPLACIAN:  # Laplacian: P = [A, B]_k, A B = 1 / s_k (B = 1 unless it overflows)
            r = tl.sqrt(z)
            kink = z == 0.0
            ir = tl.where(kink, 0.0, 1.0 / tl.where(kink, 1.0, r))
            for k in range(NP):
                va = tl.load(P + 2 * k)
                vb = tl.load(P + 2 * k + 1)
                e = tl.exp(-(va * (vb * r)))
                t1 = va * (vb * (e * ir))  # e / (s r), ordered after e: 0 far out, never inf * 0
                if NEED0:
                    f0 += e
                if NEED1:
                    f1 -= 0.5 * t1
                if NEED2:
                    f2 += 0.25 * ir * (va * (vb * t1) + t1 * ir)
            f1 = tl.where(kink, 0.0, f1)
            f2 = tl.where(kink, 0.0, f2)
        elif FAMILY == _ENERGY:  # Energy: -r
            r = tl.sqrt(z)
            kink = z == 0.0
            ir = 1.0 / tl.where(kink, 1.0, r)
            if NEED0:
                f0 = -r
            if NEED1:
                f1 = tl.where(kink, 0.0, -0.5 * ir)
            if NEED2:
                f2 = tl.where(kink, 0.0, 0.25 * ir * ir * ir)
        elif FAMILY == _POLYHARMONIC:  # Polyharmonic: P = [h = k/2, eps^2, even, h (h - 1)]
            h = tl.load(P)
            e2 = tl.load(P + 1)
            ev = tl.load(P + 2)
            hh = tl.load(P + 3)
            q = z + e2
            kink = q == 0.0
            qs = tl.where(kink, 1.0, q)
            lq = tl.log(qs)
            iq = 1.0 / qs
            qh = tl.exp(h * lq)
            lg = ev * (0.5 * lq) + (1.0 - ev)  # log(q)/2 for even k, 1 for odd k
            if NEED0:
                f0 = tl.where(kink, 0.0, qh * lg)
            if NEED1:
                f1 = tl.where(kink, 0.0, qh * iq * (h * lg + 0.5 * ev))
            if NEED2:
                f2 = tl.where(kink, 0.0, qh * iq * iq * (hh * lg + ev * (h - 0.5)))
        elif FAMILY == _POLYNOMIAL:  # Polynomial: P = [gamma, coef0, n gamma, (n - 1) gamma], IP = n, NP = bit length of n - 2
            ga = tl.load(P)
            c0 = tl.load(P + 1)
            n1 = tl.load(P + 2)
            m1 = tl.load(P + 3)
            base = ga * z + c0
            pm2 = tl.zeros_like(z) + 1.0  # base^(n-2) by repeated squaring (1 when n < 3)
            sq = base
            for t in range(NP):
                pm2 = tl.where(((IP - 2) >> t) & 1 != 0, pm2 * sq, pm2)
                sq = sq * sq
            pm1 = tl.zeros_like(z) + 1.0  # base^(n-1)
            if IP >= 2:
                pm1 = pm2 * base
            if NEED0:
                f0 = pm1 * base
            if NEED1:
                f1 = n1 * pm1
            if NEED2:
                f2 = n1 * (m1 * pm2)  # n (n - 1) gamma^2 base^(n-2); 0 for n = 1 (m1 = 0)
        else:  # Linear
            if NEED0:
                f0 = z
            if NEED1:
                f1 = tl.zeros_like(z) + 1.0
        return f0, f1, f2

    @triton.jit
    def _span(start, BLOCK: tl.constexpr, N):
        """Row indices start .. start + BLOCK - 1 (int64: offsets of large inputs) and their in-range mask."""
        idx = (start + tl.arange(0, BLOCK)).to(tl.int64)
        return idx, idx < N

    @triton.jit
    def _program_block(N, NO, BLOCK_I: tl.constexpr, BLOCK_O: tl.constexpr):
        """The rows (grid axis 0, blocks of BLOCK_I) and output columns (axis 1, blocks of BLOCK_O) this
        program owns, with their in-range masks."""
        ri, mi = _span(tl.program_id(0) * BLOCK_I, BLOCK_I, N)
        ro = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
        return ri, mi, ro, ro < NO

    @triton.jit
    def _z_from_dots(xy, rn, qn, ri, rj, SELF: tl.constexpr):
        """Radial z = max(|a|^2 + |b|^2 - 2 a.b, 0) (NaN-preserving clamp); self pairs exactly 0 (NaN kept)."""
        z = rn[:, None] + qn[None, :] - 2.0 * xy
        z = tl.where(z < 0.0, 0.0, z)
        if SELF:
            z = tl.where(ri[:, None] == rj[None, :], z * 0.0, z)
        return z

    @triton.jit
    def _distance_dot(a, b, PREC: tl.constexpr):
        """a @ b for squared distances: never plain TF32 (its ~1e-3 relative error on |a|^2 + |b|^2 would
        swamp small distances); where the user allows TF32, 3xTF32 keeps about fp32 accuracy on tensor cores."""
        if PREC == "tf32":
            return tl.dot(a, b, input_precision="tf32x3")
        else:
            return tl.dot(a, b, input_precision=PREC)

    @triton.jit
    def _tile_dots(R, Q, H, ri, rj, mi, mj, D, s_r, s_q, s_h, WITH_H: tl.constexpr, SIDE: tl.constexpr,
                   RADIAL: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_I: tl.constexpr,
                   BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
        """The dot products over D of the tile (rows ri of R, rows rj of Q), as (xy, rn, qn, hd, hs_r, hs_q):
        xy = R_i . Q_j and, RADIAL, the squared norms rn = |R_i|^2, qn = |Q_j|^2.

        WITH_H: h are the rows of H attached to R (SIDE=0, rows ri) or to Q (SIDE=1, rows rj); hd = h . (the
        other point) and, RADIAL, h . (its own point): hs_r (SIDE=0) or hs_q (SIDE=1).  Terms not asked
        for are 0 (and H is never read without WITH_H).
        """
        xy = tl.zeros([BLOCK_I, BLOCK_J], ACC)
        hd = tl.zeros([BLOCK_I, BLOCK_J], ACC)
        rn = tl.zeros([BLOCK_I], ACC)
        qn = tl.zeros([BLOCK_J], ACC)
        hs_r = tl.zeros([BLOCK_I], ACC)
        hs_q = tl.zeros([BLOCK_J], ACC)
        for d0 in range(0, D, BLOCK_D):
            rd = d0 + tl.arange(0, BLOCK_D)
            md = rd < D
            a = tl.load(R + ri[:, None] * s_r + rd[None, :], mask=mi[:, None] & md[None, :], other=0.0)
            b = tl.load(Q + rj[None, :] * s_q + rd[:, None], mask=md[:, None] & mj[None, :], other=0.0)
            xy += _distance_dot(a, b, PREC)
            if WITH_H:
                if SIDE == 0:
                    hr = tl.load(H + ri[:, None] * s_h + rd[None, :], mask=mi[:, None] & md[None, :], other=0.0)
                    hd += _distance_dot(hr, b, PREC)
                    if RADIAL:
                        hs_r += tl.sum(hr.to(ACC) * a.to(ACC), 1)
                else:
                    hq = tl.load(H + rj[None, :] * s_h + rd[:, None], mask=md[:, None] & mj[None, :], other=0.0)
                    hd += _distance_dot(a, hq, PREC)
                    if RADIAL:
                        hs_q += tl.sum(hq.to(ACC) * b.to(ACC), 0)
            if RADIAL:
                af = a.to(ACC)
                bf = b.to(ACC)
                rn += tl.sum(af * af, 1)
                qn += tl.sum(bf * bf, 0)
        return xy, rn, qn, hd, hs_r, hs_q

    @triton.jit
    def _tile_z(R, Q, ri, rj, mi, mj, D, s_r, s_q, RADIAL: tl.constexpr, SELF: tl.constexpr,
                ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
                BLOCK_D: tl.constexpr):
        """z for the tile (rows ri of R, rows rj of Q)."""
        xy, rn, qn, _hd, _hs_r, _hs_q = _tile_dots(R, Q, R, ri, rj, mi, mj, D, s_r, s_q, s_r, False, 0, RADIAL,
                                                   ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
        if RADIAL:
            z = _z_from_dots(xy, rn, qn, ri, rj, SELF)
        else:
            z = xy
        return z

    @triton.jit
    def _tile_z_hz(R, Q, H, ri, rj, mi, mj, D, s_r, s_q, s_h, SIDE: tl.constexpr, RADIAL: tl.constexpr,
                   SELF: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr, BLOCK_I: tl.constexpr,
                   BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr):
        """(z, hz) for the tile, hz = h . (gradient of z along the point h is attached to): with h on the rows
        of R (SIDE=0) or of Q (SIDE=1), radial 2 h . (own point - other point), dot families h . (other point);
        self pairs exactly 0 (NaN kept)."""
        xy, rn, qn, hd, hs_r, hs_q = _tile_dots(R, Q, H, ri, rj, mi, mj, D, s_r, s_q, s_h, True, SIDE, RADIAL,
                                                ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
        if RADIAL:
            z = _z_from_dots(xy, rn, qn, ri, rj, SELF)
            if SIDE == 0:
                hz = 2.0 * (hs_r[:, None] - hd)
            else:
                hz = 2.0 * (hs_q[None, :] - hd)
            if SELF:  # self pairs: h . (x_i - x_i) = 0 exactly (NaN kept)
                hz = tl.where(ri[:, None] == rj[None, :], hz * 0.0, hz)
        else:
            z = xy
            hz = hd
        return z, hz

    @triton.jit
    def _tile_p(RC, QC, ri, rj, mi, mj, C, s_rc, s_qc, ACC: tl.constexpr, PREC: tl.constexpr,
                BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_C: tl.constexpr):
        """p_ij = RC_i . QC_j for the tile."""
        p = tl.zeros([BLOCK_I, BLOCK_J], ACC)
        for c0 in range(0, C, BLOCK_C):
            rc = c0 + tl.arange(0, BLOCK_C)
            mc = rc < C
            a = tl.load(RC + ri[:, None] * s_rc + rc[None, :], mask=mi[:, None] & mc[None, :], other=0.0)
            b = tl.load(QC + rj[None, :] * s_qc + rc[:, None], mask=mc[:, None] & mj[None, :], other=0.0)
            p += tl.dot(a.to(ACC), b.to(ACC), input_precision=PREC)
        return p

    @triton.jit
    def _pair_kernel(R, Q, RC, QC, OUT, OUT2, P,
                     NR, NQ, D, C, NO,
                     s_r, s_q, s_rc, s_qc, s_out,
                     NP, IP,
                     FAMILY: tl.constexpr, RADIAL: tl.constexpr, FLOW: tl.constexpr, SELF: tl.constexpr,
                     SQUARE: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr,
                     BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr):
        """FLOW=False: OUT[r, o] = sum_q k(R_r, Q_q) QC[q, o]            (o < NO = C)
                    SQUARE: also OUT2[r, o] = sum_q k(R_r, Q_q)^2 QC[q, o] (same tiles)
        FLOW=True:  OUT[r, o] = sum_q (RC_r . QC_q) grad_1 k(R_r, Q_q)_o  (o < NO = D)"""
        ri, mi, ro, mo = _program_block(NR, NO, BLOCK_I, BLOCK_O)
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        acc2 = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        rsum = tl.zeros([BLOCK_I], ACC)
        for j0 in range(0, NQ, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, NQ)
            z = _tile_z(R, Q, ri, rj, mi, mj, D, s_r, s_q, RADIAL, SELF, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_D)
            if FLOW:
                p = _tile_p(RC, QC, ri, rj, mi, mj, C, s_rc, s_qc, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_C)
                _f0, f1, _f2 = _phi(z, P, NP, IP, FAMILY, False, True, False)
                s = tl.where(mj[None, :], p * f1, 0.0)
                if RADIAL and SELF:  # a self pair's flow 2 phi'(0) (x_i - x_i) is exactly 0
                    s = tl.where(ri[:, None] == rj[None, :], 0.0, s)
                v = tl.load(Q + rj[:, None] * s_q + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
                if RADIAL:
                    rsum += tl.sum(s, 1)
            else:
                f0, _f1, _f2 = _phi(z, P, NP, IP, FAMILY, True, False, False)
                s = tl.where(mj[None, :], f0, 0.0)
                v = tl.load(QC + rj[:, None] * s_qc + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
            acc += tl.dot(s, v.to(ACC), input_precision=PREC)
            if SQUARE:
                acc2 += tl.dot(s * s, v.to(ACC), input_precision=PREC)
        if FLOW:
            if RADIAL:  # sum_j 2 s_ij (r_i - q_j)
                r = tl.load(R + ri[:, None] * s_r + ro[None, :], mask=mi[:, None] & mo[None, :], other=0.0)
                acc = 2.0 * (r.to(ACC) * rsum[:, None] - acc)
        tl.store(OUT + ri[:, None] * s_out + ro[None, :], acc, mask=mi[:, None] & mo[None, :])
        if SQUARE:
            tl.store(OUT2 + ri[:, None] * s_out + ro[None, :], acc2, mask=mi[:, None] & mo[None, :])

    @triton.jit
    def _hvp_flow_terms(Q, H, rj, mj, rod, mod, p, f1, f2, hz, acc_d, acc_d2, rs_c, rs_d, s_q, s_h,
                        RADIAL: tl.constexpr, SIDE: tl.constexpr, ACC: tl.constexpr, PREC: tl.constexpr):
        """Adds one tile's share of the flow-side gradient (gx / gy) to its running parts: with
        c_ij = p_ij phi''_ij hz_ij and d_ij = p_ij phi'_ij, acc_d += sum_j c_ij q_j, rs_c += sum_j c_ij
        (radial), and d's part: rs_d += sum_j d_ij (SIDE=0, radial) or acc_d2 += sum_j d_ij h_j (SIDE=1)."""
        c = tl.where(mj[None, :], p * f2 * hz, 0.0)
        d = tl.where(mj[None, :], p * f1, 0.0)
        vq = tl.load(Q + rj[:, None] * s_q + rod[None, :], mask=mj[:, None] & mod[None, :], other=0.0)
        acc_d += tl.dot(c, vq.to(ACC), input_precision=PREC)
        if RADIAL:
            rs_c += tl.sum(c, 1)
        if SIDE == 0:
            if RADIAL:
                rs_d += tl.sum(d, 1)
        else:
            vh = tl.load(H + rj[:, None] * s_h + rod[None, :], mask=mj[:, None] & mod[None, :], other=0.0)
            acc_d2 += tl.dot(d, vh.to(ACC), input_precision=PREC)
        return acc_d, acc_d2, rs_c, rs_d

    @triton.jit
    def _hvp_store_d(R, H, OUTD, ri, mi, rod, mod, acc_d, acc_d2, rs_c, rs_d, s_r, s_h, s_od,
                     RADIAL: tl.constexpr, SIDE: tl.constexpr, ACCUM_D: tl.constexpr, ACC: tl.constexpr):
        """Writes the flow-side gradient of the rows ri from the parts of ``_hvp_flow_terms``: radial
        2 (r_i rs_c - acc_d) + 2 h_i rs_d (SIDE=0) or - 2 acc_d2 (SIDE=1); dot families acc_d (+ acc_d2,
        SIDE=1).  ACCUM_D adds OUTD's current content."""
        m2 = mi[:, None] & mod[None, :]
        if RADIAL:
            r = tl.load(R + ri[:, None] * s_r + rod[None, :], mask=m2, other=0.0).to(ACC)
            out = 2.0 * (r * rs_c[:, None] - acc_d)
            if SIDE == 0:
                hr = tl.load(H + ri[:, None] * s_h + rod[None, :], mask=m2, other=0.0).to(ACC)
                out += 2.0 * hr * rs_d[:, None]
            else:
                out -= 2.0 * acc_d2
        else:
            out = acc_d
            if SIDE == 1:
                out += acc_d2
        if ACCUM_D:
            out += tl.load(OUTD + ri[:, None] * s_od + rod[None, :], mask=m2, other=0.0)
        tl.store(OUTD + ri[:, None] * s_od + rod[None, :], out, mask=m2)

    @triton.jit
    def _hvp_kernel(R, Q, H, RC, QC, OUTD, OUTC, P,
                    NR, NQ, D, C,
                    s_r, s_q, s_h, s_rc, s_qc, s_od, s_oc,
                    NP, IP,
                    FAMILY: tl.constexpr, RADIAL: tl.constexpr, SIDE: tl.constexpr, SELF: tl.constexpr,
                    NEED_D: tl.constexpr, NEED_C: tl.constexpr, ACCUM_D: tl.constexpr,
                    ACC: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                    BLOCK_C: tl.constexpr, BLOCK_OD: tl.constexpr, BLOCK_OC: tl.constexpr):
        """Hessian-vector terms of kflow_backward (docs/ENGINE.md).

        SIDE=0: rows R = x (with h = H rows), RC = a, Q = y, QC = b -> OUTD = gx, OUTC = ga.
        SIDE=1: rows R = y, RC = b, Q = x (with h = H rows of the looped set), QC = a
                -> OUTD = gy, OUTC = gb.
        ACCUM_D adds OUTD's current content (self mode: second role of x).
        """
        ri, mi, rod, mod = _program_block(NR, D, BLOCK_I, BLOCK_OD)
        roc = tl.program_id(1) * BLOCK_OC + tl.arange(0, BLOCK_OC)
        moc = roc < C
        acc_d = tl.zeros([BLOCK_I, BLOCK_OD], ACC)   # sum_j c_ij q_j
        acc_d2 = tl.zeros([BLOCK_I, BLOCK_OD], ACC)  # SIDE=1: sum_j d_ij h_j
        acc_c = tl.zeros([BLOCK_I, BLOCK_OC], ACC)   # sum_j e_ij QC_j
        rs_c = tl.zeros([BLOCK_I], ACC)
        rs_d = tl.zeros([BLOCK_I], ACC)
        for j0 in range(0, NQ, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, NQ)
            z, hz = _tile_z_hz(R, Q, H, ri, rj, mi, mj, D, s_r, s_q, s_h, SIDE, RADIAL, SELF, ACC, PREC,
                               BLOCK_I, BLOCK_J, BLOCK_D)
            p = _tile_p(RC, QC, ri, rj, mi, mj, C, s_rc, s_qc, ACC, PREC, BLOCK_I, BLOCK_J, BLOCK_C)
            _f0, f1, f2 = _phi(z, P, NP, IP, FAMILY, False, True, NEED_D)
            if NEED_C:
                e = tl.where(mj[None, :], f1 * hz, 0.0)
                vc = tl.load(QC + rj[:, None] * s_qc + roc[None, :], mask=mj[:, None] & moc[None, :], other=0.0)
                acc_c += tl.dot(e, vc.to(ACC), input_precision=PREC)
            if NEED_D:
                acc_d, acc_d2, rs_c, rs_d = _hvp_flow_terms(Q, H, rj, mj, rod, mod, p, f1, f2, hz, acc_d, acc_d2,
                                                            rs_c, rs_d, s_q, s_h, RADIAL, SIDE, ACC, PREC)
        if NEED_C:
            tl.store(OUTC + ri[:, None] * s_oc + roc[None, :], acc_c, mask=mi[:, None] & moc[None, :])
        if NEED_D:
            _hvp_store_d(R, H, OUTD, ri, mi, rod, mod, acc_d, acc_d2, rs_c, rs_d, s_r, s_h, s_od, RADIAL, SIDE,
                         ACCUM_D, ACC)


# ----------------------------------------------------------------------------
# Python side: parameters, configuration, launchers
# ----------------------------------------------------------------------------
def _kernel_params(family: int, params: Sequence[float], dtype=torch.float32) -> Tuple[List[float], int, int]:
    """(derived constants for ``_phi``, mixture count NP, integer parameter IP) for accumulation ``dtype``.

    The constants are derived once, by the C++ engine's ``Family`` (csrc/families.h, ``flat_constants``):
    folded in fp64, rounded to the dtype, with the same handling of extreme parameters on both engines.
    """
    return _flat_constants(int(family), tuple(float(v) for v in params), dtype)


@functools.lru_cache(maxsize=256)
def _flat_constants(family: int, params: Tuple[float, ...], dtype) -> Tuple[List[float], int, int]:
    flat = torch.ops.gankernels.family_constants(family, list(params), dtype)
    return flat[2:], int(flat[0]), int(flat[1])


def _param_tensor(family, params, dtype, device):
    """(derived constants as a cached device tensor, mixture count NP, integer parameter IP)."""
    vals, n_mix, ip = _kernel_params(family, params, dtype)
    return device_constants(vals, dtype, device), n_mix, ip


class _Problem(NamedTuple):
    """What every launch of one op call shares: the configuration, the input dtype, the (shifted) row-major
    points (y is x in self mode) and the family's derived constants (P on the device, NP, IP)."""
    cfg: LaunchConfig
    dtype: torch.dtype
    x: torch.Tensor
    y: torch.Tensor
    self_mode: bool
    family: int
    P: torch.Tensor
    NP: int
    IP: int

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        return as_rows(t, self.dtype)

    def grad_out(self, rows: int, cols: int, needed: bool) -> torch.Tensor:
        """A gradient output [rows, cols] in the accumulation dtype: uninitialised where a kernel writes it
        (needed), zeros where it is not asked for."""
        make = torch.empty if needed else torch.zeros
        return make((rows, cols), dtype=self.cfg.acc_torch, device=self.x.device)


def _prepare(x, y, family, params) -> _Problem:
    """The launches' shared state for arguments already checked (``_checks``)."""
    dtype = x.dtype
    fam = int(family)
    cfg = LaunchConfig(x).for_family(fam)
    P, n_mix, ip = _param_tensor(fam, params, cfg.acc_torch, x.device)
    x, y = _shift_radial(fam, x, y)
    xr = as_rows(x, dtype)
    yr = xr if y is None else as_rows(y, dtype)
    return _Problem(cfg, dtype, xr, yr, y is None, fam, P, n_mix, ip)


def _launch_pair(pb: _Problem, R, Q, RC, QC, out, *, flow, out_sq=None):
    """out_sq (sums only, same shape and strides as out): also the sums of the squared kernel values."""
    cfg, fam = pb.cfg, pb.family
    NR, D = R.shape
    NQ = Q.shape[0]
    C = QC.shape[1]
    NO = out.shape[1]
    if NR == 0 or NO == 0:
        return out
    if NQ == 0:
        out.zero_()
        if out_sq is not None:
            out_sq.zero_()
        return out
    bo = cfg.oblock(NO)
    grid = (triton.cdiv(NR, cfg.bi), triton.cdiv(NO, bo))
    RCt = RC if RC is not None else QC
    _pair_kernel[grid](
        R, Q, RCt, QC, out, out if out_sq is None else out_sq, pb.P,
        NR, NQ, D, C, NO,
        row_stride(R), row_stride(Q), row_stride(RCt), row_stride(QC), row_stride(out),
        pb.NP, pb.IP,
        FAMILY=fam, RADIAL=fam not in _DOT_FAMILIES, FLOW=flow, SELF=pb.self_mode, SQUARE=out_sq is not None,
        ACC=cfg.acc, PREC=cfg.prec,
        BLOCK_I=cfg.bi, BLOCK_J=cfg.flow_bj if flow else cfg.self_bj if pb.self_mode else cfg.bj,
        BLOCK_D=cfg.bd, BLOCK_C=cfg.cblock(C), BLOCK_O=bo,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def _launch_hvp(pb: _Problem, R, Q, H, RC, QC, outd, outc, *, side, accum_d):
    cfg, fam = pb.cfg, pb.family
    NR, D = R.shape
    NQ = Q.shape[0]
    C = RC.shape[1]
    need_d = outd is not None and D > 0
    need_c = outc is not None and C > 0
    if NR == 0 or not (need_d or need_c):
        return
    if NQ == 0:
        if need_d and not accum_d:
            outd.zero_()
        if need_c:
            outc.zero_()
        return
    bod = cfg.oblock(D, cfg.hvp_max_o)
    boc = cfg.oblock(C, cfg.hvp_max_o)
    n_o = max(triton.cdiv(D, bod) if need_d else 0, triton.cdiv(C, boc) if need_c else 0)
    grid = (triton.cdiv(NR, cfg.hvp_bi), n_o)
    od = outd if need_d else R  # dummies are never touched (constexpr-disabled)
    oc = outc if need_c else RC
    _hvp_kernel[grid](
        R, Q, H, RC, QC, od, oc, pb.P,
        NR, NQ, D, C,
        row_stride(R), row_stride(Q), row_stride(H), row_stride(RC), row_stride(QC), row_stride(od), row_stride(oc),
        pb.NP, pb.IP,
        FAMILY=fam, RADIAL=fam not in _DOT_FAMILIES, SIDE=side, SELF=pb.self_mode,
        NEED_D=need_d, NEED_C=need_c, ACCUM_D=accum_d,
        ACC=cfg.acc, PREC=cfg.prec,
        BLOCK_I=cfg.hvp_bi, BLOCK_J=cfg.hvp_bj, BLOCK_D=cfg.bd, BLOCK_C=cfg.cblock(C),
        BLOCK_OD=bod, BLOCK_OC=boc,
        num_warps=cfg.hvp_warps, num_stages=cfg.num_stages,
    )


def _shift_radial(fam: int, x: torch.Tensor, y: Optional[torch.Tensor]):
    """Radial kernels: x and y shifted by their common mean c where |c|^2 exceeds the mean squared
    distance to c (translation invariance; keeps the expansion and the factored flows accurate far
    from the origin).  Computed in the accumulation dtype, without a host synchronisation."""
    if fam in _DOT_FAMILIES:
        return x, y
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    parts = [x.to(acc)] if y is None else [x.to(acc), y.to(acc)]
    count = sum(t.shape[0] for t in parts)
    c = sum(t.sum(0) for t in parts) / count
    c2 = (c * c).sum()
    spread2 = sum((t * t).sum() for t in parts) / count - c2
    use = torch.isfinite(c2) & torch.isfinite(spread2) & (c2 > spread2)
    c = torch.where(use, c, torch.zeros_like(c))
    xs = (parts[0] - c).to(x.dtype)
    return xs, None if y is None else (parts[1] - c).to(y.dtype)


# ----------------------------------------------------------------------------
# The four ops
# ----------------------------------------------------------------------------
@on_input_device
def ksum(x: torch.Tensor, y: Optional[torch.Tensor], w: torch.Tensor, family: int,
         params: Sequence[float]) -> torch.Tensor:
    """out[N, C] = sum_j k(x_i, y_j) w_jc."""
    _checks.ksum_args(x, y, w, family, params)
    pb = _prepare(x, y, family, params)
    wr = pb.rows(w)
    out = pb.grad_out(pb.x.size(0), wr.size(1), True)
    _launch_pair(pb, pb.x, pb.y, None, wr, out, flow=False)
    return out.to(pb.dtype)


@on_input_device
def ksum_and_square(x: torch.Tensor, w: torch.Tensor, family: int,
                    params: Sequence[float]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(out, out_sq) [N, C]: sum_j k(x_i, x_j) w_jc and sum_j k(x_i, x_j)^2 w_jc, one pass (forward only)."""
    _checks.ksum_args(x, None, w, family, params)
    pb = _prepare(x, None, family, params)
    wr = pb.rows(w)
    out = pb.grad_out(pb.x.size(0), wr.size(1), True)
    out_sq = torch.empty_like(out)
    _launch_pair(pb, pb.x, pb.y, None, wr, out, flow=False, out_sq=out_sq)
    return out.to(pb.dtype), out_sq.to(pb.dtype)


@on_input_device
def ksum_backward(g: torch.Tensor, x: torch.Tensor, y: Optional[torch.Tensor], w: torch.Tensor, family: int,
                  params: Sequence[float], mask: Sequence[bool]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gx [N, D], gy [M, D] or [0, D] in self mode, gw [M, C]) of L = sum g * ksum(x, y, w)."""
    _checks.ksum_backward_args(g, x, y, w, family, params, mask)
    pb = _prepare(x, y, family, params)
    gr, wr = pb.rows(g), pb.rows(w)
    (N, D), M, C = pb.x.shape, pb.y.shape[0], wr.shape[1]
    need_x, need_y, need_w = (bool(m) for m in mask)
    need_y = need_y and not pb.self_mode
    gx = pb.grad_out(N, D, need_x)
    gy = pb.grad_out(0 if pb.self_mode else M, D, need_y)
    gw = pb.grad_out(M, C, need_w)
    if need_x:
        if pb.self_mode:  # both roles at once: p_ij = g_i . w_j + w_i . g_j
            _launch_pair(pb, pb.x, pb.x, torch.cat([gr, wr], 1), torch.cat([wr, gr], 1), gx, flow=True)
        else:
            _launch_pair(pb, pb.x, pb.y, gr, wr, gx, flow=True)
    if need_y:
        _launch_pair(pb, pb.y, pb.x, wr, gr, gy, flow=True)
    if need_w:
        _launch_pair(pb, pb.y, pb.x, None, gr, gw, flow=False)
    return gx.to(pb.dtype), gy.to(pb.dtype), gw.to(pb.dtype)


@on_input_device
def kform(x: torch.Tensor, y: Optional[torch.Tensor], g: torch.Tensor, w: torch.Tensor, family: int,
          params: Sequence[float], mask: Sequence[bool]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(value, gx, gy): value = sum_ic g_ic ksum(x, y, w)_ic and its gradients in x and y (gy [0, D] in self
    mode).  Here two launches (ksum, then ksum_backward's flows); the CPU engine does it in one pass."""
    _checks.kform_args(x, y, g, w, family, params, mask)
    out = ksum(x, y, w, family, params)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    value = (g.to(acc) * out.to(acc)).sum().to(x.dtype)
    gx, gy, _ = ksum_backward(g, x, y, w, family, params, [bool(mask[0]), bool(mask[1]) and y is not None, False])
    return value, gx, gy


@on_input_device
def kflow(x: torch.Tensor, y: Optional[torch.Tensor], a: torch.Tensor, b: torch.Tensor, family: int,
          params: Sequence[float]) -> torch.Tensor:
    """out[N, D] = sum_j (a_i . b_j) grad_1 k(x_i, y_j)."""
    _checks.kflow_args(x, y, a, b, family, params)
    pb = _prepare(x, y, family, params)
    out = pb.grad_out(*pb.x.shape, True)
    _launch_pair(pb, pb.x, pb.y, pb.rows(a), pb.rows(b), out, flow=True)
    return out.to(pb.dtype)


@on_input_device
def kflow_backward(h: torch.Tensor, x: torch.Tensor, y: Optional[torch.Tensor], a: torch.Tensor,
                   b: torch.Tensor, family: int, params: Sequence[float], mask: Sequence[bool]
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gx, gy, ga, gb) of L = sum_i h_i . kflow(x, y, a, b)_i; self mode: gx total, gy [0, D]."""
    _checks.kflow_backward_args(h, x, y, a, b, family, params, mask)
    pb = _prepare(x, y, family, params)
    hr, ar, br = pb.rows(h), pb.rows(a), pb.rows(b)
    (N, D), M, C = pb.x.shape, pb.y.shape[0], ar.shape[1]
    need_x, need_y, need_a, need_b = (bool(m) for m in mask)
    need_y = need_y and not pb.self_mode
    gx = pb.grad_out(N, D, need_x)
    gy = pb.grad_out(0 if pb.self_mode else M, D, need_y)
    ga = pb.grad_out(N, C, need_a)
    gb = pb.grad_out(M, C, need_b)
    # side 0: the rows of x own the flow outputs (gx, ga); side 1: the other set's rows (gy, gb).  Self mode:
    # both sides are x's, the second accumulated into gx.
    _launch_hvp(pb, pb.x, pb.y, hr, ar, br, gx if need_x else None, ga if need_a else None, side=0, accum_d=False)
    if pb.self_mode:
        _launch_hvp(pb, pb.x, pb.x, hr, br, ar, gx if need_x else None, gb if need_b else None, side=1,
                    accum_d=True)
    else:
        _launch_hvp(pb, pb.y, pb.x, hr, br, ar, gy if need_y else None, gb if need_b else None, side=1,
                    accum_d=False)
    return gx.to(pb.dtype), gy.to(pb.dtype), ga.to(pb.dtype), gb.to(pb.dtype)


# ----------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------
