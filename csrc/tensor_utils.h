// Input checks and dtype handling shared by the op translation units.
//
// Inputs of any strides and of dtype float16, bfloat16, float32 or float64 are
// copied once to contiguous fp32 (fp64 for fp64) -- the accumulation type --
// and outputs are cast back to the input dtype.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>

namespace gankernels {

inline at::ScalarType acc_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline at::Tensor prep(const at::Tensor& t, at::ScalarType acc) { return t.to(acc).contiguous(); }

inline void check_points(const at::Tensor& x, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 2, name, " must be 2-D [points, dim], got ", x.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), name, " must be a floating tensor, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.size(0) > 0 && x.size(1) > 0, name, " must be non-empty, got shape ", x.sizes());
}

// t must live where ref does (a CPU kernel can be reached with a tensor of another
// device only through a mixed call; the message then names both).
inline void check_device(const at::Tensor& t, const at::Tensor& ref, const char* name, const char* ref_name) {
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " must be on the device of ", ref_name, " (", ref.device(),
                    "), got ", t.device());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ", t.scalar_type());
}

// t: 2-D [rows, cols] (cols < 0: any number of columns), floating, on ref's device.
inline void check_matrix(const at::Tensor& t, int64_t rows, int64_t cols, const char* name, const at::Tensor& ref,
                         const char* ref_name) {
  check_floating(t, name);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == rows && (cols < 0 || t.size(1) == cols), name,
                    " must have shape [", rows, ", ", cols < 0 ? std::string("C") : std::to_string(cols),
                    "], got ", t.sizes());
  check_device(t, ref, name, ref_name);
}

// t: 1-D [n], floating, on ref's device.
inline void check_vector(const at::Tensor& t, int64_t n, const char* name, const at::Tensor& ref,
                         const char* ref_name) {
  check_floating(t, name);
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n, "], got ", t.sizes());
  check_device(t, ref, name, ref_name);
}

// Points x [N, D] and y [M, D] of one floating dtype and device (y absent: self mode, M = N); -> M.
inline int64_t check_point_pair(const at::Tensor& x, const std::optional<at::Tensor>& y, const char* xname,
                                const char* yname) {
  check_points(x, xname);
  if (!y.has_value()) return x.size(0);
  check_points(*y, yname);
  TORCH_CHECK_TYPE(y->scalar_type() == x.scalar_type(), xname, " and ", yname, " must have the same dtype, got ",
                   x.scalar_type(), " and ", y->scalar_type());
  TORCH_CHECK_VALUE(y->size(1) == x.size(1), xname, " and ", yname, " must have the same dimension, got ",
                    x.size(1), " and ", y->size(1));
  check_device(*y, x, yname, xname);
  return y->size(0);
}

}  // namespace gankernels
