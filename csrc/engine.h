// The CPU pairwise engine: one tiled reduction over pairs (x_i, y_j) that never
// materialises anything N x M.
//
// For a tile of BI rows of x and BJ rows of y it computes z (radial: the
// clamped expansion ||a||^2 + ||b||^2 - 2 a.b with the dot products as a small
// BLAS GEMM on the tile, or exact differences for D <= kSmallD; dot kernels:
// a.b), evaluates phi / phi' / phi'' of the family while the tile is in cache,
// and feeds what the job asks for into row-side outputs (indexed by i) and
// column-side outputs (indexed by j):
//
//   sum   row: S_ic += sum_j k_ij Wr_jc           col: S'_jc += sum_i k_ij Wc_ic
//         (sum_sq: the same sums of k_ij^2 too, from the same tile: an elementwise square and one more
//          matrix-vector product per weight column)
//   flow  row: F_i  += sum_j p_ij grad_1 k_ij    col: F'_j  += sum_i q_ij grad_2 k_ij
//         with p_ij = Ar_i . Br_j and q_ij = Ac_i . Bc_j
//   hvp   (Hessian-vector terms of kflow_backward, docs/ENGINE.md) gx, ga (row), gy, gb (col)
//
// Self mode (y is x): only tiles J >= I are visited; an off-diagonal tile feeds
// both its row side and, mirrored, its column side into the same per-point
// outputs, a diagonal tile feeds its row side only.  That covers every ordered
// pair once and halves the work of symmetric sums (the XX and YY terms of MMD).
//
// Parallelism and determinism: the list of tiles is cut into one contiguous
// range per thread (at::parallel_for); each thread accumulates into its own
// full-size buffer, and the buffers are summed in thread order at the end.
// The same inputs and thread count give bitwise the same result.
// Memory: O(threads * (N + M) * (D + C)) plus per-thread tile scratch.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "families.h"
#include "gemm.h"

namespace gankernels {

constexpr int64_t kTileI = 128;
constexpr int64_t kTileJ = 256;
constexpr int64_t kSmallD = 8;

// Tile GEMMs: float32 on an AVX-512 build goes to gemm.h's micro-kernel (unless GANKERNELS_GEMM=blas);
// the rest to the Fortran BLAS that libtorch_cpu exports (MKL in the x86 wheels; single-threaded inside
// our parallel region).  The symbols are weak: where a torch build does not export them, a plain loop
// GEMM is used instead.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*) __attribute__((weak));
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*) __attribute__((weak));
}

template <typename T>
inline void loop_mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
                    const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* c = C + i * ldc;
    for (int64_t j = 0; j < n; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    for (int64_t l = 0; l < k; ++l) {
      const T a = alpha * (ta ? A[l * lda + i] : A[i * lda + l]);
      if (tb) {
        for (int64_t j = 0; j < n; ++j) c[j] += a * B[j * ldb + l];
      } else {
        const T* b = B + l * ldb;
        for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
      }
    }
  }
}

inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
                      const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k, const double* alpha,
                      const double* a, const int* lda, const double* b, const int* ldb, const double* beta,
                      double* c, const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
template <typename T> inline bool have_blas();
template <> inline bool have_blas<float>() { return sgemm_ != nullptr; }
template <> inline bool have_blas<double>() { return dgemm_ != nullptr; }

constexpr int64_t kGemmMinSide = 16;  // smaller m or n: BLAS (see mm)

