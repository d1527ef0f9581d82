// Argument checks of the pairwise ops (csrc/pairwise.cpp), run first thing in each
// CPU kernel, before any input is copied or read: the kernel family and its
// parameters (families.h), then shapes, dtypes and devices.  A direct call of a
// torch.ops.gankernels op with bad arguments raises ValueError / TypeError naming
// the argument.  The Triton launchers apply the same rules (gankernels/_checks.py).
#pragma once

#include <optional>

#include "families.h"
#include "tensor_utils.h"

namespace gankernels {

// ksum(x, y?, w): w [M, C].
inline void check_ksum_args(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& w,
                            int64_t family, c10::ArrayRef<double> params) {
  check_family_params(family, params);
  const int64_t M = check_point_pair(x, y, "x", "y");
  check_matrix(w, M, -1, "w", x, "x");
}

// ksum_and_square(x, w): self mode, w [N, C].
inline void check_ksum_and_square_args(const at::Tensor& x, const at::Tensor& w, int64_t family,
                                       c10::ArrayRef<double> params) {
  check_ksum_args(x, std::nullopt, w, family, params);
}

// ksum_backward(grad, x, y?, w): grad [N, C] with w [M, C].
inline void check_ksum_backward_args(const at::Tensor& grad, const at::Tensor& x, const std::optional<at::Tensor>& y,
                                     const at::Tensor& w, int64_t family, c10::ArrayRef<double> params) {
  check_ksum_args(x, y, w, family, params);
  check_matrix(grad, x.size(0), w.size(1), "grad", x, "x");
}

// kform(x, y?, g, w): g [N, C] with w [M, C].
inline void check_kform_args(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& g,
                             const at::Tensor& w, int64_t family, c10::ArrayRef<double> params) {
  check_ksum_args(x, y, w, family, params);
  check_matrix(g, x.size(0), w.size(1), "g", x, "x");
}

// kflow(x, y?, a, b): a [N, C], b [M, C].
inline void check_kflow_args(const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
                             const at::Tensor& b, int64_t family, c10::ArrayRef<double> params) {
  check_family_params(family, params);
  const int64_t M = check_point_pair(x, y, "x", "y");
  check_matrix(a, x.size(0), -1, "a", x, "x");
  check_matrix(b, M, a.size(1), "b", x, "x");
}

// kflow_backward(grad, x, y?, a, b): grad [N, D].
inline void check_kflow_backward_args(const at::Tensor& grad, const at::Tensor& x,
                                      const std::optional<at::Tensor>& y, const at::Tensor& a, const at::Tensor& b,
                                      int64_t family, c10::ArrayRef<double> params) {
  check_kflow_args(x, y, a, b, family, params);
  check_matrix(grad, x.size(0), x.size(1), "grad", x, "x");
}

}  // namespace gankernels
