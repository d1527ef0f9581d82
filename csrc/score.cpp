// Kernel-smoothed score (CPU): smoothed_score and its backward, on the engine of score.h.
//
// Backward (first order; recomputes p from lse): with g the incoming gradient,
// gbar_i = g_i . ybar_i, T_ij = g_i . y_j, C_ij = p_ij (T_ij - gbar_i):
//   gx_i = (sum_j C_ij y_j) / sigma^4 - g_i / sigma^2
//   gy_j = (sum_i p_ij g_i) / sigma^2 + (sum_i C_ij (x_i - y_j)) / sigma^4
//   gw_j = (sum_i C_ij / w_j) / sigma^2   (computed without dividing by w_j)
// A query 1000 sigma from every centre is fine: the nearest centre has p = 1.
// Per tile of 128 queries x 256 centres: three GEMMs (the stacked [X; G] against the centres, C' Y for gx,
// and [C'; P]^T [X; G] for gy) against one tile GEMM and P Y in the forward.
//
// Memory: O((N + M) D) plus O(threads (M D + tile)) in the backward; nothing N x M is allocated.
// Limits: accumulation in fp32 (fp64 for fp64 inputs); differentiable once.
#include <array>
#include <cmath>
#include <tuple>

#include "ops.h"
#include "score.h"