// Row-major C[m x n] = alpha * op(A) op(B) + beta * C, op(A) [m x k], op(B) [k x n].
// (Row-major C is column-major C^T = op(B)^T op(A)^T, hence the swapped call.)
template <typename T>
inline void mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (m == 0 || n == 0) return;
#if defined(GANKERNELS_HAVE_AVX512_GEMM)
  if constexpr (std::is_same<T, float>::value) {
    // matrix-vector shapes (a few weight columns or rows) stay on BLAS where there is one: the 12 x 32
    // micro-tile would mostly multiply padding
    if (k > 0 && avx512_gemm_enabled() && ((m >= kGemmMinSide && n >= kGemmMinSide) || !have_blas<T>())) {
      gemm_avx512(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
      return;
    }
  }
#endif
  if (k == 0 || !have_blas<T>()) {
    loop_mm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const char tA = tb ? 'T' : 'N', tB = ta ? 'T' : 'N';
  const int im = (int)n, in = (int)m, ik = (int)k, ila = (int)ldb, ilb = (int)lda, ilc = (int)ldc;
  blas_gemm(&tA, &tB, &im, &in, &ik, &alpha, B, &ila, A, &ilb, &beta, C, &ilc);
}

template <typename T>
struct Job {
  // inputs, contiguous, in the accumulation type
  const T* X = nullptr;
  const T* Y = nullptr;  // == X in self mode
  // Radial kernels: X and Y are shifted by one common point (translation invariance keeps every output);
  // X0 / Y0 are the unshifted points, used for the pairs that are computed by exact differences.
  // Null: the same as X / Y.
  const T* X0 = nullptr;
  const T* Y0 = nullptr;
  int64_t N = 0, M = 0, D = 0;
  bool self = false;
  // sum
  const T* sum_wr = nullptr;  // [M, Cs] -> sum_row [N, Cs]
  const T* sum_wc = nullptr;  // [N, Cs] -> sum_col [M, Cs]
  int64_t Cs = 0;
  bool sum_sq = false;  // also sum_sq_row / sum_sq_col: the sums of k_ij^2 with the same weights
  // flow
  const T *flow_ar = nullptr, *flow_br = nullptr;  // row: p = ar_i . br_j -> flow_row [N, D]
  const T *flow_ac = nullptr, *flow_bc = nullptr;  // col: q = ac_i . bc_j -> flow_col [M, D]
  int64_t Cf = 0;
  // hvp (not in self mode)
  const T* H = nullptr;  // [N, D]
  const T *hvp_a = nullptr, *hvp_b = nullptr;  // [N, Ch], [M, Ch]
  int64_t Ch = 0;
  bool hvp_x = false, hvp_y = false, hvp_ga = false, hvp_gb = false;
};

// Per-thread output buffers.  In self mode the column-side outputs alias the row-side ones.
template <typename T>
struct Outputs {
  T *sum_row = nullptr, *sum_col = nullptr, *flow_row = nullptr, *flow_col = nullptr;
  T *gx = nullptr, *gy = nullptr, *ga = nullptr, *gb = nullptr;
  T *sum_sq_row = nullptr, *sum_sq_col = nullptr;
};

// Scratch for one tile.
template <typename T>
struct Scratch {
  std::vector<T> z, v, d1, d2, tmp, p, q, w, hy, yt, rs;
  std::vector<int32_t> close;  // radial: flat indices i * bj + j of the tile's close pairs (see tile_z)
  std::vector<T> cw;           // the weights of the close pairs, taken out of a coefficient tile
  explicit Scratch(int64_t D) {
    const int64_t t = kTileI * kTileJ;
    z.resize(2 * t);  // twice a tile: the score backward's stacked dots (tile_z's dots_in_z)
    v.resize(t); d1.resize(t); d2.resize(t); tmp.resize(t);
    p.resize(t); q.resize(t); w.resize(t); hy.resize(t);
    yt.resize(kTileJ * std::max<int64_t>(D, 1));
    rs.resize(std::max(kTileI, kTileJ));
    close.reserve(std::max(kTileI, kTileJ));
  }
};

// Pairs whose squared distance is below kClose times |a|^2 + |b|^2 (of the shifted points) are "close":
// there the expansion |a|^2 + |b|^2 - 2 a.b and the factored flow 2 a sum_j w_j - 2 sum_j w_j b_j lose
// more than a few bits to cancellation, so tile_z recomputes their z from exact differences of the
// unshifted points and the flows add their terms pair by pair (take_close / add_close_terms).  Self
// pairs and duplicates (z = 0) are always close, so their zero flow is exactly zero.
template <typename T> constexpr T close_ratio() { return T(1) / T(16); }

// |a|^2 accumulated in double.
template <typename T>
inline double sqnorm(const T* a, int64_t D) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < D; ++d) s += static_cast<double>(a[d]) * static_cast<double>(a[d]);
  return s;
}

template <typename T>
inline T exact_sqdist(const T* a, const T* b, int64_t D) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (int64_t d = 0; d < D; ++d) { const T u = a[d] - b[d]; acc += u * u; }
  return acc;
}

