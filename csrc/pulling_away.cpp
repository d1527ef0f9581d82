// The EBGAN pulling-away term (docs/MATH.md §4) on the CPU: both exact algorithms.
//
//   PT = 1 / (N (N - 1)) * sum_{i != j} (sh_i . sh_j)^2,   sh_i = s_i / max(|s_i|, eps)
//
// Gram form, O(N^2 D): square tiles (kGramTile) of Sh Sh^T from a BLAS GEMM, squared and
//   summed while the tile is in cache.  The forward visits the tiles J >= I only and takes the
//   pairs i < j inside them (weight 2), so the diagonal i = j is left out exactly.  The
//   backward gives every thread whole row tiles I: H_I = sum_J P_IJ Sh_J with the diagonal of
//   P_II zeroed, i.e. H_i = sum_{j != i} (sh_i . sh_j) sh_j.
// Covariance form, O(N D^2): G = Sh^T Sh (D x D) from row-block GEMMs, and
//   sum_{i,j} (sh_i . sh_j)^2 = |G|_F^2, so PT = (|G|_F^2 - sum_i |sh_i|^4) / (N (N - 1)):
//   the diagonal term is subtracted explicitly.  Backward: H_i = G sh_i - |sh_i|^2 sh_i.
// Both backward passes end in the same row pass: dPT/dsh_i = c H_i with c = 4 grad / (N (N - 1)),
//   chained through the normalisation: ds_i = (dsh_i - (dsh_i . sh_i) sh_i) / |s_i| where
//   |s_i| >= eps, and dsh_i / eps where the row is shorter than eps (a zero row gets gradient
//   exactly 0, finite).
//
// What is fused: the normalisation into the GEMM passes -- the covariance form normalises
// each block of kCovRows rows into a cache-resident scratch buffer right before its GEMM (no
// N x D copy of Sh), the Gram form writes Sh once (every row is visited N / kGramTile times);
// the squaring and summing into the tile GEMM's epilogue (Gram); the D x D accumulation into
// per-thread row-block GEMMs (covariance); the gradient's projection onto the row block while
// it is in cache.  Backward ops recompute the norms (and G) instead of saving anything.
// Memory: the gradient (N x D), s converted to the accumulation type when it is not already
//   contiguous fp32 / fp64 (N x D), Sh for the Gram form (N x D), threads x (D^2 + kCovRows D)
//   (covariance) or threads x kGramTile^2 (Gram) scratch: O(N D + D^2), never N x N.
// Accumulation: fp32 for fp16 / bf16 / fp32 inputs, fp64 for fp64 (every GEMM); row norms,
//   the sums of GEMM results across tiles / row blocks and the final scalar sums in double.
// Determinism: the backward passes have no cross-thread reduction but G's; every reduction
//   goes through per-thread buffers over contiguous ranges of tiles / blocks, summed in thread
//   order, so the same inputs and thread count give bitwise the same result.
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "engine.h"  // mm<T>: row-major GEMM on the BLAS libtorch exports
#include "ops.h"
#include "tensor_utils.h"

