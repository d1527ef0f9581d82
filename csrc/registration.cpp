// Every schema of the gankernels op library, and the CPU kernels bound to them, in one place.
//
// The CUDA kernels are Triton launchers, registered for the same schemas from Python
// (gankernels/_ops.py, one table); the fake (meta) kernels and the autograd formulas live in
// gankernels/_ops.py too.  The math of each op: docs/ENGINE.md (pairwise engine) and docs/MATH.md.
#include <torch/library.h>

#include "ops.h"

namespace gankernels {

TORCH_LIBRARY(gankernels, m) {
  // pairwise engine: sums, flow fields and their derivatives (docs/ENGINE.md)
  m.def("ksum(Tensor x, Tensor? y, Tensor w, int family, float[] params) -> Tensor");
  // forward only: ksum over x in self mode and the same sums of the squared kernel values, one pass
  m.def("ksum_and_square(Tensor x, Tensor w, int family, float[] params) -> (Tensor, Tensor)");
  m.def(
      "ksum_backward(Tensor grad, Tensor x, Tensor? y, Tensor w, int family, float[] params, bool[3] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
  // <g, ksum(x, y, w)> = sum_ic g_ic sum_j k(x_i, y_j) w_jc with its gradients in x and y from the same pass
  m.def(
      "kform(Tensor x, Tensor? y, Tensor g, Tensor w, int family, float[] params, bool[2] output_mask) "
      "-> (Tensor, Tensor, Tensor)");
  m.def("kflow(Tensor x, Tensor? y, Tensor a, Tensor b, int family, float[] params) -> Tensor");
  m.def(
      "kflow_backward(Tensor grad, Tensor x, Tensor? y, Tensor a, Tensor b, int family, float[] params, "
      "bool[4] output_mask) -> (Tensor, Tensor, Tensor, Tensor)");
  // kernel-smoothed score
  m.def("smoothed_score(Tensor x, Tensor y, Tensor? w, float sigma) -> (Tensor, Tensor)");
  m.def(
      "smoothed_score_backward(Tensor grad, Tensor x, Tensor y, Tensor? w, float sigma, Tensor score, Tensor lse, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  // Langevin updates and chains
  m.def("langevin_step(Tensor x, Tensor drift, float step_size, float temperature, int seed) -> Tensor");
  m.def("langevin_step_(Tensor(a!) x, Tensor drift, float step_size, float temperature, int seed) -> ()");
  m.def(
      "kernel_langevin(Tensor x, Tensor centers, Tensor w, int family, float[] params, float step_size, int steps, "
      "float temperature, int seed) -> Tensor");
  m.def("kde_langevin(Tensor x, Tensor data, float[] sigmas, int steps_per_sigma, float eps, int seed) -> Tensor");
  // EBGAN pulling-away term
  m.def("pulling_away(Tensor s, float eps, int algorithm) -> Tensor");
  m.def("pulling_away_backward(Tensor grad, Tensor s, float eps, int algorithm) -> Tensor");
  // a kernel family's parameter check and derived constants, computed once here for both engines
  // (families.h: check_family_params, flat_constants): [mixture count, integer parameter, constants...],
  // rounded to dtype's accumulation type.  No tensors: a host-side op with one kernel for every key.
  m.def("family_constants(int family, float[] params, ScalarType dtype) -> float[]", &family_constants);
}

TORCH_LIBRARY_IMPL(gankernels, CPU, m) {
  m.impl("ksum", &ksum_cpu);
  m.impl("ksum_and_square", &ksum_and_square_cpu);
  m.impl("ksum_backward", &ksum_backward_cpu);
  m.impl("kform", &kform_cpu);
  m.impl("kflow", &kflow_cpu);
  m.impl("kflow_backward", &kflow_backward_cpu);
  m.impl("smoothed_score", &smoothed_score_cpu);
  m.impl("smoothed_score_backward", &smoothed_score_backward_cpu);
  m.impl("langevin_step", &langevin_step_cpu);
  m.impl("langevin_step_", &langevin_step_inplace_cpu);
  m.impl("kernel_langevin", &kernel_langevin_cpu);
  m.impl("kde_langevin", &kde_langevin_cpu);
  m.impl("pulling_away", &pulling_away_cpu);
  m.impl("pulling_away_backward", &pulling_away_backward_cpu);
}

// langevin_step_ mutates x: the version counter moves (ADInplaceOrView) and autograd refuses inputs that
// require grad, as PyTorch's own in-place ops do (the step is a sampling update, not differentiable).
TORCH_LIBRARY_IMPL(gankernels, ADInplaceOrView, m) {
  m.impl("langevin_step_", TORCH_FN(langevin_step_inplace_version));
}

TORCH_LIBRARY_IMPL(gankernels, Autograd, m) {
  m.impl("langevin_step_", TORCH_FN(langevin_step_inplace_autograd));
}

}  // namespace gankernels

// Importing gankernels._C runs the registrations above; the module itself is empty.
#include <Python.h>
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