namespace gankernels {

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

// Gradient of L = sum_i g_i . score_i for query rows [i0, i0 + bi) (see the header comment), with
// C'_ij = C_ij / sigma^2 so that every output is a sum divided by sigma^2 once at the end.
// gx rows are owned by the caller's block; gy, csum, gw are the thread's accumulators over j.
template <typename T>
struct ScoreGrads {
  T* gx = nullptr;    // [N, D]: sum_j C'_ij y_j
  T* gy = nullptr;    // [M, D]: sum_i (p_ij g_i + C'_ij x_i)
  T* csum = nullptr;  // [M]: sum_i C'_ij
  T* gw = nullptr;    // [M]: sum_i C'_ij / w_j
};

// The thread's stacked operands, so that each tile takes three GEMMs, not five:
//   [X_i; G_i] Y_j^T  -> z's dots and t = g . y in one call (the centre tile packed once),
//   C' Y_j            -> gx,
//   [C'; P]^T [X_i; G_i] -> gy's two sums in one call.
template <typename T>
struct ScoreStacks {
  std::vector<T> xg, cp;  // [2 kTileI, D] rows of X then G; [2 kTileI, kTileJ] rows of C' then P
  explicit ScoreStacks(int64_t D) : xg(2 * kTileI * D), cp(2 * kTileI * kTileJ) {}
};

template <typename T>
void score_backward_block(const ScoreProblem<T>& sp, const T* G, const T* ybar, const T* lse, const T* w,
                          int64_t i0, int64_t bi, Scratch<T>& s, ScoreStacks<T>& st, const ScoreGrads<T>& o) {
  const int64_t M = sp.job.M, D = sp.job.D;
  const T ea = sp.ea, eb = sp.eb;  // z / (2 sigma^2) = (z ea) eb
  const T sa = sp.sa, sb = sp.sb;  // 1 / sigma^2 = sa sb
  const bool small_d = D <= kSmallD;
  T* XG = st.xg.data();
  std::copy(sp.job.X + i0 * D, sp.job.X + (i0 + bi) * D, XG);
  std::copy(G + i0 * D, G + (i0 + bi) * D, XG + bi * D);
  const T* Xi = XG;
  const T* Gi = XG + bi * D;
  T* gbar = s.rs.data();
  for (int64_t i = 0; i < bi; ++i) {
    T a = T(0);
    for (int64_t d = 0; d < D; ++d) a += Gi[i * D + d] * ybar[(i0 + i) * D + d];
    gbar[i] = a;
  }
  T* z = s.z.data();
  for (int64_t j0 = 0; j0 < M; j0 += kTileJ) {
    const int64_t bj = std::min(kTileJ, M - j0);
    const T* Yj = sp.job.Y + j0 * D;
    T* t = z + bi * bj;  // g_i . y_j, the rows below z's
    T* c = st.cp.data();  // C', then P in the rows below
    T* q = c + bi * bj;
    if (!small_d) mm<T>(false, true, 2 * bi, bj, D, T(1), XG, D, Yj, D, T(0), z, bj);
    tile_z(sp.job, /*radial=*/true, sp.xn.data(), sp.yn.data(), i0, bi, j0, bj, s, /*dots_in_z=*/!small_d);
    const T* yt = s.yt.data();  // small D: the centre tile transposed [D, bj], left by tile_z
    if (small_d) tile_dots(Gi, Yj, yt, bi, bj, D, t);
    for (int64_t i = 0; i < bi; ++i) {
      const T l = lse[i0 + i], gb = gbar[i];
      for (int64_t j = 0; j < bj; ++j) {
        const T v = exp_acc(-((z[i * bj + j] * ea) * eb) - l);
        q[i * bj + j] = v;
        c[i * bj + j] = ((v * (t[i * bj + j] - gb)) * sa) * sb;
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
    if (o.csum)
      for (int64_t i = 0; i < bi; ++i)
        for (int64_t j = 0; j < bj; ++j) o.csum[j0 + j] += c[i * bj + j];
    if (!small_d) {
      if (o.gx) mm<T>(false, false, bi, D, bj, T(1), c, bj, Yj, D, T(1), o.gx + i0 * D, D);
      if (o.gy) mm<T>(true, false, bj, D, 2 * bi, T(1), c, bj, XG, D, T(1), o.gy + j0 * D, D);
      continue;
    }
    // small D: the same contractions as loops over j (D is too small for a GEMM)
    if (o.gx)
      for (int64_t i = 0; i < bi; ++i)
        for (int64_t d = 0; d < D; ++d) o.gx[(i0 + i) * D + d] += row_dot<T>(c + i * bj, yt + d * bj, bj);
    if (o.gy) {
      T* acc = s.w.data();  // [D, bj]: sum_i q_ij g_id + c_ij x_id
      std::fill(acc, acc + D * bj, T(0));
      for (int64_t i = 0; i < bi; ++i) {
        const T* qr = q + i * bj;
        const T* cr = c + i * bj;
        for (int64_t d = 0; d < D; ++d) {
          const T g = Gi[i * D + d], xv = Xi[i * D + d];
          T* ad = acc + d * bj;
          for (int64_t j = 0; j < bj; ++j) ad[j] += qr[j] * g + cr[j] * xv;
        }
      }
      for (int64_t j = 0; j < bj; ++j)
        for (int64_t d = 0; d < D; ++d) o.gy[(j0 + j) * D + d] += acc[d * bj + j];
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
    const int64_t per = need_y ? M * D + M : 0;
    std::vector<std::vector<T>> colbuf(threads), wbuf(threads);
    at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      Scratch<T> s(D);
      ScoreStacks<T> st(D);
      for (int64_t th = b; th < e; ++th) {
        colbuf[th].assign(per, T(0));
        if (need_w) wbuf[th].assign(M, T(0));
        ScoreGrads<T> o;
        o.gx = need_x ? gx.data_ptr<T>() : nullptr;
        if (need_y) {
          o.gy = colbuf[th].data();
          o.csum = o.gy + M * D;
        }
        o.gw = need_w ? wbuf[th].data() : nullptr;
        for (int64_t I = th * chunk; I < std::min(nI, (th + 1) * chunk); ++I) {
          const int64_t i0 = I * kTileI, bi = std::min(kTileI, N - i0);
          score_backward_block(sp, ga.data_ptr<T>(), ybar.data_ptr<T>(), la.data_ptr<T>(),
                               wa.defined() ? wa.data_ptr<T>() : nullptr, i0, bi, s, st, o);
        }
      }
    });
    const T sa = sp.sa, sb = sp.sb;  // 1 / sigma^2 = sa sb
    if (need_x) {  // gx = (sum_j C'_ij y_j - g) / s^2
      T* gxp = gx.data_ptr<T>();
      const T* gp = ga.data_ptr<T>();
      for (int64_t e = 0; e < N * D; ++e) gxp[e] = ((gxp[e] - gp[e]) * sa) * sb;
    }
    if (need_y) {  // gy = (sum_i (p_ij g_i + C'_ij x_i) - y_j sum_i C'_ij) / s^2, thread sums in order
      T* gyp = gy.data_ptr<T>();
      const T* yp = sp.job.Y;
      for (int64_t th = 0; th < threads; ++th) {
        const T* P = colbuf[th].data();
        for (int64_t e = 0; e < M * D; ++e) gyp[e] += P[e];
      }
      for (int64_t th = 0; th < threads; ++th) {
        const T* cs = colbuf[th].data() + M * D;
        for (int64_t j = 0; j < M; ++j)
          for (int64_t d = 0; d < D; ++d) gyp[j * D + d] -= yp[j * D + d] * cs[j];
      }
      for (int64_t e = 0; e < M * D; ++e) gyp[e] = (gyp[e] * sa) * sb;
    }
    if (need_w) {
      T* gwp = gw.data_ptr<T>();
      for (int64_t th = 0; th < threads; ++th)
        for (int64_t j = 0; j < M; ++j) gwp[j] += wbuf[th][j];
    }
  });
  const auto dt = x.scalar_type();
  return {gx.to(dt), gy.to(dt), gw.to(w.has_value() ? w->scalar_type() : dt)};
}

}  // namespace gankernels
