// The smoothed-score engine shared by score.cpp (smoothed_score and its backward) and langevin.cpp
// (kde_langevin, the annealed chain that applies the update per row block).
//
//   smoothed_score(x, y, w, sigma)_i = grad_a log sum_j w_j exp(-|a - y_j|^2 / 2 sigma^2) at a = x_i
//                                   = (ybar_i - x_i) / sigma^2,   ybar_i = sum_j p_ij y_j,
//   p_ij = softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2).
//
// score_block: a block of 128 query rows streams over tiles of 256 centres (flash-attention style): the
// tile's squared distances come from the pairwise engine's tile_z (a small GEMM plus exact recomputation
// of near pairs), the logits are exponentiated against a running row maximum, the running normaliser and
// the weighted centre sum ybar are rescaled when the maximum grows, and P Y is another tile GEMM.  Inputs
// are shifted by the mean of y first (translation invariance), so data far from the origin loses nothing
// to the expansion or to ybar - x.  The math: docs/MATH.md (smoothed score).
#pragma once

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <optional>

#include "engine.h"
#include "tensor_utils.h"

namespace gankernels {

inline float exp_acc(float v) { return fast_exp(v); }
inline double exp_acc(double v) { return std::exp(v); }

// Reductions over a row with 8 independent partial results, so that they vectorise
// without reassociation flags.  row_max ignores NaN (a NaN logit still reaches the output through exp).
constexpr int kLanes = 8;
template <typename T>
inline T row_max(const T* a, int64_t n, T init) {
  T part[kLanes];
  for (int l = 0; l < kLanes; ++l) part[l] = init;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] = a[j + l] > part[l] ? a[j + l] : part[l];
  T m = init;
  for (int l = 0; l < kLanes; ++l) m = part[l] > m ? part[l] : m;
  for (; j < n; ++j) m = a[j] > m ? a[j] : m;
  return m;
}
template <typename T>
inline T row_dot(const T* a, const T* b, int64_t n) {  // b == nullptr: sum of a
  T part[kLanes] = {};
  int64_t j = 0;
  if (b) {
    for (; j + kLanes <= n; j += kLanes)
      for (int l = 0; l < kLanes; ++l) part[l] += a[j + l] * b[j + l];
  } else {
    for (; j + kLanes <= n; j += kLanes)
      for (int l = 0; l < kLanes; ++l) part[l] += a[j + l];
  }
  T s = T(0);
  for (int l = 0; l < kLanes; ++l) s += part[l];
  for (; j < n; ++j) s += b ? a[j] * b[j] : a[j];
  return s;
}

// ---------------------------------------------------------------- smoothed score engine

template <typename T>
struct ScoreProblem {
  Job<T> job;             // X: shifted queries [N, D], Y: shifted centres [M, D]
  std::vector<double> xn, yn;  // squared norms: the tile GEMM expansion and tile_z's close-pair test
  const T* logw = nullptr;  // [M] or null (all weights 1)
  T sigma;
  // z / (2 sigma^2) = (z ea) eb and 1 / sigma^2 = sa sb, folded in double: the second factor is 1 unless the
  // coefficient overflows T (tiny sigma), then both are its square root, so that z = 0 gives a logit of exactly
  // 0 and ybar - x = 0 a score of 0 (never inf * 0)
  T ea, eb, sa, sb;

  ScoreProblem(const T* X, const T* Y, int64_t N, int64_t M, int64_t D, double sigma_)
      : sigma(static_cast<T>(sigma_)) {
    split_coefficient(0.5 / (sigma_ * sigma_), std::sqrt(0.5) / sigma_, ea, eb);
    split_coefficient(1.0 / (sigma_ * sigma_), 1.0 / sigma_, sa, sb);
    job.X = X;
    job.Y = Y;
    job.N = N;
    job.M = M;
    job.D = D;
    xn.assign(N, 0.0);
    yn.resize(M);
    for (int64_t j = 0; j < M; ++j) yn[j] = sqnorm(Y + j * D, D);
  }
  void refresh_norms(int64_t i0, int64_t bi) {  // rows of X may have moved (Langevin)
    for (int64_t i = i0; i < i0 + bi; ++i) xn[i] = sqnorm(job.X + i * job.D, job.D);
  }
};