// Row i of a tile: the close pairs get z from exact differences of the unshifted points and are listed.
template <typename T>
inline void recompute_close_row(const Job<T>& job, const double* xn, const double* yn, int64_t i0, int64_t i,
                                int64_t j0, int64_t bj, const T* X0i, const T* Y0j, Scratch<T>& s) {
  const int64_t D = job.D;
  const double kClose = close_ratio<double>();
  T* zr = s.z.data() + i * bj;
  const double a = xn[i0 + i];
  const double* b = yn + j0;
  for (int64_t j = 0; j < bj; ++j) {
    if (static_cast<double>(zr[j]) > kClose * (a + b[j])) continue;
    zr[j] = exact_sqdist(X0i + i * D, Y0j + j * D, D);
    s.close.push_back(static_cast<int32_t>(i * bj + j));
  }
}

// out[i, j] = A_i . B_j for a tile of bi rows of A and bj rows of B (ldo = bj): a BLAS GEMM, or for
// D <= kSmallD plain loops over Bt = B^T [D, bj] (tile_z leaves the tile's y rows transposed in s.yt).
template <typename T>
void tile_dots(const T* A, const T* B, const T* Bt, int64_t bi, int64_t bj, int64_t D, T* out) {
  if (D > kSmallD) {
    mm<T>(false, true, bi, bj, D, T(1), A, D, B, D, T(0), out, bj);
    return;
  }
  for (int64_t i = 0; i < bi; ++i) {
    T* o = out + i * bj;
    std::fill(o, o + bj, T(0));
    for (int64_t d = 0; d < D; ++d) {
      const T a = A[i * D + d];
      const T* b = Bt + d * bj;
      for (int64_t j = 0; j < bj; ++j) o[j] += a * b[j];
    }
  }
}

// z_ij for a tile (ldz = bj); radial kernels also list the close pairs in s.close.  dots_in_z (D > kSmallD
// only): the caller has already put X_i . Y_j into s.z (one GEMM over more rows than X's, e.g. the score
// backward's stacked [X; G]), so only the expansion and the close pairs are left.
template <typename T>
void tile_z(const Job<T>& job, bool radial, const double* xn, const double* yn, int64_t i0, int64_t bi,
            int64_t j0, int64_t bj, Scratch<T>& s, bool dots_in_z = false) {
  const int64_t D = job.D;
  const T* Xi = job.X + i0 * D;
  const T* Yj = job.Y + j0 * D;
  const T* X0i = (job.X0 ? job.X0 : job.X) + i0 * D;
  const T* Y0j = (job.Y0 ? job.Y0 : job.Y) + j0 * D;
  T* z = s.z.data();
  s.close.clear();
  if (D <= kSmallD) {
    T* yt = s.yt.data();  // [D, bj]
    for (int64_t j = 0; j < bj; ++j)
      for (int64_t d = 0; d < D; ++d) yt[d * bj + j] = Yj[j * D + d];
    if (!radial) return tile_dots(Xi, Yj, yt, bi, bj, D, z);
    for (int64_t i = 0; i < bi; ++i) {  // exact differences: no expansion for small D
      T* zr = z + i * bj;
      std::fill(zr, zr + bj, T(0));
      for (int64_t d = 0; d < D; ++d) {
        const T a = Xi[i * D + d];
        const T* yr = yt + d * bj;
        for (int64_t j = 0; j < bj; ++j) { const T u = a - yr[j]; zr[j] += u * u; }
      }
    }
  } else {
    if (!dots_in_z) mm<T>(false, true, bi, bj, D, T(1), Xi, D, Yj, D, T(0), z, bj);
    if (!radial) return;
    // One pass: z = |a|^2 + |b|^2 - 2 a.b with the norms (doubles) and the sum in double, so the dot
    // products' rounding is the only cancellation error left; the same pass finds the close pairs
    // (NaN / inf from overflowing norms fail the comparison and count as close).
    const double kClose = close_ratio<double>();
    for (int64_t i = 0; i < bi; ++i) {
      T* zr = z + i * bj;
      const double a = xn[i0 + i];
      const double* b = yn + j0;
      int64_t close = 0;
      for (int64_t j = 0; j < bj; ++j) {
        const double n2 = a + b[j];
        const double e = n2 - 2.0 * static_cast<double>(zr[j]);
        close += !(e > kClose * n2);
        zr[j] = static_cast<T>(e < 0.0 ? 0.0 : e);  // NaN-preserving clamp
      }
      if (close) recompute_close_row(job, xn, yn, i0, i, j0, bj, X0i, Y0j, s);
    }
    return;
  }
  if (!radial) return;
  for (int64_t i = 0; i < bi; ++i) recompute_close_row(job, xn, yn, i0, i, j0, bj, X0i, Y0j, s);
}