namespace gankernels {

constexpr int64_t kGramTile = 128;  // square tiles of Sh Sh^T (64 KiB of fp32: stays in L2)
constexpr int64_t kCovRows = 256;   // rows per GEMM of the covariance accumulation
enum PullingAwayAlgorithm : int64_t { kGram = 0, kCovariance = 1 };

// sum_k a_k b_k accumulated in A with kLanes independent partial sums, so that the loop
// vectorises without reassociation flags (a single accumulator is one add latency per element).
template <typename A, typename T>
inline A dot_lanes(const T* a, const T* b, int64_t n) {
  constexpr int64_t kLanes = 8;
  A acc[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += A(a[k + l]) * A(b[k + l]);
  A s = A(0);
  for (; k < n; ++k) s += A(a[k]) * A(b[k]);
  for (int64_t l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

// s in the accumulation type, its row norms and what the backward needs of the normalisation.
template <typename T>
struct Rows {
  at::Tensor x;              // [N, D] contiguous
  const T* X = nullptr;
  int64_t N = 0, D = 0;
  std::vector<double> inv;   // 1 / max(|s_i|, eps)
  std::vector<double> q;     // |sh_i|^2 (1 up to rounding where |s_i| >= eps)
  std::vector<char> proj;    // |s_i| >= eps: sh_i = s_i / |s_i| and the gradient is projected

  // sh for the rows [r0, r0 + br) into out ([br, D]).
  void normalise(int64_t r0, int64_t br, T* out) const {
    for (int64_t i = 0; i < br; ++i) {
      const T* xi = X + (r0 + i) * D;
      const double f = inv[r0 + i];
      T* o = out + i * D;
      for (int64_t d = 0; d < D; ++d) o[d] = static_cast<T>(double(xi[d]) * f);
    }
  }
};

constexpr int64_t kRowGrain = 64;

template <typename T>
Rows<T> rows_of(const at::Tensor& s, double eps) {
  Rows<T> r;
  r.x = s.to(c10::CppTypeToScalarType<T>::value).contiguous();
  r.X = r.x.template data_ptr<T>();
  r.N = s.size(0);
  r.D = s.size(1);
  r.inv.resize(r.N);
  r.q.resize(r.N);
  r.proj.resize(r.N);
  at::parallel_for(0, r.N, kRowGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* xi = r.X + i * r.D;
      const double ss = dot_lanes<double>(xi, xi, r.D);
      const double n = std::sqrt(ss);
      const double m = n < eps ? eps : n;  // NaN stays NaN
      r.inv[i] = 1.0 / m;
      r.q[i] = ss / (m * m);
      r.proj[i] = n >= eps;
    }
  });
  return r;
}

// Sh, [N, D] (the Gram form visits every row many times).
template <typename T>
at::Tensor normalised(const Rows<T>& r) {
  at::Tensor sh = at::empty({r.N, r.D}, r.x.options());
  T* out = sh.template data_ptr<T>();
  at::parallel_for(0, r.N, kRowGrain, [&](int64_t b, int64_t e) { r.normalise(b, e - b, out + b * r.D); });
  return sh;
}

// Splits [0, count) into `parts` contiguous ranges (the last ones may be empty).
struct Chunks {
  int64_t count, parts, size;
  Chunks(int64_t c, int64_t max_parts)
      : count(c), parts(std::max<int64_t>(1, std::min<int64_t>(max_parts, c))), size((c + parts - 1) / parts) {}
  int64_t begin(int64_t p) const { return std::min(count, p * size); }
  int64_t end(int64_t p) const { return std::min(count, (p + 1) * size); }
};

// G = Sh^T Sh, [D, D], in double.  Each block of kCovRows rows is normalised into a scratch
// buffer and goes through one GEMM in T; the blocks' results are added in double (per thread
// over a contiguous range of blocks, then the threads in order), so the rounding error of an
// entry is that of a kCovRows-term sum.
template <typename T>
std::vector<double> covariance(const Rows<T>& r) {
  const int64_t N = r.N, D = r.D;
  const Chunks blocks((N + kCovRows - 1) / kCovRows, at::get_num_threads());
  std::vector<double> part(blocks.parts * D * D, 0.0);
  at::parallel_for(0, blocks.parts, 1, [&](int64_t b, int64_t e) {
    std::vector<T> sh(kCovRows * D), g(D * D);
    for (int64_t t = b; t < e; ++t)
      for (int64_t k = blocks.begin(t); k < blocks.end(t); ++k) {
        const int64_t r0 = k * kCovRows, br = std::min(kCovRows, N - r0);
        r.normalise(r0, br, sh.data());
        mm<T>(true, false, D, D, br, T(1), sh.data(), D, sh.data(), D, T(0), g.data(), D);
        double* acc = part.data() + t * D * D;
        for (int64_t e2 = 0; e2 < D * D; ++e2) acc[e2] += double(g[e2]);
      }
  });
  for (int64_t t = 1; t < blocks.parts; ++t)
    for (int64_t e = 0; e < D * D; ++e) part[e] += part[t * D * D + e];
  part.resize(D * D);
  return part;
}

// sum_{i != j} (sh_i . sh_j)^2 over the tiles J >= I (pairs i < j, counted twice).
template <typename T>
double gram_offdiagonal(const T* sh, int64_t N, int64_t D) {
  const int64_t nt = (N + kGramTile - 1) / kGramTile;
  std::vector<std::pair<int32_t, int32_t>> tiles;
  for (int64_t I = 0; I < nt; ++I)
    for (int64_t J = I; J < nt; ++J) tiles.emplace_back(I, J);
  const Chunks chunks(tiles.size(), at::get_num_threads());
  std::vector<double> part(chunks.parts, 0.0);
  at::parallel_for(0, chunks.parts, 1, [&](int64_t b, int64_t e) {
    std::vector<T> p(kGramTile * kGramTile);
    for (int64_t t = b; t < e; ++t)
      for (int64_t k = chunks.begin(t); k < chunks.end(t); ++k) {
        const int64_t i0 = tiles[k].first * kGramTile, j0 = tiles[k].second * kGramTile;
        const int64_t bi = std::min(kGramTile, N - i0), bj = std::min(kGramTile, N - j0);
        mm<T>(false, true, bi, bj, D, T(1), sh + i0 * D, D, sh + j0 * D, D, T(0), p.data(), bj);
        double acc = 0.0;
        for (int64_t i = 0; i < bi; ++i) {
          const int64_t j = i0 == j0 ? i + 1 : 0;  // pairs i < j only
          const T* pr = p.data() + i * bj + j;
          acc += double(dot_lanes<T>(pr, pr, bj - j));
        }
        part[t] += 2.0 * acc;
      }
  });
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

// In place on the rows [r0, r0 + br): h_i (H_i, minus q_i sh_i when H holds the diagonal
// term) -> ds_i = c inv_i (h_i - (h_i . sh_i) sh_i) for projected rows, c inv_i h_i otherwise.
template <typename T>
void finish_rows(const Rows<T>& r, int64_t r0, int64_t br, const T* sh, T* H, double c, bool diagonal_in_h) {
  const int64_t D = r.D;
  for (int64_t i = 0; i < br; ++i) {
    T* h = H + i * D;
    const T* x = sh + i * D;
    if (diagonal_in_h) {
      const T qi = static_cast<T>(r.q[r0 + i]);
      for (int64_t d = 0; d < D; ++d) h[d] -= qi * x[d];
    }
    const T f = static_cast<T>(c * r.inv[r0 + i]);
    if (r.proj[r0 + i]) {
      const T t = dot_lanes<T>(h, x, D);
      for (int64_t d = 0; d < D; ++d) h[d] = f * (h[d] - t * x[d]);
    } else {
      for (int64_t d = 0; d < D; ++d) h[d] *= f;
    }
  }
}

// Gram form: out_I = sum_J P_IJ Sh_J with P_II's diagonal zeroed, then finished; whole row
// tiles per thread, no cross-thread reduction.
template <typename T>
void gram_gradient(const Rows<T>& r, double c, T* out) {
  const int64_t N = r.N, D = r.D;
  const at::Tensor sht = normalised(r);
  const T* sh = sht.template data_ptr<T>();
  const int64_t nt = (N + kGramTile - 1) / kGramTile;
  at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
    std::vector<T> p(kGramTile * kGramTile);
    for (int64_t I = b; I < e; ++I) {
      const int64_t i0 = I * kGramTile, bi = std::min(kGramTile, N - i0);
      for (int64_t J = 0; J < nt; ++J) {
        const int64_t j0 = J * kGramTile, bj = std::min(kGramTile, N - j0);
        mm<T>(false, true, bi, bj, D, T(1), sh + i0 * D, D, sh + j0 * D, D, T(0), p.data(), bj);
        if (I == J)
          for (int64_t i = 0; i < bi; ++i) p[i * bj + i] = T(0);
        mm<T>(false, false, bi, D, bj, T(1), p.data(), bj, sh + j0 * D, D, J == 0 ? T(0) : T(1), out + i0 * D, D);
      }
      finish_rows(r, i0, bi, sh + i0 * D, out + i0 * D, c, false);
    }
  });
}

// Covariance form: G, then per row block (normalised into scratch) out = Sh G, finished.
template <typename T>
void covariance_gradient(const Rows<T>& r, double c, T* out) {
  const int64_t N = r.N, D = r.D;
  const std::vector<double> G64 = covariance(r);
  const std::vector<T> G(G64.begin(), G64.end());
  const int64_t nb = (N + kCovRows - 1) / kCovRows;
  at::parallel_for(0, nb, 1, [&](int64_t b, int64_t e) {
    std::vector<T> sh(kCovRows * D);
    for (int64_t k = b; k < e; ++k) {
      const int64_t r0 = k * kCovRows, br = std::min(kCovRows, N - r0);
      r.normalise(r0, br, sh.data());
      mm<T>(false, false, br, D, D, T(1), sh.data(), D, G.data(), D, T(0), out + r0 * D, D);
      finish_rows(r, r0, br, sh.data(), out + r0 * D, c, true);
    }
  });
}

void check_args(const at::Tensor& s, double eps, int64_t algorithm) {
  TORCH_CHECK_VALUE(s.dim() == 2, "s must be 2-D [N, D], got ", s.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(s.scalar_type()), "s must be a floating tensor, got ", s.scalar_type());
  TORCH_CHECK_VALUE(s.size(0) >= 2, "pulling_away needs at least 2 rows in s, got shape ", s.sizes());
  TORCH_CHECK_VALUE(s.size(1) > 0, "s must be non-empty, got shape ", s.sizes());
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0, "eps must be positive and finite, got ", eps);
  TORCH_CHECK_VALUE(algorithm == kGram || algorithm == kCovariance,
                    "algorithm must be 0 (gram) or 1 (covariance), got ", algorithm);
}