// Online log-sum-exp over all centres for query rows [i0, i0 + bi):
// writes drift = score rows [bi, D] and lse [bi] (lse may be null).
template <typename T>
void score_block(ScoreProblem<T>& sp, int64_t i0, int64_t bi, Scratch<T>& s, T* score, T* lse) {
  const int64_t M = sp.job.M, D = sp.job.D;
  const T ea = sp.ea, eb = sp.eb;  // z / (2 sigma^2) = (z ea) eb
  const T ninf = -std::numeric_limits<T>::infinity();
  sp.refresh_norms(i0, bi);
  T* mrow = s.p.data();
  T* lrow = s.p.data() + kTileI;
  std::fill(mrow, mrow + bi, ninf);
  std::fill(lrow, lrow + bi, T(0));
  std::fill(score, score + bi * D, T(0));  // holds sum_j p_ij y_j until the end
  T* z = s.z.data();
  const bool small_d = D <= kSmallD;
  for (int64_t j0 = 0; j0 < M; j0 += kTileJ) {
    const int64_t bj = std::min(kTileJ, M - j0);
    tile_z(sp.job, /*radial=*/true, sp.xn.data(), sp.yn.data(), i0, bi, j0, bj, s);
    for (int64_t i = 0; i < bi; ++i) {
      T* zr = z + i * bj;
      T mx = ninf;
      if (sp.logw) {
        const T* lw = sp.logw + j0;
        for (int64_t j = 0; j < bj; ++j) zr[j] = lw[j] - (zr[j] * ea) * eb;
      } else {
        for (int64_t j = 0; j < bj; ++j) zr[j] = -((zr[j] * ea) * eb);
      }
      mx = row_max(zr, bj, mx);
      const T mnew = mx > mrow[i] ? mx : mrow[i];
      if (mnew == ninf) {  // no positive weight seen yet in this row
        std::fill(zr, zr + bj, T(0));
        continue;
      }
      const T rescale = exp_acc(mrow[i] - mnew);
      T* acc = score + i * D;
      if (rescale != T(1)) {
        lrow[i] *= rescale;
        for (int64_t d = 0; d < D; ++d) acc[d] *= rescale;
      }
      for (int64_t j = 0; j < bj; ++j) zr[j] = exp_acc(zr[j] - mnew);
      lrow[i] += row_dot<T>(zr, nullptr, bj);
      mrow[i] = mnew;
      if (small_d)  // sum_j p_ij y_j against the transposed centre tile tile_z left in s.yt
        for (int64_t d = 0; d < D; ++d) acc[d] += row_dot<T>(zr, s.yt.data() + d * bj, bj);
    }
    if (!small_d) mm<T>(false, false, bi, D, bj, T(1), z, bj, sp.job.Y + j0 * D, D, T(1), score, D);
  }
  const T sa = sp.sa, sb = sp.sb;  // 1 / sigma^2 = sa sb
  for (int64_t i = 0; i < bi; ++i) {
    const T inv_l = T(1) / lrow[i];
    const T* xr = sp.job.X + (i0 + i) * D;
    T* r = score + i * D;
    for (int64_t d = 0; d < D; ++d) r[d] = ((r[d] * inv_l - xr[d]) * sa) * sb;
    if (lse) lse[i] = mrow[i] + std::log(lrow[i]);
  }
}

struct Shifted {
  at::Tensor x, y, mu;  // x - mu, y - mu in the accumulation type; mu = mean of y
};

inline Shifted shift_by_centre_mean(const at::Tensor& x, const at::Tensor& y, at::ScalarType acc) {
  Shifted s;
  at::Tensor ya = y.to(acc);
  s.mu = ya.mean(0, /*keepdim=*/true);
  s.x = (x.to(acc) - s.mu).contiguous();
  s.y = (ya - s.mu).contiguous();
  return s;
}

inline void check_score_inputs(const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& w, double sigma) {
  check_point_pair(x, y, "x", "y");
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, "sigma must be positive and finite, got ", sigma);
  if (w.has_value()) {
    check_vector(*w, y.size(0), "weights", y, "y");
    TORCH_CHECK_VALUE(!(*w < 0).any().item<bool>(), "weights must be non-negative");
    TORCH_CHECK_VALUE(!(w->sum() == 0).item<bool>(), "weights must not all be zero");
  }
}

}  // namespace gankernels