// Moves the close pairs' entries of the coefficient tile W [bi x bj] into s.cw (W keeps zeros there).
template <typename T>
void take_close(T* W, Scratch<T>& s) {
  s.cw.resize(s.close.size());
  for (size_t k = 0; k < s.close.size(); ++k) {
    s.cw[k] = W[s.close[k]];
    W[s.close[k]] = T(0);
  }
}

// The close pairs' flow terms by exact differences: row side out_i += 2 w_ij (x_i - y_j),
// column side (col = true) out_j += 2 w_ij (y_j - x_i); X0 / Y0 are the tile's unshifted rows.
template <typename T>
void add_close_terms(const Scratch<T>& s, int64_t bj, bool col, const T* X0, const T* Y0, int64_t D, T* out) {
  for (size_t k = 0; k < s.close.size(); ++k) {
    const T w = T(2) * s.cw[k];
    if (w == T(0)) continue;
    const int64_t i = s.close[k] / bj, j = s.close[k] % bj;
    const T* a = col ? Y0 + j * D : X0 + i * D;
    const T* b = col ? X0 + i * D : Y0 + j * D;
    T* o = out + (col ? j : i) * D;
    for (int64_t d = 0; d < D; ++d) o[d] += w * (a[d] - b[d]);
  }
}

// w[i, j] = sum_c A[i, c] B[j, c] for the tile (ldw = bj).
template <typename T>
void pair_weights(const T* A, const T* B, int64_t C, int64_t i0, int64_t bi, int64_t j0, int64_t bj, T* w) {
  if (C == 1) {
    for (int64_t i = 0; i < bi; ++i) {
      const T a = A[i0 + i];
      const T* b = B + j0;
      T* wr = w + i * bj;
      for (int64_t j = 0; j < bj; ++j) wr[j] = a * b[j];
    }
  } else if (C == 2) {
    for (int64_t i = 0; i < bi; ++i) {
      const T a0 = A[(i0 + i) * 2], a1 = A[(i0 + i) * 2 + 1];
      const T* b = B + j0 * 2;
      T* wr = w + i * bj;
      for (int64_t j = 0; j < bj; ++j) wr[j] = a0 * b[2 * j] + a1 * b[2 * j + 1];
    }
  } else if (C <= 4) {  // a few columns: plain loops beat a GEMM with k = C
    for (int64_t i = 0; i < bi; ++i) {
      T* wr = w + i * bj;
      const T* a = A + (i0 + i) * C;
      const T* b = B + j0 * C;
      for (int64_t j = 0; j < bj; ++j) {
        T acc = T(0);
        for (int64_t c = 0; c < C; ++c) acc += a[c] * b[j * C + c];
        wr[j] = acc;
      }
    }
  } else {
    mm<T>(false, true, bi, bj, C, T(1), A + i0 * C, C, B + j0 * C, C, T(0), w, bj);
  }
}

// out_rows[i] += alpha_x * rowsum_j(W)_i * P_i + alpha * (W Q_J)_i  (the flow-shaped update)
// P: the row points [.., D] for the row side, Q: the other side's points.
// exact: sum W_rc (P_r - Q_c) pair by pair instead of the factored GEMM form, whose cancellation
// error eps |P| |W| is unbounded for kernels whose phi' blows up at r = 0 (the kinked families).
template <typename T>
void flow_update(const T* W, int64_t bi, int64_t bj, bool transposed, bool radial, const T* Prow,
                 const T* Qcol, int64_t D, T* out, T* rs, bool exact = false) {
  // transposed: W is [bj x bi] viewed as the tile of the other orientation
  const int64_t rows = transposed ? bj : bi, cols = transposed ? bi : bj;
  if (radial && exact) {
    for (int64_t r = 0; r < rows; ++r) {
      const T* pr = Prow + r * D;
      T* o = out + r * D;
      for (int64_t c = 0; c < cols; ++c) {
        const T w = T(2) * (transposed ? W[c * rows + r] : W[r * cols + c]);
        if (w == T(0)) continue;
        const T* qc = Qcol + c * D;
        for (int64_t d = 0; d < D; ++d) o[d] += w * (pr[d] - qc[d]);
      }
    }
    return;
  }
  if (radial) {
    for (int64_t r = 0; r < rows; ++r) rs[r] = T(0);
    if (!transposed) {
      for (int64_t r = 0; r < rows; ++r) {
        T acc = T(0);
        const T* wr = W + r * cols;
        for (int64_t c = 0; c < cols; ++c) acc += wr[c];
        rs[r] = acc;
      }
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        const T* wr = W + c * rows;
        for (int64_t r = 0; r < rows; ++r) rs[r] += wr[r];
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const T f = T(2) * rs[r];
      const T* pr = Prow + r * D;
      T* o = out + r * D;
      for (int64_t d = 0; d < D; ++d) o[d] += f * pr[d];
    }
  }
  const T alpha = radial ? T(-2) : T(1);
  // out[rows x D] += alpha * op(W)[rows x cols] * Qcol[cols x D]
  mm<T>(transposed, false, rows, D, cols, alpha, W, transposed ? rows : cols, Qcol, D, T(1), out, D);
}

