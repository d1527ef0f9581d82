"""Counter-based Gaussian noise and the Langevin update, as jitted helpers of the Triton kernels.

``xi`` of element ``e`` (row-major index in the ``[N, D]`` or flattened tensor) at chain step ``t`` is a
pure function of ``(seed, t, e)``: one Philox4x32-10 call (``tl.philox``, key = the 64-bit seed, counter =
``(e_lo, e_hi, t, 0)``) gives two 24-bit uniforms in (0, 1), and Box-Muller turns them into one normal
(|xi| <= 5.9).  So the same seed gives the same result on the device, independent of block sizes;
``langevin_step`` uses ``t = 0``, so one ``kde_langevin`` / ``kernel_langevin`` step reproduces the noise
of ``langevin_step`` with the same seed.  Not bitwise equal to the CPU noise (csrc/noise.h: ARS-7 on AES
rounds); both are standard normal streams keyed by the same seed.  Cost: one Philox call (about 100
integer operations) per element, two of its four words used.
"""
from __future__ import annotations

from .triton_utils import HAS_TRITON, tl, triton

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
