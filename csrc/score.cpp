// Kernel-smoothed score and fused Langevin updates (CPU).
//
//   smoothed_score(x, y, w, sigma)_i = grad_a log sum_j w_j exp(-|a - y_j|^2 / 2 sigma^2) at a = x_i
//                                   = (ybar_i - x_i) / sigma^2,   ybar_i = sum_j p_ij y_j,
//   p_ij = softmax_j(log w_j - |x_i - y_j|^2 / 2 sigma^2).
//
// What is fused: a block of 128 query rows streams over tiles of 256 centres
// (flash-attention style): the tile's squared distances come from the pairwise
// engine's tile_z (a small GEMM plus exact recomputation of near pairs), the
// logits are exponentiated against a running row maximum, the running
// normaliser and the weighted centre sum ybar are rescaled when the maximum
// grows, and P Y is another tile GEMM.  The row block's score and
// log-normaliser lse_i = log sum_j w_j exp(...) are written at the end.  A query
// 1000 sigma from every centre is fine: the nearest centre has p = 1.
// Backward (first order; recomputes p from lse): with g the incoming gradient,
// gbar_i = g_i . ybar_i, T_ij = g_i . y_j, C_ij = p_ij (T_ij - gbar_i):
//   gx_i = (sum_j C_ij y_j) / sigma^4 - g_i / sigma^2
//   gy_j = (sum_i p_ij g_i) / sigma^2 + (sum_i C_ij (x_i - y_j)) / sigma^4
//   gw_j = (sum_i C_ij / w_j) / sigma^2   (computed without dividing by w_j)
// Translation invariance is used for accuracy: x and y are shifted by the mean
// of y before anything else, so data far from the origin loses nothing to the
// |a|^2 + |b|^2 - 2 a.b expansion or to ybar - x.
//
// Langevin updates: x <- x + eta drift + sqrt(2 eta tau) xi with the
// counter-based noise of noise.h (same seed, same samples, any thread count).
// `langevin_step` is one pass over memory; `kernel_langevin` runs a whole
// chain in one op call, each step one engine pass for the flow field
// sum_j w_j grad k(x_i, c_j) followed by the update; `kde_langevin` runs the
// annealed chain with the score computed and the update applied per row block
// while the block is in cache (a row's score depends only on that row).
//
// Memory: O((N + M) D) plus O(threads (M D + tile)) in the backward; nothing
// N x M is allocated.  Limits: accumulation in fp32 (fp64 for fp64 inputs);
// the noise is fp32 Box-Muller; smoothed_score is differentiable once.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>
#include <tuple>

#include "engine.h"
#include "ops.h"
#include "noise.h"
#include "tensor_utils.h"

namespace gankernels {

inline float exp_acc(float v) { return fast_exp(v); }
inline double exp_acc(double v) { return std::exp(v); }

// Reductions over a row with 8 independent partial results, so that they vectorise
// without reassociation flags.  row_max ignores NaN (a NaN logit still reaches the output through exp).
constexpr int kLanes = 8;
template <typename T>
T row_max(const T* a, int64_t n, T init) {
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
T row_dot(const T* a, const T* b, int64_t n) {  // b == nullptr: sum of a
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

// ---------------------------------------------------------------- Langevin update

constexpr int64_t kNoiseChunk = 256;  // normals generated, then used, while in L1 (2048: ~15 % slower)

// x_out[e] = x_in[e] + eta drift[e] + sqrt(2 eta tau) xi(seed, step, e0 + e) for e in [0, n).
template <typename T>
void langevin_update(T* x_out, const T* x_in, const T* drift, int64_t e0, int64_t n, T eta, T tau, uint64_t seed,
                     uint32_t step) {
  const T scale = std::sqrt(T(2) * eta * tau);
  float xi[kNoiseChunk];
  for (int64_t k0 = 0; k0 < n; k0 += kNoiseChunk) {
    const int64_t len = std::min(kNoiseChunk, n - k0);
    if (scale != T(0)) fill_normals(xi, e0 + k0, len, seed, step);
    else std::fill(xi, xi + len, 0.0f);
    T* o = x_out + k0;
    const T* a = x_in + k0;
    const T* d = drift + k0;
    for (int64_t k = 0; k < len; ++k) o[k] = a[k] + eta * d[k] + scale * (T)xi[k];
  }
}

template <typename T>
void langevin_update_parallel(T* x_out, const T* x_in, const T* drift, int64_t n, T eta, T tau, uint64_t seed,
                              uint32_t step) {
  at::parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
    langevin_update(x_out + b, x_in + b, drift + b, b, e - b, eta, tau, seed, step);
  });
}

// ---------------------------------------------------------------- smoothed score engine

template <typename T>
struct ScoreProblem {
  Job<T> job;             // X: shifted queries [N, D], Y: shifted centres [M, D]
  Family<T> fam;          // a Gaussian: tile_z only asks whether the family is radial
  std::vector<double> xn, yn;  // squared norms: the tile GEMM expansion and tile_z's close-pair test
  const T* logw = nullptr;  // [M] or null (all weights 1)
  T sigma;
  // z / (2 sigma^2) = (z ea) eb and 1 / sigma^2 = sa sb, folded in double: the second factor is 1 unless the
  // coefficient overflows T (tiny sigma), then both are its square root, so that z = 0 gives a logit of exactly
  // 0 and ybar - x = 0 a score of 0 (never inf * 0)
  T ea, eb, sa, sb;