// One side of a tile's flow-shaped update (flow_update), summed the way the family needs: kinked families
// pair by pair from the unshifted points; the others in the factored form on the shifted points, plus the
// close pairs' exact terms (`split`: take_close moved them out of W).  col: the column side (out rows are j).
template <typename T>
void tile_flow(const T* W, int64_t bi, int64_t bj, bool col, bool radial, bool kinked, bool split, const T* Xi,
               const T* Yj, const T* X0i, const T* Y0j, int64_t D, T* out, Scratch<T>& s) {
  if (kinked) {
    flow_update(W, bi, bj, col, radial, col ? Y0j : X0i, col ? X0i : Y0j, D, out, s.rs.data(), true);
    return;
  }
  flow_update(W, bi, bj, col, radial, col ? Yj : Xi, col ? Xi : Yj, D, out, s.rs.data());
  if (split) add_close_terms(s, bj, col, X0i, Y0j, D, out);
}

// Where a tile is: rows [i0, i0 + bi) of X against rows [j0, j0 + bj) of Y; `mirror`: the column side
// takes part too (not on a diagonal tile of self mode).
struct TileSpan {
  int64_t i0, bi, j0, bj;
  bool mirror;
};

// The tile's points: shifted (the factored forms) and unshifted (exact differences).
template <typename T>
struct TilePoints {
  const T *Xi, *Yj, *X0i, *Y0j;
  TilePoints(const Job<T>& job, const TileSpan& t)
      : Xi(job.X + t.i0 * job.D), Yj(job.Y + t.j0 * job.D),
        X0i((job.X0 ? job.X0 : job.X) + t.i0 * job.D), Y0j((job.Y0 ? job.Y0 : job.Y) + t.j0 * job.D) {}
};

// How a tile's flow-shaped terms are summed: radial or dot family; kinked families pair by pair from the
// unshifted points; `split`: the close pairs' terms by exact differences (take_close / add_close_terms).
struct FlowMode {
  bool radial, kinked, split;
};

// sum row: S_ic += sum_j k_ij Wr_jc; col (mirrored): S'_jc += sum_i k_ij Wc_ic; with sum_sq, the same sums of
// k_ij^2 (its tile goes to s.w, free until the flow terms).  k_ij is in s.v.
template <typename T>
void tile_sums(const Job<T>& job, const TileSpan& t, Scratch<T>& s, const Outputs<T>& o) {
  const int64_t bi = t.bi, bj = t.bj, n = bi * bj;
  const T* v = s.v.data();
  T* vsq = nullptr;
  if (job.sum_sq) {
    vsq = s.w.data();
    for (int64_t e = 0; e < n; ++e) vsq[e] = v[e] * v[e];
  }
  // A few weight columns go one matrix-vector product each (strided by C): BLAS's GEMM with n = C of
  // 2..4 is slower than C calls of its n = 1 path (bench/RESULTS.md, "Design measurements").
  const int64_t C = job.Cs, per_call = C <= 4 ? 1 : C;
  for (int64_t c = 0; c < C; c += per_call) {
    if (job.sum_wr) {
      const T* wr = job.sum_wr + t.j0 * C + c;
      mm<T>(false, false, bi, per_call, bj, T(1), v, bj, wr, C, T(1), o.sum_row + t.i0 * C + c, C);
      if (vsq) mm<T>(false, false, bi, per_call, bj, T(1), vsq, bj, wr, C, T(1), o.sum_sq_row + t.i0 * C + c, C);
    }
    if (job.sum_wc && t.mirror) {
      const T* wc = job.sum_wc + t.i0 * C + c;
      mm<T>(true, false, bj, per_call, bi, T(1), v, bj, wc, C, T(1), o.sum_col + t.j0 * C + c, C);
      if (vsq) mm<T>(true, false, bj, per_call, bi, T(1), vsq, bj, wc, C, T(1), o.sum_sq_col + t.j0 * C + c, C);
    }
  }
}

