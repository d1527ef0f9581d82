// Input checks and dtype handling shared by the op translation units.
//
// Inputs of any strides and of dtype float16, bfloat16, float32 or float64 are
// copied once to contiguous fp32 (fp64 for fp64) -- the accumulation type --
// and outputs are cast back to the input dtype.
#pragma once

#include <ATen/ATen.h>

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

inline void check_rows(const at::Tensor& t, int64_t rows, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == rows, name, " must be 2-D with ", rows, " rows, got shape ",
                    t.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor");
}

}  // namespace gankernels