  ScoreProblem(const T* X, const T* Y, int64_t N, int64_t M, int64_t D, double sigma_)
      : fam(kGaussian, {sigma_}), sigma(static_cast<T>(sigma_)) {
    split_coef(0.5 / (sigma_ * sigma_), std::sqrt(0.5) / sigma_, ea, eb);
    split_coef(1.0 / (sigma_ * sigma_), 1.0 / sigma_, sa, sb);
    job.X = X;
    job.Y = Y;
    job.N = N;
    job.M = M;
    job.D = D;
    xn.assign(N, 0.0);
    yn.resize(M);
    for (int64_t j = 0; j < M; ++j) yn[j] = sqnorm(Y + j * D, D);
  }
  static void split_coef(double u, double root, T& a, T& b) {
    const double mx = static_cast<double>(std::numeric_limits<T>::max());
    if (u <= mx) {
      a = static_cast<T>(u);
      b = T(1);
    } else {
      a = b = static_cast<T>(std::min(root, mx));
    }
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
    tile_z(sp.job, sp.fam, sp.xn.data(), sp.yn.data(), i0, bi, j0, bj, s);
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

Shifted shift_by_centre_mean(const at::Tensor& x, const at::Tensor& y, at::ScalarType acc) {
  Shifted s;
  at::Tensor ya = y.to(acc);
  s.mu = ya.mean(0, /*keepdim=*/true);
  s.x = (x.to(acc) - s.mu).contiguous();
  s.y = (ya - s.mu).contiguous();
  return s;
}

void check_score_inputs(const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& w, double sigma) {
  check_point_pair(x, y, "x", "y");
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, "sigma must be positive and finite, got ", sigma);
  if (w.has_value()) {
    check_vector(*w, y.size(0), "weights", y, "y");
    TORCH_CHECK_VALUE(!(*w < 0).any().item<bool>(), "weights must be non-negative");
    TORCH_CHECK_VALUE(!(w->sum() == 0).item<bool>(), "weights must not all be zero");
  }
}

std::tuple<at::Tensor, at::Tensor> smoothed_score_cpu(const at::Tensor& x, const at::Tensor& y,
                                                      const std::optional<at::Tensor>& w, double sigma) {
  check_score_inputs(x, y, w, sigma);
  const auto acc = acc_type(x);
  Shifted sh = shift_by_centre_mean(x, y, acc);
  const int64_t N = x.size(0), M = y.size(0), D = x.size(1);
  at::Tensor logw = w.has_value() ? w->to(acc).log().contiguous() : at::Tensor();
  at::Tensor score = at::empty({N, D}, x.options().dtype(acc));
  at::Tensor lse = at::empty({N}, x.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES(acc, "smoothed_score_cpu", [&] {
    using T = scalar_t;
    ScoreProblem<T> sp(sh.x.data_ptr<T>(), sh.y.data_ptr<T>(), N, M, D, sigma);
    if (logw.defined()) sp.logw = logw.data_ptr<T>();
    const int64_t nI = (N + kTileI - 1) / kTileI;
    at::parallel_for(0, nI, 1, [&](int64_t b, int64_t e) {
      Scratch<T> s(D);
      for (int64_t I = b; I < e; ++I) {
        const int64_t i0 = I * kTileI, bi = std::min(kTileI, N - i0);
        score_block(sp, i0, bi, s, score.data_ptr<T>() + i0 * D, lse.data_ptr<T>() + i0);
      }
    });
  });
  return {score.to(x.scalar_type()), lse};
}

// Gradient of L = sum_i g_i . score_i for query rows [i0, i0 + bi) (see the header comment).
// gx rows are owned by the caller's block; gyP, gyC, csum, gw are the thread's accumulators over j.
template <typename T>
struct ScoreGrads {
  T* gx = nullptr;               // [N, D]: sum_j C_ij y_j
  T *gyP = nullptr, *gyC = nullptr, *csum = nullptr;  // [M, D]: sum_i p_ij g_i; sum_i C_ij x_i; [M]: sum_i C_ij
  T* gw = nullptr;               // [M]: sum_i C_ij / w_j
};

template <typename T>
void score_backward_block(const ScoreProblem<T>& sp, const T* G, const T* ybar, const T* lse, const T* w,
                          int64_t i0, int64_t bi, Scratch<T>& s, const ScoreGrads<T>& o) {
  const int64_t M = sp.job.M, D = sp.job.D;
  const T ea = sp.ea, eb = sp.eb;  // z / (2 sigma^2) = (z ea) eb
  const T* Xi = sp.job.X + i0 * D;
  const T* Gi = G + i0 * D;
  T* gbar = s.rs.data();
  for (int64_t i = 0; i < bi; ++i) {
    T a = T(0);
    for (int64_t d = 0; d < D; ++d) a += Gi[i * D + d] * ybar[(i0 + i) * D + d];
    gbar[i] = a;
  }
  T* z = s.z.data();
  T* q = s.v.data();   // exp(-z / 2 sigma^2 - lse_i), then p = w_j q
  T* t = s.hy.data();  // g_i . y_j
  T* c = s.q.data();   // q (t - gbar), then C = w_j c
  for (int64_t j0 = 0; j0 < M; j0 += kTileJ) {
    const int64_t bj = std::min(kTileJ, M - j0);
    const T* Yj = sp.job.Y + j0 * D;
    tile_z(sp.job, sp.fam, sp.xn.data(), sp.yn.data(), i0, bi, j0, bj, s);
    const bool small_d = D <= kSmallD;
    const T* yt = s.yt.data();  // small D: the centre tile transposed [D, bj], left by tile_z
    if (small_d) {
      for (int64_t i = 0; i < bi; ++i) {
        T* tr = t + i * bj;
        std::fill(tr, tr + bj, T(0));
        for (int64_t d = 0; d < D; ++d) {
          const T g = Gi[i * D + d];
          const T* yr = yt + d * bj;
          for (int64_t j = 0; j < bj; ++j) tr[j] += g * yr[j];
        }
      }
    } else {
      mm<T>(false, true, bi, bj, D, T(1), Gi, D, Yj, D, T(0), t, bj);
    }
    for (int64_t i = 0; i < bi; ++i) {
      const T l = lse[i0 + i], gb = gbar[i];
      for (int64_t j = 0; j < bj; ++j) {
        const T v = exp_acc(-((z[i * bj + j] * ea) * eb) - l);
        q[i * bj + j] = v;
        c[i * bj + j] = v * (t[i * bj + j] - gb);
      }
    }
    if (o.gw)
      for (int64_t i = 0; i < bi; ++i)
        for (int64_t j = 0; j < bj; ++j) o.gw[j0 + j] += c[i * bj + j];
    if (w)
      for (int64_t i = 0; i < bi; ++i)
        for (int64_t j = 0; j < bj; ++j) {
          q[i * bj + j] *= w[j0 + j];
          c[i * bj + j] *= w[j0 + j];
        }
    if (small_d) {
      // the same contractions as the GEMMs below, as loops over j (D is too small for a GEMM)
      if (o.gx)
        for (int64_t i = 0; i < bi; ++i)
          for (int64_t d = 0; d < D; ++d) o.gx[(i0 + i) * D + d] += row_dot<T>(c + i * bj, yt + d * bj, bj);
      if (o.gyP) {
        T* acc = s.w.data();  // [2 D + 1, bj]: sum_i q_ij g_id, sum_i c_ij x_id, sum_i c_ij
        std::fill(acc, acc + (2 * D + 1) * bj, T(0));
        for (int64_t i = 0; i < bi; ++i) {
          const T* qr = q + i * bj;
          const T* cr = c + i * bj;
          for (int64_t d = 0; d < D; ++d) {
            const T g = Gi[i * D + d], xv = Xi[i * D + d];
            T* ap = acc + d * bj;
            T* ac = acc + (D + d) * bj;
            for (int64_t j = 0; j < bj; ++j) {
              ap[j] += qr[j] * g;
              ac[j] += cr[j] * xv;
            }
          }
          T* as = acc + 2 * D * bj;
          for (int64_t j = 0; j < bj; ++j) as[j] += cr[j];
        }
        for (int64_t j = 0; j < bj; ++j) {
          for (int64_t d = 0; d < D; ++d) {
            o.gyP[(j0 + j) * D + d] += acc[d * bj + j];
            o.gyC[(j0 + j) * D + d] += acc[(D + d) * bj + j];
          }
          o.csum[j0 + j] += acc[2 * D * bj + j];
        }
      }
      continue;
    }
    if (o.gx) mm<T>(false, false, bi, D, bj, T(1), c, bj, Yj, D, T(1), o.gx + i0 * D, D);
    if (o.gyP) {
      mm<T>(true, false, bj, D, bi, T(1), q, bj, Gi, D, T(1), o.gyP + j0 * D, D);
      mm<T>(true, false, bj, D, bi, T(1), c, bj, Xi, D, T(1), o.gyC + j0 * D, D);
      for (int64_t i = 0; i < bi; ++i)
        for (int64_t j = 0; j < bj; ++j) o.csum[j0 + j] += c[i * bj + j];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> smoothed_score_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& w,
    double sigma, const at::Tensor& score, const at::Tensor& lse, std::array<bool, 3> mask) {
  check_score_inputs(x, y, w, sigma);
  const int64_t N = x.size(0), M = y.size(0), D = x.size(1);
  check_matrix(grad, N, D, "grad", x, "x");
  check_matrix(score, N, D, "score", x, "x");
  check_vector(lse, N, "lse", x, "x");
  const auto acc = acc_type(x);
  auto opts = x.options().dtype(acc);
  Shifted sh = shift_by_centre_mean(x, y, acc);
  at::Tensor ga = prep(grad, acc), la = prep(lse, acc);
  const double s2 = sigma * sigma;
  at::Tensor ybar = (sh.x + score.to(acc) * s2).contiguous();
  at::Tensor wa = w.has_value() ? prep(*w, acc) : at::Tensor();
  const bool need_x = mask[0], need_y = mask[1], need_w = mask[2] && w.has_value();
  at::Tensor gx = at::zeros({N, D}, opts);
  at::Tensor gy = at::zeros({M, D}, opts);
  at::Tensor gw = at::zeros({w.has_value() ? M : 0}, opts);
  AT_DISPATCH_FLOATING_TYPES(acc, "smoothed_score_backward_cpu", [&] {
    using T = scalar_t;
    ScoreProblem<T> sp(sh.x.data_ptr<T>(), sh.y.data_ptr<T>(), N, M, D, sigma);
    for (int64_t i = 0; i < N; ++i) sp.xn[i] = sqnorm(sp.job.X + i * D, D);
    const int64_t nI = (N + kTileI - 1) / kTileI;
    const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), nI));
    const int64_t chunk = (nI + threads - 1) / threads;
    // per-thread accumulators over the centres, summed in thread order (deterministic)
    const int64_t per = need_y ? 2 * M * D + M : 0;
    std::vector<std::vector<T>> colbuf(threads), wbuf(threads);
    at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      Scratch<T> s(D);
      for (int64_t th = b; th < e; ++th) {
        colbuf[th].assign(per, T(0));
        if (need_w) wbuf[th].assign(M, T(0));
        ScoreGrads<T> o;
        o.gx = need_x ? gx.data_ptr<T>() : nullptr;
        if (need_y) {
          o.gyP = colbuf[th].data();
          o.gyC = o.gyP + M * D;
          o.csum = o.gyC + M * D;
        }
        o.gw = need_w ? wbuf[th].data() : nullptr;
        for (int64_t I = th * chunk; I < std::min(nI, (th + 1) * chunk); ++I) {
          const int64_t i0 = I * kTileI, bi = std::min(kTileI, N - i0);
          score_backward_block(sp, ga.data_ptr<T>(), ybar.data_ptr<T>(), la.data_ptr<T>(),
                               wa.defined() ? wa.data_ptr<T>() : nullptr, i0, bi, s, o);
        }
      }
    });
    const T inv_s2 = T(1) / T(s2), inv_s4 = inv_s2 * inv_s2;
    if (need_x) {  // gx = (sum_j C_ij y_j) / s^4 - g / s^2
      T* gxp = gx.data_ptr<T>();
      const T* gp = ga.data_ptr<T>();
      for (int64_t e = 0; e < N * D; ++e) gxp[e] = gxp[e] * inv_s4 - gp[e] * inv_s2;
    }
    if (need_y) {  // gy = gyP / s^2 + (gyC - y csum) / s^4
      T* gyp = gy.data_ptr<T>();
      const T* yp = sp.job.Y;
      for (int64_t th = 0; th < threads; ++th) {
        const T* P = colbuf[th].data();
        const T* C = P + M * D;
        const T* cs = C + M * D;
        for (int64_t j = 0; j < M; ++j)
          for (int64_t d = 0; d < D; ++d) {
            const int64_t e = j * D + d;
            gyp[e] += P[e] * inv_s2 + (C[e] - yp[e] * cs[j]) * inv_s4;
          }
      }
    }
    if (need_w) {
      T* gwp = gw.data_ptr<T>();
      for (int64_t th = 0; th < threads; ++th)
        for (int64_t j = 0; j < M; ++j) gwp[j] += wbuf[th][j] * inv_s2;
    }
  });
  const auto dt = x.scalar_type();
  return {gx.to(dt), gy.to(dt), gw.to(w.has_value() ? w->scalar_type() : dt)};
}