// flow row: F_i += sum_j p_ij grad_1 k_ij with p = Ar_i . Br_j; col (mirrored): F'_j += sum_i q_ij grad_2 k_ij
// with q = Ac_i . Bc_j.  phi' is in s.d1; the coefficient tile is built in s.w.
template <typename T>
void tile_flows(const Job<T>& job, const TileSpan& t, const TilePoints<T>& pts, const FlowMode& mode, Scratch<T>& s,
                const Outputs<T>& o) {
  const int64_t D = job.D, n = t.bi * t.bj;
  T* w = s.w.data();
  const T* d1 = s.d1.data();
  auto coefficients = [&](const T* A, const T* B) {
    pair_weights(A, B, job.Cf, t.i0, t.bi, t.j0, t.bj, w);
    for (int64_t e = 0; e < n; ++e) w[e] *= d1[e];
    if (mode.split) take_close(w, s);
  };
  if (job.flow_ar) {
    coefficients(job.flow_ar, job.flow_br);
    // row side: grad_1 k = radial: 2 phi' (x_i - y_j); dot: phi' y_j
    tile_flow(w, t.bi, t.bj, false, mode.radial, mode.kinked, mode.split, pts.Xi, pts.Yj, pts.X0i, pts.Y0j, D,
              o.flow_row + t.i0 * D, s);
  }
  if (job.flow_ac && t.mirror) {
    if (job.flow_ac != job.flow_ar || job.flow_bc != job.flow_br) coefficients(job.flow_ac, job.flow_bc);
    // col side: grad_2 k = radial: 2 phi' (y_j - x_i); dot: phi' x_i
    tile_flow(w, t.bi, t.bj, true, mode.radial, mode.kinked, mode.split, pts.Xi, pts.Yj, pts.X0i, pts.Y0j, D,
              o.flow_col + t.j0 * D, s);
  }
}

// s.hy = h_ij = h_i . grad_1 z_ij: radial 2 (h_i . x_i - h_i . y_j), the close pairs from exact differences;
// dot kernels h_i . y_j.  hx: h_i . x_i (radial).
template <typename T>
void tile_h_dots(const Job<T>& job, const TileSpan& t, const TilePoints<T>& pts, bool radial, const T* hx,
                 Scratch<T>& s) {
  const int64_t D = job.D, bj = t.bj;
  const T* Hi = job.H + t.i0 * D;
  T* hy = s.hy.data();
  tile_dots(Hi, pts.Yj, s.yt.data(), t.bi, bj, D, hy);
  if (!radial) return;
  for (int64_t i = 0; i < t.bi; ++i) {
    const T hxi = hx[t.i0 + i];
    T* r = hy + i * bj;
    for (int64_t j = 0; j < bj; ++j) r[j] = T(2) * (hxi - r[j]);
  }
  for (int32_t e : s.close) {
    const int64_t i = e / bj, j = e % bj;
    const T* hr = Hi + i * D;
    const T *a = pts.X0i + i * D, *b = pts.Y0j + j * D;
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < D; ++d) acc += hr[d] * (a[d] - b[d]);
    hy[e] = T(2) * acc;
  }
}

