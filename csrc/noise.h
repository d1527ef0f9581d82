// Counter-based Gaussian noise for the fused Langevin updates.
//
// Element e of the noise of chain step `step` under `seed` is a pure function of
// (seed, step, e): Philox4x32-10 (Salmon et al., "Parallel random numbers: as
// easy as 1, 2, 3", SC'11) maps the counter (e / 4, e >> 34, step, 0) and the
// 64-bit key `seed` to four uniform 32-bit words, and two Box-Muller transforms
// turn them into four standard normals; element e takes normal e % 4.  So the
// noise does not depend on the thread count or on how rows are split into
// blocks: the same seed gives bitwise the same samples, and different seeds or
// steps give independent streams.
//
// Everything here is written as plain loops over small arrays of lanes so that
// the compiler vectorises it (AVX2: 8 lanes of 32-bit multiplies, the log and
// the sin/cos are short polynomials, no libm calls).  Accuracy: log and sincos
// about 2e-7 relative; uniforms have 24 bits; the smallest uniform used in the
// log is 2^-24, so |normal| <= sqrt(-2 ln 2^-24) = 5.77 (tail mass beyond it:
// 8e-9, i.e. never observed at these sample sizes).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gankernels {

constexpr int kNoiseLanes = 16;  // Philox blocks generated together (= 64 normals)

// Four uniform words per lane for counter blocks blk0 .. blk0 + kNoiseLanes - 1.
inline void philox_lanes(uint64_t blk0, uint32_t step, uint64_t seed, uint32_t out[4][kNoiseLanes]) {
  uint32_t c0[kNoiseLanes], c1[kNoiseLanes], c2[kNoiseLanes], c3[kNoiseLanes];
  for (int l = 0; l < kNoiseLanes; ++l) {
    const uint64_t b = blk0 + (uint64_t)l;
    c0[l] = (uint32_t)b;
    c1[l] = (uint32_t)(b >> 32);
    c2[l] = step;
    c3[l] = 0u;
  }
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    for (int l = 0; l < kNoiseLanes; ++l) {
      const uint64_t p0 = (uint64_t)0xD2511F53u * c0[l];
      const uint64_t p1 = (uint64_t)0xCD9E8D57u * c2[l];
      const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[l] ^ k0;
      const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3[l] ^ k1;
      c1[l] = (uint32_t)p1;
      c3[l] = (uint32_t)p0;
      c0[l] = n0;
      c2[l] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int l = 0; l < kNoiseLanes; ++l) {
    out[0][l] = c0[l];
    out[1][l] = c1[l];
    out[2][l] = c2[l];
    out[3][l] = c3[l];
  }
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

// Standard normals for elements [e0, e0 + n) of (seed, step) into out[0 .. n).
inline void fill_normals(float* out, int64_t e0, int64_t n, uint64_t seed, uint32_t step) {
  constexpr int64_t kPerCall = 4 * kNoiseLanes;
  uint32_t words[4][kNoiseLanes];
  float buf[kPerCall];
  const int64_t end = e0 + n;
  int64_t e = e0 - (e0 % 4);  // first element of e0's Philox block
  while (e < end) {
    philox_lanes((uint64_t)e / 4, step, seed, words);
    for (int l = 0; l < kNoiseLanes; ++l) {
      for (int pr = 0; pr < 2; ++pr) {
        // u1 in (0, 1] for the log, u2 in [0, 1) for the angle
        const float u1 = (float)((words[2 * pr][l] >> 8) + 1u) * 5.9604644775390625e-8f;
        const float u2 = (float)(words[2 * pr + 1][l] >> 8) * 5.9604644775390625e-8f;
        const float r = std::sqrt(-2.0f * noise_log(u1));
        float s, c;
        noise_sincos_turns(u2, s, c);
        buf[4 * l + 2 * pr] = r * c;
        buf[4 * l + 2 * pr + 1] = r * s;
      }
    }
    const int64_t lo = e < e0 ? e0 : e;
    const int64_t hi = e + kPerCall < end ? e + kPerCall : end;
    for (int64_t k = lo; k < hi; ++k) out[k - e0] = buf[k - e];
    e += kPerCall;
  }
}

}  // namespace gankernels
