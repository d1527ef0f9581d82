"""CUDA kernels of the EBGAN pulling-away term, written in Triton.

Math (docs/MATH.md §4; ``pulling_away.py`` has the derivation)::

    PT = sum_{i != j} (sh_i . sh_j)^2 / (N (N - 1)),   sh_i = s_i / max(|s_i|, eps)

* ``_norm_kernel``      per row: inv_i = 1 / max(|s_i|, eps) (norm accumulated in fp64),
                        q_i = |sh_i|^2 and proj_i = [|s_i| >= eps].
* Gram form, O(N^2 D):
  ``_gram_fwd_kernel``  one program per row block I loops over the column blocks J >= I;
                        the tile of raw dot products s_i . s_j (``tl.dot`` over D chunks) is
                        scaled by inv_i inv_j, squared and summed over the pairs i < j only
                        (so the diagonal is left out exactly); one partial per program.
  ``_gram_h_kernel``    H_i = sum_{j != i} (sh_i . sh_j) sh_j for a block of rows and of
                        output columns, looping over all row blocks J (no atomics).
* Covariance form, O(N D^2):
  ``_cov_kernel``       partial G = sum_{i in range} inv_i^2 s_i s_i^T over ``SPLIT`` row
                        ranges, one D-tile pair per program; torch sums the partials in fp64.
                        PT = (|G|_F^2 - sum_i q_i^2) / (N (N - 1)) (the diagonal term
                        subtracted explicitly, in fp64).
  ``_cov_h_kernel``     H_i = G sh_i.
* ``_finish_kernel``    ds_i = c inv_i (h_i - proj_i (h_i . sh_i) sh_i), h_i = H_i - q_i sh_i
                        (covariance; the Gram H has no diagonal term), c = 4 grad / (N (N - 1)).

What is fused: the normalisation is applied to the tiles in registers (raw rows
are loaded; Sh is never written); squaring and summing happen in the GEMM
epilogue; the gradient's projection onto the sphere is one pass over H.
Memory: inv, q, proj ([N]), H ([N, D], accumulation dtype), partials of at most
``LaunchConfig.target_programs`` D-tiles (covariance) or one value per row block (Gram):
O(N D + D^2), nothing N x N.
Accumulation: fp32 for fp16 / bf16 / fp32, fp64 for fp64.  Raw fp16 / bf16
products are exact in TF32, so those dots use TF32 tensor cores; dots of fp32
data (and of scaled values) use TF32 only when
``torch.backends.cuda.matmul.allow_tf32`` is set, IEEE fp32 otherwise.
Determinism: no atomics; partials are reduced by torch in a fixed order.

Limits: the Gram form's forward visits blocks J >= I only (the first row blocks do
more work: load imbalance of up to 2x); its backward recomputes the Gram tile for
every ``BLOCK_O`` columns of the output (``ceil(D / 64)`` times for fp32) and does
the full square.  Not tuned on hardware: only verified under ``TRITON_INTERPRET=1``
(CPU tensors are accepted only there).
"""
from __future__ import annotations

import torch

from . import _checks
from .triton_utils import (
    HAS_TRITON, LaunchConfig, as_rows, device_constants, on_input_device, row_stride, tl, triton,
)

if HAS_TRITON:
    from .triton_pairwise import _span, _tile_p

__all__ = ["pulling_away", "pulling_away_backward"]

GRAM, COVARIANCE = 0, 1

