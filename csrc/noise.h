// Counter-based Gaussian noise for the fused Langevin updates.
//
// Element e of the noise of chain step `step` under `seed` is a pure function of
// (seed, step, e).  The uniform words come from ARS-7, the AES-round counter
// generator of Salmon et al. ("Parallel random numbers: as easy as 1, 2, 3",
// SC'11): the 128-bit block (c lo, c hi, step, 0) of the 64-bit counter c is
// xored with the key (seed lo, seed hi, 0, 0), then goes through six AES
// encryption rounds and one last round, the round key advancing by the Weyl
// constants (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B) (64-bit lane adds) before
// each round.  Elements are grouped by 64: group g takes the 16 blocks of
// counters 16 g .. 16 g + 15 (64 words, block l's four words at 4 l .. 4 l + 3),
// read as words[k][l] = word 16 k + l; two Box-Muller transforms per lane turn
// (words[0][l], words[1][l]) and (words[2][l], words[3][l]) into the group's
// elements l, 16 + l and 32 + l, 48 + l.  So the noise does not depend on the
// thread count or on how rows are split into blocks: the same seed gives bitwise
// the same samples, and different seeds or steps give independent streams.
//
// Speed: the AES rounds run on the AES-NI / VAES units where the build enables
// them (setup.py: -maes, -mvaes), otherwise on a portable table-driven software
// round with the same bits (about 15x slower; bench/RESULTS.md, "Design measurements").
// ARS-7 costs 7 AES instructions per 2 blocks with VAES on 256-bit vectors (per 4
// blocks with AVX-512, whose 64-byte stores are also what the 16-lane Box-Muller
// loads read back whole: a load spanning two narrower stores misses store-to-load
// forwarding, which cost 40 % of fill_normals on a Zen 5 core), against ~18 vector
// instructions per Philox round; the paper finds ARS-5 Crush-resistant, 7 rounds
// keep a margin.
// The Box-Muller part is plain loops over small arrays of lanes that the
// compiler vectorises (AVX2: 8 lanes, the log and the sin/cos are short
// polynomials, no libm calls).  Accuracy: log and sincos about 2e-7 relative;
// uniforms have 24 bits; the smallest uniform used in the log is 2^-24, so
// |normal| <= sqrt(-2 ln 2^-24) = 5.77 (tail mass beyond it: 8e-9, i.e. never
// observed at these sample sizes).  The Triton kernels (CUDA) use Philox: CPU
// and CUDA streams differ.
#pragma once

#include <cmath>
#if defined(__AES__) || defined(__VAES__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <cstring>