// Hessian-vector terms of kflow_backward (docs/ENGINE.md): ga, gb (the pair weights' factors), gx (row), gy
// (col).  phi', phi'' are in s.d1, s.d2.
template <typename T>
void tile_hvp(const Job<T>& job, const TileSpan& t, const TilePoints<T>& pts, const FlowMode& mode, const T* hx,
              Scratch<T>& s, const Outputs<T>& o) {
  const int64_t D = job.D, C = job.Ch, bi = t.bi, bj = t.bj, n = bi * bj;
  const T* Hi = job.H + t.i0 * D;
  tile_h_dots(job, t, pts, mode.radial, hx, s);
  const T* hy = s.hy.data();
  T* p = s.p.data();
  pair_weights(job.hvp_a, job.hvp_b, C, t.i0, bi, t.j0, bj, p);
  const T* d1 = s.d1.data();
  const T* d2 = s.d2.data();
  if (job.hvp_ga || job.hvp_gb) {
    T* e = s.w.data();
    for (int64_t k = 0; k < n; ++k) e[k] = d1[k] * hy[k];
    if (job.hvp_ga) mm<T>(false, false, bi, C, bj, T(1), e, bj, job.hvp_b + t.j0 * C, C, T(1), o.ga + t.i0 * C, C);
    if (job.hvp_gb) mm<T>(true, false, bj, C, bi, T(1), e, bj, job.hvp_a + t.i0 * C, C, T(1), o.gb + t.j0 * C, C);
  }
  if (!job.hvp_x && !job.hvp_y) return;
  T* c = s.q.data();     // c_ij = p phi'' h
  T* dd = s.tmp.data();  // d_ij = p phi'
  for (int64_t k = 0; k < n; ++k) {
    c[k] = p[k] * d2[k] * hy[k];
    dd[k] = p[k] * d1[k];
  }
  if (mode.split) take_close(c, s);
  if (job.hvp_x) {
    T* gx = o.gx + t.i0 * D;
    // radial: 2 x_i sum c - 2 c Y + 2 h_i sum d ; dot: c Y
    tile_flow(c, bi, bj, false, mode.radial, mode.kinked, mode.split, pts.Xi, pts.Yj, pts.X0i, pts.Y0j, D, gx, s);
    if (mode.radial) {
      for (int64_t i = 0; i < bi; ++i) {
        T acc = T(0);
        for (int64_t j = 0; j < bj; ++j) acc += dd[i * bj + j];
        const T f = T(2) * acc;
        for (int64_t d = 0; d < D; ++d) gx[i * D + d] += f * Hi[i * D + d];
      }
    }
  }
  if (job.hvp_y) {
    T* gy = o.gy + t.j0 * D;
    // radial: 2 y_j sum c - 2 c^T X - 2 d^T H ; dot: c^T X + d^T H
    tile_flow(c, bi, bj, true, mode.radial, mode.kinked, mode.split, pts.Xi, pts.Yj, pts.X0i, pts.Y0j, D, gy, s);
    mm<T>(true, false, bj, D, bi, mode.radial ? T(-2) : T(1), dd, bj, Hi, D, T(1), gy, D);
  }
}

// One tile: z (tile_z), phi / phi' / phi'' as the job needs them, then each of the job's parts.
template <typename T>
void process_tile(const Job<T>& job, const Family<T>& fam, const double* xn, const double* yn, const T* hx,
                  const TileSpan& t, Scratch<T>& s, const Outputs<T>& o) {
  const bool radial = fam.radial();
  const bool want_sum = job.sum_wr || job.sum_wc;
  const bool want_flow = job.flow_ar || job.flow_ac;
  const bool want_hvp = job.H != nullptr;
  tile_z(job, radial, xn, yn, t.i0, t.bi, t.j0, t.bj, s);
  fam.eval(s.z.data(), t.bi * t.bj, want_sum ? s.v.data() : nullptr,
           (want_flow || want_hvp) ? s.d1.data() : nullptr, want_hvp ? s.d2.data() : nullptr, s.tmp.data());
  const TilePoints<T> pts(job, t);
  const FlowMode mode{radial, fam.kinked(), radial && !fam.kinked() && !s.close.empty()};
  if (want_sum) tile_sums(job, t, s, o);
  if (want_flow) tile_flows(job, t, pts, mode, s, o);
  if (want_hvp) tile_hvp(job, t, pts, mode, hx, s, o);
}

