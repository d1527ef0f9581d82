// CPU kernels of the four pairwise primitives (docs/ENGINE.md): ksum, ksum_backward, kflow, kflow_backward;
// the forward-only ksum_and_square (ksum in self mode plus the sums of the squared kernel values, one pass);
// and kform, the scalar <g, ksum(x, y, w)> together with its gradient in x and y (one pass: the forward of a
// scalar loss such as mmd2 that computes its backward while the tiles are in cache).
//
// Each checks its arguments (checks.h), copies the inputs once to contiguous fp32 (fp64 for fp64) --
// O((N + M) D) -- shifts radial inputs by their common mean where that pays, runs the tiled engine of
// engine.h and casts the outputs back to the input dtype.  Schemas: registration.cpp; fakes, autograd
// and the CUDA (Triton) kernels: gankernels/_ops.py.

#include <array>
#include <cmath>
#include <tuple>

#include "checks.h"
#include "engine.h"
#include "ops.h"
#include "tensor_utils.h"

namespace gankernels {

struct Prepared {
  at::ScalarType acc;
  at::Tensor x, y;    // in the accumulation type; radial kernels: shifted by the common centre (shift_radial)
  at::Tensor x0, y0;  // unshifted (for exact differences); y, y0 undefined in self mode
  int64_t N, M, D;
  bool self;
};

// Radial kernels depend on x - y only: shifting both sets by their common mean c changes no output but
// keeps the |a|^2 + |b|^2 - 2 a.b expansion and the factored flows accurate far from the origin.  The
// shift is applied only where it pays (|c|^2 above the mean squared distance to c: the rounding of
// x - c is then small against what the expansion would lose), and only if c is finite.
void shift_radial(Prepared& p, int64_t family) {
  p.x0 = p.x;
  p.y0 = p.y;
  if (!is_radial(family)) return;
  const double count = static_cast<double>(p.self ? p.N : p.N + p.M);
  at::Tensor total = p.self ? p.x.sum(0) : p.x.sum(0) + p.y.sum(0);
  at::Tensor sq = p.self ? p.x.square().sum() : p.x.square().sum() + p.y.square().sum();
  at::Tensor c = total / count;
  const double c2 = c.square().sum().item<double>();
  const double spread2 = sq.item<double>() / count - c2;
  if (!std::isfinite(c2) || !std::isfinite(spread2) || c2 <= spread2) return;
  p.x = p.x - c;
  if (!p.self) p.y = p.y - c;
}

// Arguments already checked (checks.h: check_*_args, first thing in every op).
Prepared prepare(const at::Tensor& x, const std::optional<at::Tensor>& y, int64_t family) {
  Prepared p;
  p.acc = acc_type(x);
  p.self = !y.has_value();
  p.x = prep(x, p.acc);
  p.N = x.size(0);
  p.D = x.size(1);
  if (p.self) {
    p.M = p.N;
  } else {
    p.y = prep(*y, p.acc);
    p.M = y->size(0);
  }
  shift_radial(p, family);
  return p;
}

template <typename T>
Job<T> base_job(const Prepared& p) {
  Job<T> job;
  job.X = p.x.data_ptr<T>();
  job.Y = p.self ? job.X : p.y.data_ptr<T>();
  job.X0 = p.x0.data_ptr<T>();
  job.Y0 = p.self ? job.X0 : p.y0.data_ptr<T>();
  job.N = p.N;
  job.M = p.M;
  job.D = p.D;
  job.self = p.self;
  return job;
}

template <typename T>
T* ptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; }

// The sum job: out [N, C] = sum_j k(x_i, y_j) w_jc; with out_sq (self mode), the sums of k(x_i, y_j)^2 from
// the same tiles.  out / out_sq: zeros in the accumulation type.
void run_sum(const Prepared& p, const at::Tensor& wa, int64_t family, at::ArrayRef<double> params, at::Tensor& out,
             at::Tensor* out_sq) {
  AT_DISPATCH_FLOATING_TYPES(p.acc, "ksum_cpu", [&] {
    Family<scalar_t> fam(family, params.vec());
    Job<scalar_t> job = base_job<scalar_t>(p);
    job.Cs = wa.size(1);
    job.sum_wr = wa.data_ptr<scalar_t>();
    if (p.self) job.sum_wc = job.sum_wr;
    job.sum_sq = out_sq != nullptr;
    Outputs<scalar_t> o;
    o.sum_row = out.data_ptr<scalar_t>();
    if (out_sq) o.sum_sq_row = out_sq->data_ptr<scalar_t>();
    run_job(job, fam, o);
  });
}