// ---------------------------------------------------------------- Langevin ops

void check_langevin(double step_size, double temperature) {
  TORCH_CHECK_VALUE(std::isfinite(step_size) && step_size > 0, "step_size must be positive and finite, got ",
                    step_size);
  TORCH_CHECK_VALUE(std::isfinite(temperature) && temperature >= 0,
                    "temperature must be non-negative and finite, got ", temperature);
}

// langevin_step(_): x of any shape, drift of x's shape, dtype and device.
void check_step_args(const at::Tensor& x, const at::Tensor& drift, double step_size, double temperature) {
  check_langevin(step_size, temperature);
  check_floating(x, "x");
  TORCH_CHECK_VALUE(drift.sizes() == x.sizes(), "drift must have the shape of x ", x.sizes(), ", got ",
                    drift.sizes());
  TORCH_CHECK_TYPE(drift.scalar_type() == x.scalar_type(), "drift must have the dtype of x (", x.scalar_type(),
                   "), got ", drift.scalar_type());
  check_device(drift, x, "drift", "x");
}

at::Tensor langevin_step_cpu(const at::Tensor& x, const at::Tensor& drift, double step_size, double temperature,
                             int64_t seed) {
  check_step_args(x, drift, step_size, temperature);
  const auto acc = acc_type(x);
  at::Tensor xa = prep(x, acc), da = prep(drift, acc);
  at::Tensor out = at::empty_like(xa);
  AT_DISPATCH_FLOATING_TYPES(acc, "langevin_step_cpu", [&] {
    langevin_update_parallel<scalar_t>(out.data_ptr<scalar_t>(), xa.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
                                       xa.numel(), scalar_t(step_size), scalar_t(temperature), (uint64_t)seed, 0u);
  });
  return out.to(x.scalar_type());
}

