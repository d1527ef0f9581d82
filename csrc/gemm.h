// Single-precision tile GEMM on AVX-512 for the engine's tile products.
//
// Formula: row-major C[m x n] = alpha * op(A) op(B) + beta * C, op(A) [m x k], op(B) [k x n] (the
// contract of engine.h's mm(); beta == 0 ignores C's content, NaN included, as BLAS does).
//
// Why: the BLAS that PyTorch's x86 wheels ship (MKL) runs its AVX2 kernels on AMD CPUs, half the
// vector width of a Zen 4 / Zen 5 core; this kernel uses the 512-bit FMA units on any AVX-512 CPU.
// Measured in bench/RESULTS.md ("tile GEMM on AVX-512").
//
// How (the classic packed-panel scheme): B is packed, per block of KC rows and NC columns, into
// panels of 32 columns (two zmm registers, zero-padded), A into panels of MR = 12 rows; the micro-kernel
// keeps a 12 x 32 block of C in 24 zmm accumulators and does, per step of k, two vector loads of B,
// twelve broadcasts of A and 24 FMAs.  Sums over k run in order within a KC block (fp32 FMA), so the
// rounding is that of a plain dot product, as in BLAS.  Edges use masked loads and stores.
//
// Memory: per thread, the packed B block (KC x NC floats, 512 KB) and A panel block (m x KC,
// m <= the tile), reused across calls.  Limits: float only (double goes to BLAS); built only with
// AVX-512F (otherwise mm() uses BLAS); GANKERNELS_GEMM=blas at import selects BLAS for A/B checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#define GANKERNELS_HAVE_AVX512_GEMM 1
#endif

namespace gankernels {

#if defined(GANKERNELS_HAVE_AVX512_GEMM)

inline bool avx512_gemm_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("GANKERNELS_GEMM");
    return !(v != nullptr && std::strcmp(v, "blas") == 0);
  }();
  return on;
}