namespace gankernels {

constexpr int kNoiseLanes = 16;   // blocks per group (= 64 words = 64 normals)
constexpr int kArsRounds = 7;
constexpr uint64_t kWeylLo = 0x9E3779B97F4A7C15ull, kWeylHi = 0xBB67AE8584CAA73Bull;

// ---- portable AES rounds (FIPS-197 layout: byte i of a block is row i % 4 of column i / 4;
// a column is one little-endian 32-bit word)

inline uint8_t gf_mul2(uint8_t a) { return (uint8_t)((a << 1) ^ ((a & 0x80) ? 0x1B : 0x00)); }

// The AES round tables, computed once: the S-box (multiplicative inverse in GF(2^8), then
// the affine map) and te[x] = the MixColumns column of S(x) in row 0: bytes (2 S, S, S, 3 S).
struct AesTables {
  uint8_t sbox[256];
  uint32_t te[256];
};

inline const AesTables& aes_tables() {
  static const AesTables t = [] {
    AesTables t{};
    uint8_t inv[256] = {0};
    for (int a = 1; a < 256; ++a) {
      for (int b = 1; b < 256; ++b) {  // a * b == 1 in GF(2^8)
        uint8_t p = 0, x = (uint8_t)a, y = (uint8_t)b;
        for (int k = 0; k < 8; ++k) {
          if (y & 1) p ^= x;
          x = gf_mul2(x);
          y >>= 1;
        }
        if (p == 1) { inv[a] = (uint8_t)b; break; }
      }
    }
    for (int a = 0; a < 256; ++a) {
      const uint8_t b = inv[a];
      uint8_t s = b;
      for (int r = 1; r <= 4; ++r) s ^= (uint8_t)((b << r) | (b >> (8 - r)));
      s ^= 0x63;
      t.sbox[a] = s;
      const uint8_t s2 = gf_mul2(s);
      t.te[a] = (uint32_t)s2 | ((uint32_t)s << 8) | ((uint32_t)s << 16) | ((uint32_t)(s2 ^ s) << 24);
    }
    return t;
  }();
  return t;
}

inline uint32_t rotl32(uint32_t v, int k) { return (v << k) | (v >> (32 - k)); }

// One AES encryption round on four little-endian column words (SubBytes, ShiftRows, MixColumns
// unless `last`, AddRoundKey), as aesenc / aesenclast: output column c reads row r from column c + r.
inline void aes_round_soft(const AesTables& t, uint32_t st[4], const uint32_t key[4], bool last) {
  uint32_t out[4];
  for (int c = 0; c < 4; ++c) {
    const uint8_t b0 = (uint8_t)st[c], b1 = (uint8_t)(st[(c + 1) & 3] >> 8);
    const uint8_t b2 = (uint8_t)(st[(c + 2) & 3] >> 16), b3 = (uint8_t)(st[(c + 3) & 3] >> 24);
    out[c] = last ? ((uint32_t)t.sbox[b0] | ((uint32_t)t.sbox[b1] << 8) | ((uint32_t)t.sbox[b2] << 16) |
                     ((uint32_t)t.sbox[b3] << 24))
                  : t.te[b0] ^ rotl32(t.te[b1], 8) ^ rotl32(t.te[b2], 16) ^ rotl32(t.te[b3], 24);
  }
  for (int c = 0; c < 4; ++c) st[c] = out[c] ^ key[c];
}

// ARS-7 of the blocks (ctr0 + l, step) for l < kNoiseLanes: out[4 l + k] = word k of block l.
inline void ars_blocks(uint64_t ctr0, uint32_t step, uint64_t seed, uint32_t out[4 * kNoiseLanes]) {
#if defined(__VAES__) && defined(__AVX512F__)
  // four blocks per instruction, stored as whole 64-byte vectors: the Box-Muller loop's 16-lane loads then
  // read what one store wrote (a load spanning two narrower stores stalls store-to-load forwarding)
  const __m512i weyl = _mm512_set_epi64((long long)kWeylHi, (long long)kWeylLo, (long long)kWeylHi,
                                        (long long)kWeylLo, (long long)kWeylHi, (long long)kWeylLo,
                                        (long long)kWeylHi, (long long)kWeylLo);
  __m512i keys[kArsRounds + 1];
  keys[0] = _mm512_set_epi64(0, (long long)seed, 0, (long long)seed, 0, (long long)seed, 0, (long long)seed);
  for (int r = 1; r <= kArsRounds; ++r) keys[r] = _mm512_add_epi64(keys[r - 1], weyl);
  const int hi = (int)(uint32_t)(ctr0 >> 32);
  const int lo = (int)(uint32_t)ctr0;  // the low word never wraps inside a group: ctr0 is a multiple of 16
  __m512i v[kNoiseLanes / 4];
  for (int p = 0; p < kNoiseLanes / 4; ++p) {
    const int c = lo + 4 * p;
    v[p] = _mm512_xor_si512(_mm512_setr_epi32(c, hi, (int)step, 0, c + 1, hi, (int)step, 0, c + 2, hi, (int)step,
                                              0, c + 3, hi, (int)step, 0), keys[0]);
  }
  for (int r = 1; r < kArsRounds; ++r)
    for (int p = 0; p < kNoiseLanes / 4; ++p) v[p] = _mm512_aesenc_epi128(v[p], keys[r]);
  for (int p = 0; p < kNoiseLanes / 4; ++p)
    _mm512_storeu_si512((void*)(out + 16 * p), _mm512_aesenclast_epi128(v[p], keys[kArsRounds]));
#elif defined(__VAES__) && defined(__AVX2__)
  const __m256i weyl = _mm256_set_epi64x((long long)kWeylHi, (long long)kWeylLo, (long long)kWeylHi,
                                         (long long)kWeylLo);
  __m256i keys[kArsRounds + 1];
  keys[0] = _mm256_set_epi64x(0, (long long)seed, 0, (long long)seed);
  for (int r = 1; r <= kArsRounds; ++r) keys[r] = _mm256_add_epi64(keys[r - 1], weyl);
  const int hi = (int)(uint32_t)(ctr0 >> 32);
  for (int l = 0; l < kNoiseLanes; l += 8) {  // four independent pairs of blocks in flight
    __m256i v[4];
    for (int p = 0; p < 4; ++p) {
      // the low word never wraps inside a group: ctr0 is a multiple of 16
      const int lo = (int)(uint32_t)(ctr0 + (uint64_t)(l + 2 * p));
      v[p] = _mm256_xor_si256(_mm256_setr_epi32(lo, hi, (int)step, 0, lo + 1, hi, (int)step, 0), keys[0]);
    }
    for (int r = 1; r < kArsRounds; ++r)
      for (int p = 0; p < 4; ++p) v[p] = _mm256_aesenc_epi128(v[p], keys[r]);
    for (int p = 0; p < 4; ++p) {
      v[p] = _mm256_aesenclast_epi128(v[p], keys[kArsRounds]);
      _mm256_storeu_si256((__m256i*)(out + 4 * (l + 2 * p)), v[p]);
    }
  }
#elif defined(__AES__)
  const __m128i weyl = _mm_set_epi64x((long long)kWeylHi, (long long)kWeylLo);
  __m128i keys[kArsRounds + 1];
  keys[0] = _mm_set_epi64x(0, (long long)seed);
  for (int r = 1; r <= kArsRounds; ++r) keys[r] = _mm_add_epi64(keys[r - 1], weyl);
  const int hi = (int)(uint32_t)(ctr0 >> 32);
  for (int l = 0; l < kNoiseLanes; l += 4) {
    __m128i v[4];
    for (int p = 0; p < 4; ++p)
      v[p] = _mm_xor_si128(_mm_setr_epi32((int)(uint32_t)(ctr0 + (uint64_t)(l + p)), hi, (int)step, 0), keys[0]);
    for (int r = 1; r < kArsRounds; ++r)
      for (int p = 0; p < 4; ++p) v[p] = _mm_aesenc_si128(v[p], keys[r]);
    for (int p = 0; p < 4; ++p) {
      v[p] = _mm_aesenclast_si128(v[p], keys[kArsRounds]);
      _mm_storeu_si128((__m128i*)(out + 4 * (l + p)), v[p]);
    }
  }
#else
  uint32_t keys[kArsRounds + 1][4];
  uint64_t klo = seed, khi = 0;
  for (int r = 0; r <= kArsRounds; ++r) {
    keys[r][0] = (uint32_t)klo;
    keys[r][1] = (uint32_t)(klo >> 32);
    keys[r][2] = (uint32_t)khi;
    keys[r][3] = (uint32_t)(khi >> 32);
    klo += kWeylLo;
    khi += kWeylHi;
  }
  const AesTables& tables = aes_tables();
  for (int l = 0; l < kNoiseLanes; ++l) {
    const uint64_t c = ctr0 + (uint64_t)l;
    uint32_t* st = out + 4 * l;
    st[0] = (uint32_t)c ^ keys[0][0];
    st[1] = (uint32_t)(c >> 32) ^ keys[0][1];
    st[2] = step ^ keys[0][2];
    st[3] = keys[0][3];
    for (int r = 1; r <= kArsRounds; ++r) aes_round_soft(tables, st, keys[r], r == kArsRounds);
  }
#endif
}

// ln(u) for u in (0, 1]: exponent from the bits, mantissa m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172, odd series to t^9.
inline float noise_log(float u) {
  int32_t bits;
  std::memcpy(&bits, &u, sizeof(bits));
  int32_t e = ((bits >> 23) & 0xff) - 127;
  int32_t mbits = (bits & 0x007fffff) | 0x3f800000;
  float m;
  std::memcpy(&m, &mbits, sizeof(m));
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1 : e;
  const float t = (m - 1.0f) / (m + 1.0f);
  const float t2 = t * t;
  float p = 1.0f / 9.0f;
  p = p * t2 + 1.0f / 7.0f;
  p = p * t2 + 1.0f / 5.0f;
  p = p * t2 + 1.0f / 3.0f;
  p = p * t2 + 1.0f;
  return 2.0f * t * p + (float)e * 0.693147180559945f;
}

// sin(2 pi v), cos(2 pi v) for v in [0, 1): quadrant q = round(4 v), remainder in [-1/8, 1/8] turns.
inline void noise_sincos_turns(float v, float& s, float& c) {
  const float q = std::nearbyint(4.0f * v);
  const float f = (v - 0.25f * q) * 6.28318530717958648f;  // |f| <= pi/4
  const float f2 = f * f;
  float ps = -1.0f / 39916800.0f;
  ps = ps * f2 + 1.0f / 362880.0f;
  ps = ps * f2 - 1.0f / 5040.0f;
  ps = ps * f2 + 1.0f / 120.0f;
  ps = ps * f2 - 1.0f / 6.0f;
  const float sf = f + f * f2 * ps;
  float pc = 1.0f / 479001600.0f;
  pc = pc * f2 - 1.0f / 3628800.0f;
  pc = pc * f2 + 1.0f / 40320.0f;
  pc = pc * f2 - 1.0f / 720.0f;
  pc = pc * f2 + 1.0f / 24.0f;
  pc = pc * f2 - 0.5f;
  const float cf = 1.0f + f2 * pc;
  // quadrant q (0..4; 4 = 0): odd q swaps sin and cos, sin is negated for q & 2, cos for (q + 1) & 2
  const int32_t qi = (int32_t)q;
  const bool swap = (qi & 1) != 0;
  const float a = swap ? cf : sf, b = swap ? sf : cf;
  uint32_t abits, bbits;
  std::memcpy(&abits, &a, sizeof(a));
  std::memcpy(&bbits, &b, sizeof(b));
  abits ^= (uint32_t)(qi & 2) << 30;
  bbits ^= (uint32_t)((qi + 1) & 2) << 30;
  std::memcpy(&s, &abits, sizeof(s));
  std::memcpy(&c, &bbits, sizeof(c));
}

// Two Box-Muller transforms per lane: words w1 (log), w2 (angle) -> normals r cos, r sin.
inline void box_muller_lanes(const uint32_t* w1, const uint32_t* w2, float* ncos, float* nsin) {
  for (int l = 0; l < kNoiseLanes; ++l) {
    // u1 in (0, 1] for the log, u2 in [0, 1) for the angle
    const float u1 = (float)(int32_t)((w1[l] >> 8) + 1u) * 5.9604644775390625e-8f;
    const float u2 = (float)(int32_t)(w2[l] >> 8) * 5.9604644775390625e-8f;
    const float r = std::sqrt(-2.0f * noise_log(u1));
    float s, c;
    noise_sincos_turns(u2, s, c);
    ncos[l] = r * c;
    nsin[l] = r * s;
  }
}

// Standard normals for elements [e0, e0 + n) of (seed, step) into out[0 .. n).
inline void fill_normals(float* out, int64_t e0, int64_t n, uint64_t seed, uint32_t step) {
  constexpr int64_t kGroup = 4 * kNoiseLanes;
  alignas(32) uint32_t words[4][kNoiseLanes];
  alignas(32) float buf[kGroup];
  const int64_t end = e0 + n;
  for (int64_t g = e0 - (e0 % kGroup); g < end; g += kGroup) {
    ars_blocks((uint64_t)(g / kGroup) * kNoiseLanes, step, seed, &words[0][0]);
    const bool whole = g >= e0 && g + kGroup <= end;
    float* dst = whole ? out + (g - e0) : buf;
    box_muller_lanes(words[0], words[1], dst, dst + kNoiseLanes);
    box_muller_lanes(words[2], words[3], dst + 2 * kNoiseLanes, dst + 3 * kNoiseLanes);
    if (!whole) {
      const int64_t lo = g < e0 ? e0 : g;
      const int64_t hi = g + kGroup < end ? g + kGroup : end;
      for (int64_t k = lo; k < hi; ++k) out[k - e0] = buf[k - g];
    }
  }
}

}  // namespace gankernels