if HAS_TRITON:

    @triton.jit
    def _norm_kernel(S, EPS, INV, Q, PROJ, N, D, s_s,
                     ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        rn = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        mn = rn < N
        ss = tl.zeros([BLOCK_N], tl.float64)
        for d0 in range(0, D, BLOCK_D):
            rd = d0 + tl.arange(0, BLOCK_D)
            x = tl.load(S + rn[:, None] * s_s + rd[None, :], mask=mn[:, None] & (rd < D)[None, :], other=0.0)
            x = x.to(tl.float64)
            ss += tl.sum(x * x, 1)
        eps = tl.load(EPS)
        nrm = tl.sqrt(ss)
        inv = 1.0 / tl.where(nrm < eps, eps, nrm)  # NaN stays NaN
        tl.store(INV + rn, inv.to(ACC), mask=mn)
        tl.store(Q + rn, (ss * inv * inv).to(ACC), mask=mn)
        tl.store(PROJ + rn, tl.where(nrm >= eps, 1.0, 0.0).to(ACC), mask=mn)

    @triton.jit
    def _gram_fwd_kernel(S, INV, PART, N, D, s_s,
                         ACC: tl.constexpr, PREC_RAW: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr):
        pid = tl.program_id(0)
        ri, mi = _span(pid * BLOCK, BLOCK, N)
        inv_i = tl.load(INV + ri, mask=mi, other=0.0)
        acc = tl.zeros([BLOCK], ACC)
        for j0 in range(pid * BLOCK, N, BLOCK):
            rj, mj = _span(j0, BLOCK, N)
            p = _tile_p(S, S, ri, rj, mi, mj, D, s_s, s_s, ACC, PREC_RAW, BLOCK, BLOCK, BLOCK_D)  # raw s_i . s_j
            inv_j = tl.load(INV + rj, mask=mj, other=0.0)
            p = p * inv_i[:, None] * inv_j[None, :]
            keep = (ri[:, None] < rj[None, :]) & mj[None, :]
            acc += tl.sum(tl.where(keep, p * p, 0.0), 1)
        tl.store(PART + pid, tl.sum(acc, 0))

    @triton.jit
    def _gram_h_kernel(S, INV, H, N, D, s_s, s_h,
                       ACC: tl.constexpr, PREC_RAW: tl.constexpr, PREC: tl.constexpr,
                       BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_D: tl.constexpr,
                       BLOCK_O: tl.constexpr):
        ri = (tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)).to(tl.int64)
        mi = ri < N
        ro = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
        inv_i = tl.load(INV + ri, mask=mi, other=0.0)
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        for j0 in range(0, N, BLOCK_J):
            rj, mj = _span(j0, BLOCK_J, N)
            p = _tile_p(S, S, ri, rj, mi, mj, D, s_s, s_s, ACC, PREC_RAW, BLOCK_I, BLOCK_J, BLOCK_D)  # raw s_i . s_j
            inv_j = tl.load(INV + rj, mask=mj, other=0.0)
            # (sh_i . sh_j) / max(|s_j|, eps): against the raw s_j it gives (sh_i . sh_j) sh_j
            w = p * inv_i[:, None] * (inv_j * inv_j)[None, :]
            w = tl.where((ri[:, None] != rj[None, :]) & mj[None, :], w, 0.0)
            v = tl.load(S + rj[:, None] * s_s + ro[None, :], mask=mj[:, None] & mo[None, :], other=0.0)
            acc += tl.dot(w, v.to(ACC), input_precision=PREC)
        tl.store(H + ri[:, None] * s_h + ro[None, :], acc, mask=mi[:, None] & mo[None, :])

    @triton.jit
    def _cov_kernel(S, INV, PART, N, D, s_s, rows_per,
                    ACC: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr):
        ra = tl.program_id(0) * BLOCK_A + tl.arange(0, BLOCK_A)
        rb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
        ma = ra < D
        mb = rb < D
        k = tl.program_id(2)
        r_start = k * rows_per
        r_end = tl.minimum(N, r_start + rows_per)
        acc = tl.zeros([BLOCK_A, BLOCK_B], ACC)
        for r0 in range(r_start, r_end, BLOCK_N):
            rn, mn = _span(r0, BLOCK_N, r_end)
            w = tl.load(INV + rn, mask=mn, other=0.0)
            at = tl.load(S + rn[None, :] * s_s + ra[:, None], mask=ma[:, None] & mn[None, :], other=0.0)
            b = tl.load(S + rn[:, None] * s_s + rb[None, :], mask=mn[:, None] & mb[None, :], other=0.0)
            acc += tl.dot(at.to(ACC) * (w * w)[None, :], b.to(ACC), input_precision=PREC)
        out = PART + k.to(tl.int64) * D * D + ra[:, None] * D + rb[None, :]
        tl.store(out, acc, mask=ma[:, None] & mb[None, :])

    @triton.jit
    def _cov_h_kernel(S, INV, G, H, N, D, s_s, s_h,
                      ACC: tl.constexpr, PREC: tl.constexpr,
                      BLOCK_I: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_O: tl.constexpr):
        ri = (tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I)).to(tl.int64)
        mi = ri < N
        ro = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
        mo = ro < D
        acc = tl.zeros([BLOCK_I, BLOCK_O], ACC)
        for k0 in range(0, D, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            mk = rk < D
            a = tl.load(S + ri[:, None] * s_s + rk[None, :], mask=mi[:, None] & mk[None, :], other=0.0)
            g = tl.load(G + rk[:, None] * D + ro[None, :], mask=mk[:, None] & mo[None, :], other=0.0)
            acc += tl.dot(a.to(ACC), g, input_precision=PREC)
        inv_i = tl.load(INV + ri, mask=mi, other=0.0)
        tl.store(H + ri[:, None] * s_h + ro[None, :], acc * inv_i[:, None], mask=mi[:, None] & mo[None, :])

    @triton.jit
    def _unit_rows_and_h(S, H, rn, mn, d0, D, inv, q, s_s, s_h, DIAG: tl.constexpr, ACC: tl.constexpr,
                         BLOCK_D: tl.constexpr):
        """Columns d0 .. d0 + BLOCK_D - 1 of the rows rn: (column indices, mask, sh = s inv, h), with
        h = H - q sh where DIAG (the covariance H holds the diagonal term), H otherwise."""
        rd = d0 + tl.arange(0, BLOCK_D)
        m2 = mn[:, None] & (rd < D)[None, :]
        x = tl.load(S + rn[:, None] * s_s + rd[None, :], mask=m2, other=0.0).to(ACC) * inv[:, None]
        h = tl.load(H + rn[:, None] * s_h + rd[None, :], mask=m2, other=0.0)
        if DIAG:
            h -= q[:, None] * x
        return rd, m2, x, h

    @triton.jit
    def _finish_kernel(S, INV, Q, PROJ, H, C, OUT, N, D, s_s, s_h, s_o,
                       DIAG: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
        rn = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
        mn = rn < N
        inv = tl.load(INV + rn, mask=mn, other=0.0)
        q = tl.load(Q + rn, mask=mn, other=0.0)
        proj = tl.load(PROJ + rn, mask=mn, other=0.0)
        t = tl.zeros([BLOCK_N], ACC)
        for d0 in range(0, D, BLOCK_D):
            _rd, _m2, x, h = _unit_rows_and_h(S, H, rn, mn, d0, D, inv, q, s_s, s_h, DIAG, ACC, BLOCK_D)
            t += tl.sum(h * x, 1)
        t = tl.where(proj > 0.0, t, 0.0)
        f = tl.load(C) * inv
        for d0 in range(0, D, BLOCK_D):
            rd, m2, x, h = _unit_rows_and_h(S, H, rn, mn, d0, D, inv, q, s_s, s_h, DIAG, ACC, BLOCK_D)
            out = f[:, None] * (h - t[:, None] * x)
            tl.store(OUT + rn[:, None] * s_o + rd[None, :], out.to(OUT.dtype.element_ty), mask=m2)


# ----------------------------------------------------------------------------
# launchers
# ----------------------------------------------------------------------------
def _check(s, eps, algorithm) -> None:
    _checks.pulling_away_args(s, eps, algorithm)


def _normalisation(cfg, s, eps):
    """(inv, q, proj), each [N] in the accumulation dtype."""
    n, d = s.shape
    inv, q, proj = (torch.empty(n, dtype=cfg.acc_torch, device=s.device) for _ in range(3))
    eps_t = device_constants([eps], torch.float64, s.device)
    _norm_kernel[(triton.cdiv(n, cfg.bi),)](
        s, eps_t, inv, q, proj, n, d, row_stride(s),
        ACC=cfg.acc, BLOCK_N=cfg.bi, BLOCK_D=cfg.oblock(d), num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return inv, q, proj


def _covariance(cfg, s, inv):
    """G = Sh^T Sh, [D, D] in float64 (partials over row ranges accumulated in ACC, summed in fp64)."""
    n, d = s.shape
    bd = cfg.oblock(d)
    tiles = triton.cdiv(d, bd) ** 2
    split = max(1, min(triton.cdiv(n, cfg.bi), cfg.target_programs // tiles))
    rows_per = triton.cdiv(triton.cdiv(n, split), cfg.bi) * cfg.bi
    split = triton.cdiv(n, rows_per)
    part = torch.empty((split, d, d), dtype=cfg.acc_torch, device=s.device)
    _cov_kernel[(triton.cdiv(d, bd), triton.cdiv(d, bd), split)](
        s, inv, part, n, d, row_stride(s), rows_per,
        ACC=cfg.acc, PREC=cfg.prec, BLOCK_N=cfg.bi, BLOCK_A=bd, BLOCK_B=bd, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages)
    return part.to(torch.float64).sum(0)


@on_input_device
def pulling_away(s: torch.Tensor, eps: float, algorithm: int) -> torch.Tensor:
    """PT of the rows of s (0-dim, s's dtype); algorithm 0 = Gram form, 1 = covariance form."""
    _check(s, eps, algorithm)
    cfg = LaunchConfig(s)
    sr = as_rows(s, s.dtype)
    n, d = sr.shape
    inv, q, _ = _normalisation(cfg, sr, eps)
    if algorithm == GRAM:
        blocks = triton.cdiv(n, cfg.bi)
        part = torch.empty(blocks, dtype=cfg.acc_torch, device=s.device)
        _gram_fwd_kernel[(blocks,)](
            sr, inv, part, n, d, row_stride(sr),
            ACC=cfg.acc, PREC_RAW=cfg.prec_raw, BLOCK=cfg.bi, BLOCK_D=cfg.bd, num_warps=cfg.num_warps,
            num_stages=cfg.num_stages)
        pairs = 2.0 * part.to(torch.float64).sum()
    else:
        g = _covariance(cfg, sr, inv)
        pairs = (g * g).sum() - (q.to(torch.float64) ** 2).sum()
    return (pairs / (n * (n - 1))).to(s.dtype)


@on_input_device
def pulling_away_backward(grad: torch.Tensor, s: torch.Tensor, eps: float, algorithm: int) -> torch.Tensor:
    """d(grad * PT) / ds, [N, D] in s's dtype."""
    _checks.pulling_away_backward_args(grad, s, eps, algorithm)
    cfg = LaunchConfig(s)
    sr = as_rows(s, s.dtype)
    n, d = sr.shape
    inv, q, proj = _normalisation(cfg, sr, eps)
    h = torch.empty((n, d), dtype=cfg.acc_torch, device=s.device)
    bo = cfg.oblock(d)
    grid = (triton.cdiv(n, cfg.bi), triton.cdiv(d, bo))
    if algorithm == GRAM:
        _gram_h_kernel[grid](
            sr, inv, h, n, d, row_stride(sr), row_stride(h),
            ACC=cfg.acc, PREC_RAW=cfg.prec_raw, PREC=cfg.prec,
            BLOCK_I=cfg.bi, BLOCK_J=cfg.bi, BLOCK_D=cfg.bd, BLOCK_O=bo, num_warps=cfg.num_warps,
            num_stages=cfg.num_stages)
    else:
        g = _covariance(cfg, sr, inv).to(cfg.acc_torch).contiguous()
        _cov_h_kernel[grid](
            sr, inv, g, h, n, d, row_stride(sr), row_stride(h),
            ACC=cfg.acc, PREC=cfg.prec, BLOCK_I=cfg.bi, BLOCK_K=cfg.bd, BLOCK_O=bo, num_warps=cfg.num_warps,
            num_stages=cfg.num_stages)
    coef = (grad.reshape(1).to(cfg.acc_torch) * (4.0 / (n * (n - 1)))).contiguous()
    out = torch.empty((n, d), dtype=s.dtype, device=s.device)
    _finish_kernel[(triton.cdiv(n, cfg.bi),)](
        sr, inv, q, proj, h, coef, out, n, d, row_stride(sr), row_stride(h), row_stride(out),
        DIAG=algorithm == COVARIANCE, ACC=cfg.acc, BLOCK_N=cfg.bi, BLOCK_D=cfg.oblock(d),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return out
