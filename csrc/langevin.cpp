// Fused Langevin updates (CPU): x <- x + eta drift + sqrt(2 eta tau) xi with the counter-based noise
// of noise.h (same seed, same samples, any thread count).
//
// langevin_step(_) is one pass over memory; kernel_langevin runs a whole chain in one op call, each step
// one pairwise-engine pass for the flow field sum_j w_j grad_1 k(x_i, c_j) followed by the update;
// kde_langevin runs the annealed chain x <- x + (alpha_k / 2) score + sqrt(alpha_k) xi with the score
// computed (score.h) and the update applied per row block while the block is in cache.  The math:
// docs/MATH.md (Langevin).  Memory: O(N D); nothing N x M.  The noise is fp32 Box-Muller.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "noise.h"
#include "ops.h"
#include "score.h"

namespace gankernels {

// ---------------------------------------------------------------- Langevin update

constexpr int64_t kNoiseChunk = 256;  // normals generated, then used, while in L1

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