void langevin_step_inplace_cpu(at::Tensor& x, const at::Tensor& drift, double step_size, double temperature,
                               int64_t seed) {
  check_step_args(x, drift, step_size, temperature);
  const bool direct = x.is_contiguous() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
  if (!direct) {
    x.copy_(langevin_step_cpu(x, drift, step_size, temperature, seed));
    return;
  }
  at::Tensor da = drift.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "langevin_step_inplace_cpu", [&] {
    langevin_update_parallel<scalar_t>(x.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), da.data_ptr<scalar_t>(),
                                       x.numel(), scalar_t(step_size), scalar_t(temperature), (uint64_t)seed, 0u);
  });
}

// ---------------------------------------------------------------- langevin_step_ and autograd
//
// Autograd notices in-place updates through each tensor's version counter: a node
// that saved x compares x's version at backward with the one it recorded.  Built-in
// in-place ops bump the counter in an ADInplaceOrView kernel and refuse leaves that
// require grad in their autograd kernel; a custom op gets neither by itself, so
// langevin_step_ registers both here.  The step is a sampling update, not a
// differentiable function of its inputs: with grad mode on it refuses x or drift
// that require grad (a leaf or a view of one with PyTorch's own message); under
// no_grad it runs and only the version of x changes.

using InplaceStepFn = void(at::Tensor&, const at::Tensor&, double, double, int64_t);