at::Tensor ksum_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& w, int64_t family,
                    at::ArrayRef<double> params) {
  check_ksum_args(x, y, w, family, params);
  Prepared p = prepare(x, y, family);
  at::Tensor wa = prep(w, p.acc);
  at::Tensor out = at::zeros({p.N, w.size(1)}, x.options().dtype(p.acc));
  run_sum(p, wa, family, params, out, nullptr);
  return out.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> ksum_and_square_cpu(const at::Tensor& x, const at::Tensor& w, int64_t family,
                                                       at::ArrayRef<double> params) {
  check_ksum_and_square_args(x, w, family, params);
  Prepared p = prepare(x, std::nullopt, family);
  at::Tensor wa = prep(w, p.acc);
  at::Tensor out = at::zeros({p.N, w.size(1)}, x.options().dtype(p.acc));
  at::Tensor out_sq = at::zeros_like(out);
  run_sum(p, wa, family, params, out, &out_sq);
  return {out.to(x.scalar_type()), out_sq.to(x.scalar_type())};
}

// ksum_backward / kform: the points, and the weights g [N, C] and w [M, C] in the accumulation type.
std::tuple<Prepared, at::Tensor, at::Tensor> prepare_form(const at::Tensor& x, const std::optional<at::Tensor>& y,
                                                          const at::Tensor& g, const at::Tensor& w, int64_t family) {
  Prepared p = prepare(x, y, family);
  at::Tensor ga = prep(g, p.acc), wa = prep(w, p.acc);
  return {std::move(p), std::move(ga), std::move(wa)};
}

// The flow part of ksum_backward's job: gx (row side) and gy (column side) of sum_ic g_ic ksum(x, y, w)_ic for
// fixed w.  Self mode: d/dx of sum_ab (g_a . w_b) k_ab has the symmetric pair weight g_a . w_b + w_a . g_b, whose
// two factors [g, w] and [w, g] are built here and must outlive the run (`keep`).
template <typename T>
void add_gradient_flows(const Prepared& p, const at::Tensor& ga, const at::Tensor& wa, bool need_x, bool need_y,
                        at::Tensor& gx, at::Tensor& gy, std::array<at::Tensor, 2>& keep, Job<T>& job,
                        Outputs<T>& o) {
  if (p.self) {
    if (!need_x) return;
    keep = {at::cat({ga, wa}, 1).contiguous(), at::cat({wa, ga}, 1).contiguous()};
    job.Cf = 2 * wa.size(1);
    job.flow_ar = keep[0].data_ptr<T>();
    job.flow_br = keep[1].data_ptr<T>();
    job.flow_ac = job.flow_ar;  // the pair weight is symmetric
    job.flow_bc = job.flow_br;
    o.flow_row = gx.data_ptr<T>();
    return;
  }
  job.Cf = wa.size(1);
  if (need_x) {
    job.flow_ar = ga.data_ptr<T>();
    job.flow_br = wa.data_ptr<T>();
    o.flow_row = gx.data_ptr<T>();
  }
  if (need_y) {
    job.flow_ac = ga.data_ptr<T>();
    job.flow_bc = wa.data_ptr<T>();
    o.flow_col = gy.data_ptr<T>();
  }
}

// Zero gradients [N, D] and [M, D] ([0, D] in self mode) in the accumulation type.
std::tuple<at::Tensor, at::Tensor> zero_point_grads(const Prepared& p, const at::Tensor& x) {
  auto opts = x.options().dtype(p.acc);
  return {at::zeros({p.N, p.D}, opts), at::zeros({p.self ? 0 : p.M, p.D}, opts)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ksum_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                 const std::optional<at::Tensor>& y,
                                                                 const at::Tensor& w, int64_t family,
                                                                 at::ArrayRef<double> params,
                                                                 std::array<bool, 3> mask) {
  check_ksum_backward_args(grad, x, y, w, family, params);
  auto [p, ga, wa] = prepare_form(x, y, grad, w, family);
  const int64_t C = w.size(1);
  const bool need_x = mask[0], need_y = mask[1] && !p.self, need_w = mask[2];
  auto [gx, gy] = zero_point_grads(p, x);
  at::Tensor gw = at::zeros({p.M, C}, x.options().dtype(p.acc));
  std::array<at::Tensor, 2> keep;
  AT_DISPATCH_FLOATING_TYPES(p.acc, "ksum_backward_cpu", [&] {
    Family<scalar_t> fam(family, params.vec());
    Job<scalar_t> job = base_job<scalar_t>(p);
    Outputs<scalar_t> o;
    if (need_w) {  // gw_jc = sum_i k_ij g_ic: a column-side sum (the row side in self mode, k symmetric)
      job.Cs = C;
      job.sum_wc = ga.data_ptr<scalar_t>();
      if (p.self) {
        job.sum_wr = job.sum_wc;
        o.sum_row = gw.data_ptr<scalar_t>();
      } else {
        o.sum_col = gw.data_ptr<scalar_t>();
      }
    }
    add_gradient_flows(p, ga, wa, need_x, need_y, gx, gy, keep, job, o);
    run_job(job, fam, o);
  });
  const auto dt = x.scalar_type();
  return {gx.to(dt), gy.to(dt), gw.to(dt)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> kform_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y,
                                                         const at::Tensor& g, const at::Tensor& w, int64_t family,
                                                         at::ArrayRef<double> params, std::array<bool, 2> mask) {
  check_kform_args(x, y, g, w, family, params);
  auto [p, ga, wa] = prepare_form(x, y, g, w, family);
  at::Tensor out = at::zeros({p.N, w.size(1)}, x.options().dtype(p.acc));
  auto [gx, gy] = zero_point_grads(p, x);
  std::array<at::Tensor, 2> keep;
  AT_DISPATCH_FLOATING_TYPES(p.acc, "kform_cpu", [&] {
    Family<scalar_t> fam(family, params.vec());
    Job<scalar_t> job = base_job<scalar_t>(p);
    Outputs<scalar_t> o;
    job.Cs = w.size(1);
    job.sum_wr = wa.data_ptr<scalar_t>();
    if (p.self) job.sum_wc = job.sum_wr;
    o.sum_row = out.data_ptr<scalar_t>();
    add_gradient_flows(p, ga, wa, mask[0], mask[1] && !p.self, gx, gy, keep, job, o);
    run_job(job, fam, o);
  });
  const auto dt = x.scalar_type();
  return {(ga * out).sum().to(dt), gx.to(dt), gy.to(dt)};
}

at::Tensor kflow_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
                     const at::Tensor& b, int64_t family, at::ArrayRef<double> params) {
  check_kflow_args(x, y, a, b, family, params);
  Prepared p = prepare(x, y, family);
  at::Tensor aa = prep(a, p.acc), ba = prep(b, p.acc);
  at::Tensor out = at::zeros({p.N, p.D}, x.options().dtype(p.acc));
  AT_DISPATCH_FLOATING_TYPES(p.acc, "kflow_cpu", [&] {
    Family<scalar_t> fam(family, params.vec());
    Job<scalar_t> job = base_job<scalar_t>(p);
    job.Cf = a.size(1);
    job.flow_ar = aa.data_ptr<scalar_t>();
    job.flow_br = ba.data_ptr<scalar_t>();
    if (p.self) {  // mirrored tile: row b against a uses weight a_b . b_a
      job.flow_ac = ba.data_ptr<scalar_t>();
      job.flow_bc = aa.data_ptr<scalar_t>();
    }
    Outputs<scalar_t> o;
    o.flow_row = out.data_ptr<scalar_t>();
    run_job(job, fam, o);
  });
  return out.to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kflow_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
    const at::Tensor& b, int64_t family, at::ArrayRef<double> params, std::array<bool, 4> mask) {
  check_kflow_backward_args(grad, x, y, a, b, family, params);
  Prepared p = prepare(x, y, family);
  const int64_t C = a.size(1);
  at::Tensor aa = prep(a, p.acc), ba = prep(b, p.acc), ha = prep(grad, p.acc);
  auto opts = x.options().dtype(p.acc);
  // self mode runs the full (non-symmetric) pass with y = x; the y-side gradient is added to gx.
  at::Tensor gx = at::zeros({p.N, p.D}, opts);
  at::Tensor gy = at::zeros({p.M, p.D}, opts);
  at::Tensor gA = at::zeros({p.N, C}, opts);
  at::Tensor gB = at::zeros({p.M, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(p.acc, "kflow_backward_cpu", [&] {
    Family<scalar_t> fam(family, params.vec());
    Job<scalar_t> job = base_job<scalar_t>(p);
    job.self = false;
    job.H = ha.data_ptr<scalar_t>();
    job.hvp_a = aa.data_ptr<scalar_t>();
    job.hvp_b = ba.data_ptr<scalar_t>();
    job.Ch = C;
    job.hvp_x = mask[0];
    job.hvp_y = p.self ? mask[0] : mask[1];
    job.hvp_ga = mask[2];
    job.hvp_gb = mask[3];
    Outputs<scalar_t> o;
    o.gx = job.hvp_x ? gx.data_ptr<scalar_t>() : nullptr;
    o.gy = job.hvp_y ? gy.data_ptr<scalar_t>() : nullptr;
    o.ga = job.hvp_ga ? gA.data_ptr<scalar_t>() : nullptr;
    o.gb = job.hvp_gb ? gB.data_ptr<scalar_t>() : nullptr;
    run_job(job, fam, o);
  });
  if (p.self) {
    gx.add_(gy);
    gy = at::zeros({0, p.D}, opts);
  }
  const auto dt = x.scalar_type();
  return {gx.to(dt), gy.to(dt), gA.to(dt), gB.to(dt)};
}

std::vector<double> family_constants(int64_t family, at::ArrayRef<double> params, at::ScalarType dtype) {
  const std::vector<double> p(params.begin(), params.end());
  return dtype == at::kDouble ? Family<double>(family, p).flat_constants() : Family<float>(family, p).flat_constants();
}

}  // namespace gankernels
