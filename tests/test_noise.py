"""The CPU Langevin noise against an independent Python model of its documented generator
(csrc/noise.h): ARS-7 (Salmon et al., SC'11) on AES rounds, then Box-Muller.

The Python AES round is checked first against the FIPS-197 AES-128 test vector (with the
standard key expansion), so the comparison pins the C++ code (AES-NI, VAES or the portable
software rounds, whichever this build has) to real AES rounds, the ARS key schedule and the
documented mapping of words to elements -- bit for bit in the words, to the polynomial
accuracy (~2e-7 relative) in the normals.
"""
import math

import torch

import gankernels  # noqa: F401  (registers torch.ops.gankernels)


def _gf_mul(a, b):
    p = 0
    for _ in range(8):
        if b & 1:
            p ^= a
        a = ((a << 1) ^ 0x11B) if a & 0x80 else (a << 1)
        b >>= 1
    return p


def _sbox():
    inv = [0] * 256
    for a in range(1, 256):
        inv[a] = next(b for b in range(1, 256) if _gf_mul(a, b) == 1)
    out = []
    for a in range(256):
        b, s = inv[a], inv[a]
        for r in range(1, 5):
            s ^= ((b << r) | (b >> (8 - r))) & 0xFF
        out.append(s ^ 0x63)
    return out


SBOX = _sbox()


def _aes_round(state, key, last=False):
    """aesenc / aesenclast on 16 bytes (byte i = row i % 4 of column i // 4)."""
    sub = [SBOX[b] for b in state]
    shifted = [sub[r + 4 * ((c + r) % 4)] for c in range(4) for r in range(4)]
    if not last:
        mixed = []
        for c in range(4):
            a = shifted[4 * c:4 * c + 4]
            mixed += [_gf_mul(a[r], 2) ^ _gf_mul(a[(r + 1) % 4], 3) ^ a[(r + 2) % 4] ^ a[(r + 3) % 4]
                      for r in range(4)]
        shifted = mixed
    return [s ^ k for s, k in zip(shifted, key)]


def _aes128_encrypt(block, key):
    words = [list(key[4 * i:4 * i + 4]) for i in range(4)]
    rcon = 1
    for i in range(4, 44):
        t = list(words[i - 1])
        if i % 4 == 0:
            t = [SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= rcon
            rcon = _gf_mul(rcon, 2)
        words.append([a ^ b for a, b in zip(words[i - 4], t)])
    keys = [sum(words[4 * r:4 * r + 4], []) for r in range(11)]
    state = [b ^ k for b, k in zip(block, keys[0])]
    for r in range(1, 11):
        state = _aes_round(state, keys[r], last=(r == 10))
    return bytes(state)


def test_python_aes_round_is_aes():
    """FIPS-197 appendix C.1."""
    out = _aes128_encrypt(bytes.fromhex("00112233445566778899aabbccddeeff"),
                          bytes.fromhex("000102030405060708090a0b0c0d0e0f"))
    assert out.hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


WEYL = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
MASK64 = (1 << 64) - 1


def _to_bytes(lo, hi):
    return list(lo.to_bytes(8, "little") + hi.to_bytes(8, "little"))


def _ars7(counter, step, seed):
    """The four 32-bit words of ARS-7 of the block (counter lo, counter hi, step, 0) under key (seed, 0)."""
    klo, khi = seed, 0
    state = [b ^ k for b, k in zip(_to_bytes(counter, step), _to_bytes(klo, khi))]
    for r in range(1, 8):
        klo, khi = (klo + WEYL[0]) & MASK64, (khi + WEYL[1]) & MASK64
        state = _aes_round(state, _to_bytes(klo, khi), last=(r == 7))
    return [int.from_bytes(bytes(state[4 * k:4 * k + 4]), "little") for k in range(4)]


def _normals(n, seed, step=0):
    """Elements 0 .. n-1 of the documented noise, in float64."""
    out = []
    for g in range((n + 63) // 64):
        raw = sum((_ars7(16 * g + b, step, seed) for b in range(16)), [])
        words = [raw[16 * k:16 * k + 16] for k in range(4)]
        group = [0.0] * 64
        for pair in range(2):
            for lane in range(16):
                u1 = ((words[2 * pair][lane] >> 8) + 1) * 2.0 ** -24
                u2 = (words[2 * pair + 1][lane] >> 8) * 2.0 ** -24
                r = math.sqrt(-2.0 * math.log(u1))
                group[32 * pair + lane] = r * math.cos(2 * math.pi * u2)
                group[32 * pair + 16 + lane] = r * math.sin(2 * math.pi * u2)
        out += group
    return torch.tensor(out[:n], dtype=torch.float64)


def test_cpu_noise_is_the_documented_generator():
    # x = 0, drift = 0, eta = 1/2, tau = 1: the step returns the noise itself (scale sqrt(2 eta tau) = 1);
    # 3 x 70 = 210 elements: three whole groups of 64 and a partial one
    for seed in (0, 12345, (1 << 62) - 3):
        x = torch.zeros(3, 70, dtype=torch.float64)
        xi = torch.ops.gankernels.langevin_step(x, torch.zeros_like(x), 0.5, 1.0, seed).flatten()
        ref = _normals(xi.numel(), seed)
        torch.testing.assert_close(xi, ref, rtol=0, atol=3e-6)  # |xi| <= 5.77, polynomials ~2e-7 relative