const c10::TypedOperatorHandle<InplaceStepFn>& inplace_step_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("gankernels::langevin_step_", "").typed<InplaceStepFn>();
  return op;
}

void langevin_step_inplace_version(c10::DispatchKeySet ks, at::Tensor& x, const at::Tensor& drift,
                                   double step_size, double temperature, int64_t seed) {
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    inplace_step_op().redispatch(ks & c10::after_ADInplaceOrView_keyset, x, drift, step_size, temperature, seed);
  }
  torch::autograd::impl::bump_version(x);
}

void langevin_step_inplace_autograd(c10::DispatchKeySet ks, at::Tensor& x, const at::Tensor& drift,
                                    double step_size, double temperature, int64_t seed) {
  if (at::GradMode::is_enabled() && (x.requires_grad() || drift.requires_grad())) {
    TORCH_CHECK(!(x.requires_grad() && x.is_leaf()),
                "langevin_step_: x is a leaf that requires grad (a leaf Variable that requires grad is being used "
                "in an in-place operation); update x.detach() or call it under torch.no_grad()");
    TORCH_CHECK(!(x.requires_grad() && x.is_view() && x._base().is_leaf()),
                "langevin_step_: x is a view of a leaf that requires grad (a view of a leaf Variable that requires "
                "grad is being used in an in-place operation); call it under torch.no_grad()");
    TORCH_CHECK(false, "langevin_step_ is a sampling update and not differentiable, but ",
                x.requires_grad() ? "x" : "drift", " requires grad; call it under torch.no_grad() or on detached "
                "tensors");
  }
  at::AutoDispatchBelowAutograd guard;
  inplace_step_op().redispatch(ks & c10::after_autograd_keyset, x, drift, step_size, temperature, seed);
}