// Runs `job`; writes the reduced outputs into the given (zero-initialised) tensors' data.
template <typename T>
void run_job(const Job<T>& job, const Family<T>& fam, const Outputs<T>& final_out) {
  const int64_t N = job.N, M = job.M, D = job.D;
  const int64_t nI = (N + kTileI - 1) / kTileI;
  // self mode: tiles of kTileI on both sides so that diagonal tiles are square
  const int64_t tj = job.self ? kTileI : kTileJ;
  const int64_t nJ = (M + tj - 1) / tj;
  std::vector<std::pair<int32_t, int32_t>> tiles;
  tiles.reserve(job.self ? nI * (nI + 1) / 2 : nI * nJ);
  for (int64_t I = 0; I < nI; ++I)
    for (int64_t J = job.self ? I : 0; J < nJ; ++J) tiles.emplace_back(I, J);
  if (tiles.empty()) return;

  // norms and h.x, computed once
  std::vector<double> xn, yn;
  std::vector<T> hx;
  if (fam.radial()) {  // squared norms of the (shifted) points: the expansion and the close-pair test
    xn.resize(N);
    for (int64_t i = 0; i < N; ++i) xn[i] = sqnorm(job.X + i * D, D);
    if (job.self) yn = xn;
    else {
      yn.resize(M);
      for (int64_t j = 0; j < M; ++j) yn[j] = sqnorm(job.Y + j * D, D);
    }
  }
  if (job.H && fam.radial()) {
    hx.resize(N);
    for (int64_t i = 0; i < N; ++i) {
      T a = 0;
      for (int64_t d = 0; d < D; ++d) a += job.H[i * D + d] * job.X[i * D + d];
      hx[i] = a;
    }
  }

  // per-thread buffers: one slab per output kind; in self mode a column-side kind aliases its row-side
  // kind's buffer (`row`: that kind's index, -1 for the others)
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (int64_t)tiles.size()));
  const int64_t Mc = job.self ? N : M;  // rows of column-side outputs
  struct Kind {
    T* Outputs<T>::*out;
    int64_t size;
    int row;
  };
  const std::vector<Kind> kinds = {
      {&Outputs<T>::sum_row, N * job.Cs, -1},    {&Outputs<T>::sum_col, Mc * job.Cs, 0},
      {&Outputs<T>::flow_row, N * D, -1},        {&Outputs<T>::flow_col, Mc * D, 2},
      {&Outputs<T>::gx, N * D, -1},              {&Outputs<T>::gy, M * D, -1},
      {&Outputs<T>::ga, N * job.Ch, -1},         {&Outputs<T>::gb, M * job.Ch, -1},
      {&Outputs<T>::sum_sq_row, N * job.Cs, -1}, {&Outputs<T>::sum_sq_col, Mc * job.Cs, 8}};
  auto aliased = [&](const Kind& k) { return job.self && k.row >= 0; };
  std::vector<std::vector<T>> buffers(threads * kinds.size());
  std::vector<Outputs<T>> outs(threads);
  for (int64_t t = 0; t < threads; ++t) {
    for (size_t k = 0; k < kinds.size(); ++k) {
      if (final_out.*(kinds[k].out) == nullptr || aliased(kinds[k])) continue;
      buffers[t * kinds.size() + k].assign(kinds[k].size, T(0));
      outs[t].*(kinds[k].out) = buffers[t * kinds.size() + k].data();
    }
    for (const Kind& k : kinds)
      if (aliased(k)) outs[t].*(k.out) = outs[t].*(kinds[k.row].out);
  }

  const int64_t ntiles = static_cast<int64_t>(tiles.size());
  const int64_t chunk = (ntiles + threads - 1) / threads;
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    Scratch<T> s(D);
    for (int64_t t = b; t < e; ++t) {
      for (int64_t q = t * chunk; q < std::min(ntiles, (t + 1) * chunk); ++q) {
        const int64_t I = tiles[q].first, J = tiles[q].second;
        const int64_t i0 = I * kTileI, bi = std::min(kTileI, N - i0);
        const int64_t j0 = J * tj, bj = std::min(tj, M - j0);
        const TileSpan span{i0, bi, j0, bj, !job.self || I != J};
        process_tile(job, fam, xn.data(), job.self ? xn.data() : yn.data(), hx.data(), span, s, outs[t]);
      }
    }
  });

  for (size_t k = 0; k < kinds.size(); ++k) {
    T* dst = final_out.*(kinds[k].out);
    if (dst == nullptr || aliased(kinds[k])) continue;
    for (int64_t t = 0; t < threads; ++t) {
      const T* src = buffers[t * kinds.size() + k].data();
      for (int64_t e = 0; e < kinds[k].size; ++e) dst[e] += src[e];
    }
  }
}

}  // namespace gankernels
