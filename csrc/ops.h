// The CPU kernels of every gankernels op, declared in one place; registration.cpp binds them to the
// schemas.  Pairwise engine ops: pairwise.cpp.  Score: score.cpp; Langevin: langevin.cpp.  Pulling-away: pulling_away.cpp.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DispatchKeySet.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

namespace gankernels {

// pairwise.cpp (docs/ENGINE.md)
at::Tensor ksum_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& w, int64_t family,
                    at::ArrayRef<double> params);
std::tuple<at::Tensor, at::Tensor> ksum_and_square_cpu(const at::Tensor& x, const at::Tensor& w, int64_t family,
                                                       at::ArrayRef<double> params);
std::tuple<at::Tensor, at::Tensor, at::Tensor> ksum_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                 const std::optional<at::Tensor>& y,
                                                                 const at::Tensor& w, int64_t family,
                                                                 at::ArrayRef<double> params,
                                                                 std::array<bool, 3> mask);
std::tuple<at::Tensor, at::Tensor, at::Tensor> kform_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y,
                                                         const at::Tensor& g, const at::Tensor& w, int64_t family,
                                                         at::ArrayRef<double> params, std::array<bool, 2> mask);
at::Tensor kflow_cpu(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
                     const at::Tensor& b, int64_t family, at::ArrayRef<double> params);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kflow_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
    const at::Tensor& b, int64_t family, at::ArrayRef<double> params, std::array<bool, 4> mask);

// score.cpp (smoothed score) and langevin.cpp (Langevin updates and chains)
std::tuple<at::Tensor, at::Tensor> smoothed_score_cpu(const at::Tensor& x, const at::Tensor& y,
                                                      const std::optional<at::Tensor>& w, double sigma);
std::tuple<at::Tensor, at::Tensor, at::Tensor> smoothed_score_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const std::optional<at::Tensor>& w,
    double sigma, const at::Tensor& score, const at::Tensor& lse, std::array<bool, 3> mask);
at::Tensor langevin_step_cpu(const at::Tensor& x, const at::Tensor& drift, double step_size, double temperature,
                             int64_t seed);
void langevin_step_inplace_cpu(at::Tensor& x, const at::Tensor& drift, double step_size, double temperature,
                               int64_t seed);
void langevin_step_inplace_version(c10::DispatchKeySet ks, at::Tensor& x, const at::Tensor& drift,
                                   double step_size, double temperature, int64_t seed);
void langevin_step_inplace_autograd(c10::DispatchKeySet ks, at::Tensor& x, const at::Tensor& drift,
                                    double step_size, double temperature, int64_t seed);
at::Tensor kernel_langevin_cpu(const at::Tensor& x, const at::Tensor& centers, const at::Tensor& w, int64_t family,
                               at::ArrayRef<double> params, double step_size, int64_t steps, double temperature,
                               int64_t seed);
at::Tensor kde_langevin_cpu(const at::Tensor& x, const at::Tensor& data, at::ArrayRef<double> sigmas,
                            int64_t steps_per_sigma, double eps, int64_t seed);

// pairwise.cpp: the family's derived constants in the layout the Triton engine reads (families.h)
std::vector<double> family_constants(int64_t family, at::ArrayRef<double> params, at::ScalarType dtype);

// pulling_away.cpp
at::Tensor pulling_away_cpu(const at::Tensor& s, double eps, int64_t algorithm);
at::Tensor pulling_away_backward_cpu(const at::Tensor& grad, const at::Tensor& s, double eps, int64_t algorithm);

}  // namespace gankernels