at::Tensor kernel_langevin_cpu(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& w, int64_t family,
                               at::ArrayRef<double> params, double step_size, int64_t steps, double temperature,
                               int64_t seed) {
  check_family_params(family, params);
  check_point_pair(x, centers, "x", "centers");
  check_vector(w, centers.size(0), "w", centers, "centers");
  TORCH_CHECK_VALUE(steps >= 0, "steps must be non-negative, got ", steps);
  check_langevin(step_size, temperature);
  if (steps == 0) return x.clone(at::MemoryFormat::Contiguous);  // exactly x (no round trip through the shift)
  const auto acc = acc_type(x);
  const int64_t N = x.size(0), M = centers.size(0), D = x.size(1);
  // radial kernels are translation invariant: work relative to the centres' mean
  at::Tensor xa, ca, mu;
  if (is_radial(family)) {
    Shifted sh = shift_by_centre_mean(x, centers, acc);
    xa = sh.x;
    ca = sh.y;
    mu = sh.mu;
  } else {
    xa = x.to(acc).contiguous().clone();
    ca = prep(centers, acc);
  }
  at::Tensor wa = prep(w, acc).view({M, 1});
  at::Tensor ones = at::ones({N, 1}, xa.options());
  at::Tensor drift = at::empty({N, D}, xa.options());
  AT_DISPATCH_FLOATING_TYPES(acc, "kernel_langevin_cpu", [&] {
    using T = scalar_t;
    Family<T> fam(family, params.vec());
    Job<T> job;
    job.X = xa.data_ptr<T>();
    job.Y = ca.data_ptr<T>();
    job.N = N;
    job.M = M;
    job.D = D;
    job.Cf = 1;
    job.flow_ar = ones.data_ptr<T>();
    job.flow_br = wa.data_ptr<T>();
    Outputs<T> o;
    o.flow_row = drift.data_ptr<T>();
    for (int64_t st = 0; st < steps; ++st) {
      drift.zero_();
      run_job(job, fam, o);
      langevin_update_parallel<T>(xa.data_ptr<T>(), xa.data_ptr<T>(), drift.data_ptr<T>(), N * D, T(step_size),
                                  T(temperature), (uint64_t)seed, (uint32_t)st);
    }
  });
  if (mu.defined()) xa.add_(mu);
  return xa.to(x.scalar_type());
}

