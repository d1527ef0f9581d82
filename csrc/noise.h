// Counter-based Gaussian noise for the fused Langevin updates.
//
// Element e of the noise of chain step `step` under `seed` is a pure function of
// (seed, step, e): Philox4x32-10 (Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3", SC'11) maps the 64-bit counter c = 16 (e / 64) + e % 16
// (low and high words), `step` and 0 under the 64-bit key `seed` to four
// uniform 32-bit words; two Box-Muller transforms turn them into four standard
// normals, and element e takes normal number (e % 64) / 16 of them.  (Elements
// are grouped by 64 so that a group is stored as four contiguous runs of 16.)
// So the noise does not depend on the thread count or on how rows are split
// into blocks: the same seed gives bitwise the same samples, and different
// seeds or steps give independent streams.
//
// Everything here is written as plain loops over small arrays of lanes so that
// the compiler vectorises it (AVX2: 8 lanes of 32-bit multiplies, the log and
// the sin/cos are short polynomials, no libm calls).  Accuracy: log and sincos
// about 2e-7 relative; uniforms have 24 bits; the smallest uniform used in the
// log is 2^-24, so |normal| <= sqrt(-2 ln 2^-24) = 5.77 (tail mass beyond it:
// 8e-9, i.e. never observed at these sample sizes).
#pragma once

#include <cmath>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <cstdint>
#include <cstring>

namespace gankernels {

constexpr int kNoiseLanes = 16;  // Philox counters generated together (= 64 normals, one group)

#if defined(__AVX2__)
// lo and hi 32-bit halves of the 8 products m * c (AVX2 multiplies even lanes only: two passes).
inline void mulhilo8(__m256i m, __m256i c, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(m, c);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(m, 32), _mm256_srli_epi64(c, 32));
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}
#endif

// Four uniform words per lane for the counters ctr0 .. ctr0 + kNoiseLanes - 1.
inline void philox_lanes(uint64_t ctr0, uint32_t step, uint64_t seed, uint32_t out[4][kNoiseLanes]) {
#if defined(__AVX2__)
  const __m256i m0 = _mm256_set1_epi32((int)0xD2511F53u), m1 = _mm256_set1_epi32((int)0xCD9E8D57u);
  for (int h = 0; h < kNoiseLanes; h += 8) {
    const uint64_t b = ctr0 + (uint64_t)h;
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)b), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    // the low word never wraps inside a group: ctr0 is a multiple of 16
    __m256i c1 = _mm256_set1_epi32((int)(uint32_t)(b >> 32));
    __m256i c2 = _mm256_set1_epi32((int)step);
    __m256i c3 = _mm256_setzero_si256();
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      mulhilo8(m0, c0, hi0, lo0);
      mulhilo8(m1, c2, hi1, lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
      c1 = lo1;
      c3 = lo0;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    _mm256_storeu_si256((__m256i*)(out[0] + h), c0);
    _mm256_storeu_si256((__m256i*)(out[1] + h), c1);
    _mm256_storeu_si256((__m256i*)(out[2] + h), c2);
    _mm256_storeu_si256((__m256i*)(out[3] + h), c3);
  }
#else
  for (int l = 0; l < kNoiseLanes; ++l) {
    const uint64_t b = ctr0 + (uint64_t)l;
    uint32_t c0 = (uint32_t)b, c1 = (uint32_t)(b >> 32), c2 = step, c3 = 0u;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      const uint64_t p0 = (uint64_t)0xD2511F53u * c0;
      const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
      const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
      const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
      c1 = (uint32_t)p1;
      c3 = (uint32_t)p0;
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0][l] = c0;
    out[1][l] = c1;
    out[2][l] = c2;
    out[3][l] = c3;
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
  const int32_t qi = (int32_t)q & 3;  // q in 0..4; 4 -> 0
  s = qi == 0 ? sf : (qi == 1 ? cf : (qi == 2 ? -sf : -cf));
  c = qi == 0 ? cf : (qi == 1 ? -sf : (qi == 2 ? -cf : sf));
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
  uint32_t words[4][kNoiseLanes];
  alignas(32) float buf[kGroup];
  const int64_t end = e0 + n;
  for (int64_t g = e0 - (e0 % kGroup); g < end; g += kGroup) {
    philox_lanes((uint64_t)(g / kGroup) * kNoiseLanes, step, seed, words);
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