at::ScalarType acc_of(const at::Tensor& s) { return s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor pulling_away_cpu(const at::Tensor& s, double eps, int64_t algorithm) {
  check_args(s, eps, algorithm);
  const int64_t N = s.size(0), D = s.size(1);
  double pairs = 0.0;
  AT_DISPATCH_FLOATING_TYPES(acc_of(s), "pulling_away_cpu", [&] {
    using T = scalar_t;
    const Rows<T> r = rows_of<T>(s, eps);
    if (algorithm == kGram) {
      pairs = gram_offdiagonal<T>(normalised(r).template data_ptr<T>(), N, D);
    } else {
      double fro = 0.0, diag = 0.0;
      for (double g : covariance(r)) fro += g * g;
      for (double q : r.q) diag += q * q;
      pairs = fro - diag;
    }
  });
  const double value = pairs / (double(N) * double(N - 1));
  return at::scalar_tensor(value, s.options().dtype(at::kDouble)).to(s.scalar_type());
}

at::Tensor pulling_away_backward_cpu(const at::Tensor& grad, const at::Tensor& s, double eps, int64_t algorithm) {
  check_args(s, eps, algorithm);
  TORCH_CHECK_VALUE(grad.numel() == 1, "grad must have one element, got shape ", grad.sizes());
  check_floating(grad, "grad");
  check_device(grad, s, "grad", "s");
  const int64_t N = s.size(0), D = s.size(1);
  const double c = 4.0 * grad.item<double>() / (double(N) * double(N - 1));
  at::Tensor out = at::empty({N, D}, s.options().dtype(acc_of(s)));
  AT_DISPATCH_FLOATING_TYPES(acc_of(s), "pulling_away_backward_cpu", [&] {
    using T = scalar_t;
    const Rows<T> r = rows_of<T>(s, eps);
    if (algorithm == kGram) {
      gram_gradient(r, c, out.data_ptr<T>());
    } else {
      covariance_gradient(r, c, out.data_ptr<T>());
    }
  });
  return out.to(s.scalar_type());
}

}  // namespace gankernels