at::Tensor kde_langevin_cpu(const at::Tensor& x, const at::Tensor& data, at::ArrayRef<double> sigmas,
                            int64_t steps_per_sigma, double eps, int64_t seed) {
  check_point_pair(x, data, "x", "data");
  TORCH_CHECK_VALUE(!sigmas.empty(), "sigmas must not be empty");
  for (size_t k = 0; k < sigmas.size(); ++k)
    TORCH_CHECK_VALUE(std::isfinite(sigmas[k]) && sigmas[k] > 0, "sigmas must be positive and finite, got sigmas[",
                      k, "] = ", sigmas[k]);
  TORCH_CHECK_VALUE(steps_per_sigma >= 0, "steps_per_sigma must be non-negative, got ", steps_per_sigma);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "eps must be positive and finite, got ", eps);
  if (steps_per_sigma == 0) return x.clone(at::MemoryFormat::Contiguous);  // exactly x
  const auto acc = acc_type(x);
  const int64_t N = x.size(0), M = data.size(0), D = x.size(1);
  Shifted sh = shift_by_centre_mean(x, data, acc);
  const double sL = sigmas.back();
  AT_DISPATCH_FLOATING_TYPES(acc, "kde_langevin_cpu", [&] {
    using T = scalar_t;
    T* X = sh.x.data_ptr<T>();
    const int64_t nI = (N + kTileI - 1) / kTileI;
    for (size_t k = 0; k < sigmas.size(); ++k) {
      ScoreProblem<T> sp(X, sh.y.data_ptr<T>(), N, M, D, sigmas[k]);
      const T alpha = T(eps * sigmas[k] * sigmas[k] / (sL * sL));
      for (int64_t t = 0; t < steps_per_sigma; ++t) {
        const uint32_t step = (uint32_t)(k * steps_per_sigma + t);
        at::parallel_for(0, nI, 1, [&](int64_t b, int64_t e) {
          Scratch<T> s(D);
          std::vector<T> score(kTileI * D);
          for (int64_t I = b; I < e; ++I) {
            const int64_t i0 = I * kTileI, bi = std::min(kTileI, N - i0);
            score_block(sp, i0, bi, s, score.data(), (T*)nullptr);
            // x += (alpha / 2) score + sqrt(alpha) xi, i.e. eta = alpha / 2, tau = 1
            T* xr = X + i0 * D;
            langevin_update(xr, xr, score.data(), i0 * D, bi * D, alpha / T(2), T(1), (uint64_t)seed, step);
          }
        });
      }
    }
  });
  return (sh.x + sh.mu).to(x.scalar_type());
}

}  // namespace gankernels