namespace gemm512 {

constexpr int64_t kMR = 12, kNR = 32, kKC = 256, kNC = 512;

// In-register 16 x 16 transpose: on return r[c][i] is the input r[i][c].
inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4 i + c], 128-bit lane k: rows 4 i .. 4 i + 3 of column 4 k + c
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(x0, y0, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(x0, y0, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(x1, y1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(x1, y1, 0xDD);
  }
}

// The mask of the first n lanes of a 16-lane vector (n <= 0: none, n >= 16: all).
inline __mmask16 first_lanes(int64_t n) {
  return (__mmask16)(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : ((1u << n) - 1u));
}

// dst[t * dst_stride + i] = scale * src[i * src_stride + t] for t < len (<= 16) and the lanes i in
// store_mask; lanes i >= rows (rows <= 16) are written as 0: a 16 x 16 block transposed in registers.
inline void transpose_block(const float* src, int64_t src_stride, int64_t rows, int64_t len, float scale,
                            float* dst, int64_t dst_stride, __mmask16 store_mask) {
  __m512 r[16];
  const __mmask16 lm = first_lanes(len);
  for (int i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(lm, src + i * src_stride) : _mm512_setzero_ps();
  transpose16(r);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int t = 0; t < len; ++t) _mm512_mask_storeu_ps(dst + t * dst_stride, store_mask, _mm512_mul_ps(vs, r[t]));
}

// Bp[panel p][l][0..31] = op(B)[pc + l][jc + 32 p + 0..31], zero beyond n.
inline void pack_b(bool tb, const float* B, int64_t ldb, int64_t pc, int64_t kc, int64_t jc, int64_t nc, float* Bp) {
  for (int64_t p0 = 0; p0 < nc; p0 += kNR) {
    const int64_t w = std::min(kNR, nc - p0);
    float* dst = Bp + p0 * kc;
    if (!tb) {  // op(B)[l][j] = B[l * ldb + j]: rows of 32 contiguous floats
      const __mmask16 m0 = first_lanes(w), m1 = first_lanes(w - 16);
      for (int64_t l = 0; l < kc; ++l) {
        const float* src = B + (pc + l) * ldb + jc + p0;
        _mm512_store_ps(dst + l * kNR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_store_ps(dst + l * kNR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    } else {  // op(B)[l][j] = B[j * ldb + l]: 16 x 16 blocks of B's rows, transposed
      for (int64_t l0 = 0; l0 < kc; l0 += 16)
        for (int64_t h = 0; h < kNR; h += 16)
          transpose_block(B + (jc + p0 + h) * ldb + pc + l0, ldb, std::clamp<int64_t>(w - h, 0, 16),
                          std::min<int64_t>(16, kc - l0), 1.0f, dst + l0 * kNR + h, kNR, 0xFFFF);
    }
  }
}

// Ap[panel q][l][0..11] = alpha * op(A)[12 q + 0..11][pc + l], zero beyond m.
inline void pack_a(bool ta, const float* A, int64_t lda, int64_t m, int64_t pc, int64_t kc, float alpha,
                   float* Ap) {
  for (int64_t q0 = 0; q0 < m; q0 += kMR) {
    const int64_t h = std::min(kMR, m - q0);
    float* dst = Ap + q0 * kc;
    if (!ta) {  // op(A)[i][l] = A[i * lda + l]: 12 rows at a time, transposed in 16 x 16 blocks
      for (int64_t l0 = 0; l0 < kc; l0 += 16)
        transpose_block(A + q0 * lda + pc + l0, lda, h, std::min<int64_t>(16, kc - l0), alpha, dst + l0 * kMR, kMR,
                        first_lanes(kMR));
      continue;
    }
    // op(A)[i][l] = A[l * lda + i]: the panel's 12 values of each l are contiguous
    const __mmask16 lm = first_lanes(h), sm = first_lanes(kMR);
    const __m512 va = _mm512_set1_ps(alpha);
    for (int64_t l = 0; l < kc; ++l)
      _mm512_mask_storeu_ps(dst + l * kMR, sm, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(lm, A + (pc + l) * lda + q0)));
  }
}

// C[0..h)[0..w) (row stride ldc) = acc + (first ? beta * C : C), for one 12 x 32 block.
inline void micro_kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc, int64_t h, int64_t w,
                         bool first, float beta) {
  __m512 c0[kMR], c1[kMR];
  for (int r = 0; r < kMR; ++r) {
    c0[r] = _mm512_setzero_ps();
    c1[r] = _mm512_setzero_ps();
  }
  for (int64_t l = 0; l < kc; ++l) {
    const __m512 b0 = _mm512_load_ps(Bp + l * kNR), b1 = _mm512_load_ps(Bp + l * kNR + 16);
    const float* a = Ap + l * kMR;
    for (int r = 0; r < kMR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
  }
  const __mmask16 m0 = first_lanes(w), m1 = first_lanes(w - 16);
  const __m512 vb = _mm512_set1_ps(beta);
  for (int r = 0; r < kMR; ++r) {
    if (r >= h) break;
    float* c = C + r * ldc;
    __m512 o0 = c0[r], o1 = c1[r];
    if (!first) {
      o0 = _mm512_add_ps(o0, _mm512_maskz_loadu_ps(m0, c));
      o1 = _mm512_add_ps(o1, _mm512_maskz_loadu_ps(m1, c + 16));
    } else if (beta != 0.0f) {
      o0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), o0);
      o1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), o1);
    }
    _mm512_mask_storeu_ps(c, m0, o0);
    _mm512_mask_storeu_ps(c + 16, m1, o1);
  }
}

struct Scratch {
  float* b = nullptr;
  std::vector<float> a;
  Scratch() { b = static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKC * kNC)); }
  ~Scratch() { std::free(b); }
};

}  // namespace gemm512

inline void gemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                        const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  using namespace gemm512;
  thread_local Scratch s;
  const int64_t mp = (m + kMR - 1) / kMR * kMR;
  if ((int64_t)s.a.size() < mp * kKC + 16) s.a.resize(mp * kKC + 16);
  float* Ap = s.a.data();
  for (int64_t pc = 0; pc < k; pc += kKC) {  // A packed once per block of k, B per block of k and n
    const int64_t kc = std::min(kKC, k - pc);
    pack_a(ta, A, lda, m, pc, kc, alpha, Ap);
    for (int64_t jc = 0; jc < n; jc += kNC) {
      const int64_t nc = std::min(kNC, n - jc);
      pack_b(tb, B, ldb, pc, kc, jc, nc, s.b);
      for (int64_t q0 = 0; q0 < m; q0 += kMR)
        for (int64_t p0 = 0; p0 < nc; p0 += kNR)
          micro_kernel(kc, Ap + q0 * kc, s.b + p0 * kc, C + q0 * ldc + jc + p0, ldc, std::min(kMR, m - q0),
                       std::min(kNR, nc - p0), pc == 0, beta);
    }
  }
}

#endif  // GANKERNELS_HAVE_AVX512_GEMM

}  // namespace gankernels
