// Kernel families for the CPU pairwise engine.
//
// A kernel is k(a, b) = phi(z) with z = ||a - b||^2 (radial) or z = a . b (dot
// product).  `Family<T>::eval` turns a contiguous array of z values into phi,
// phi' and phi'' (each optional), one family per call so that every inner loop
// is a plain, vectorisable loop over the array.  Mixtures loop over their
// bandwidths outside the element loop.  Parameter layout and the formulas are
// documented in docs/ENGINE.md and gankernels/kernels.py.
//
// Gaussian mixtures use the doubling ladder exp(-z/2s^2) = exp(-z/2(2s)^2)^4:
// bandwidths sorted descending, a bandwidth whose ratio to the previous one is
// 2^m reuses the previous exponential raised to 4^m.  At most two ladder steps
// follow a fresh exponential, which bounds the error amplification to 16x one
// rounding.  Results below 1e-30 (fp32) are flushed to 0 so that squaring never
// produces subnormals.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

namespace gankernels {

enum FamilyCode : int64_t {
  kGaussian = 0, kRationalQuadratic = 1, kInverseMultiquadric = 2, kLaplacian = 3,
  kEnergy = 4, kPolyharmonic = 5, kPolynomial = 6, kLinear = 7,
};

inline bool is_radial(int64_t family) { return family != kPolynomial && family != kLinear; }

// exp(x) for x <= 0 ... moderate positive x, vectorisable (no calls, no branches
// the compiler cannot turn into blends).  Cody-Waite range reduction and a
// degree-6 polynomial: about 1 ulp.  NaN propagates.  Flushes below 1e-30.
inline float fast_exp(float x) {
  const float kFlush = -69.0f;  // exp(-69) ~ 1e-30
  float xc = x > 88.0f ? 88.0f : x;
  xc = xc < kFlush ? kFlush : xc;
  const float n = std::nearbyint(xc * 1.44269504088896341f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  float out = p * scale;
  return x < kFlush ? 0.0f : out;  // NaN < kFlush is false: NaN stays (p is NaN)
}
inline double fast_exp(double x) { return std::exp(x); }

template <typename T> inline T flush_tiny(T v);
template <> inline float flush_tiny(float v) { return v < 1e-30f ? 0.0f : v; }
template <> inline double flush_tiny(double v) { return v < 1e-280 ? 0.0 : v; }

// ---------------------------------------------------------------- parameter checks
//
// The rules of gankernels/kernels.py, applied to the raw (family, params) pair that
// every op receives, so that a direct call of a torch.ops.gankernels op with a
// wrong count or an out-of-range value raises instead of reading past the end of
// the parameter array or computing garbage.  gankernels/_checks.py has the same
// rules for the Triton launchers.  Integer parameters (Polyharmonic k, Polynomial
// degree) are limited to |v| <= 2^24, where a float holds them exactly.

constexpr int64_t kNumFamilies = 8;
constexpr double kMaxIntParam = 16777216.0;  // 2^24

inline const char* family_name(int64_t family) {
  static const char* names[kNumFamilies] = {"Gaussian", "RationalQuadratic", "InverseMultiquadric", "Laplacian",
                                            "Energy", "Polyharmonic", "Polynomial", "Linear"};
  return family >= 0 && family < kNumFamilies ? names[family] : "unknown";
}

// params[i] (called `what`) of `family` must satisfy `ok`; `rule` says how.
inline void check_param(bool ok, int64_t family, size_t i, const char* what, const char* rule, double v) {
  TORCH_CHECK_VALUE(ok, "params[", i, "] (", what, ") of kernel family ", family, " (", family_name(family),
                    ") must be ", rule, ", got ", v);
}

inline void check_param_count(bool ok, int64_t family, const char* layout, size_t n) {
  TORCH_CHECK_VALUE(ok, "params of kernel family ", family, " (", family_name(family), ") must be ", layout,
                    ", got ", n, " value(s)");
}

inline bool is_int_param(double v) {
  return std::isfinite(v) && v == std::nearbyint(v) && std::fabs(v) <= kMaxIntParam;
}

inline void check_family_params(int64_t family, c10::ArrayRef<double> params) {
  TORCH_CHECK_VALUE(family >= 0 && family < kNumFamilies, "family must be a kernel family code in [0, ",
                    kNumFamilies - 1, "] (see gankernels/kernels.py), got ", family);
  const size_t n = params.size();
  auto positive = [](double v) { return std::isfinite(v) && v > 0; };
  switch (family) {
    case kGaussian:
    case kLaplacian:
      check_param_count(n >= 1, family, "[sigma_1, ..., sigma_K] with K >= 1", n);
      for (size_t i = 0; i < n; ++i)
        check_param(positive(params[i]), family, i, "sigma", "positive and finite", params[i]);
      break;
    case kRationalQuadratic:
      check_param_count(n >= 2, family, "[lengthscale, alpha_1, ..., alpha_K] with K >= 1", n);
      check_param(positive(params[0]), family, 0, "lengthscale", "positive and finite", params[0]);
      for (size_t i = 1; i < n; ++i)
        check_param(positive(params[i]), family, i, "alpha", "positive and finite", params[i]);
      break;
    case kInverseMultiquadric:
      check_param_count(n >= 2, family, "[beta, c_1, ..., c_K] with K >= 1", n);
      check_param(std::isfinite(params[0]) && params[0] < 0, family, 0, "beta", "negative and finite", params[0]);
      for (size_t i = 1; i < n; ++i)
        check_param(positive(params[i]), family, i, "c", "positive and finite", params[i]);
      break;
    case kEnergy:
    case kLinear:
      check_param_count(n == 0, family, "empty", n);
      break;
    case kPolyharmonic:
      check_param_count(n == 2, family, "[k, eps]", n);
      check_param(is_int_param(params[0]), family, 0, "k", "an integer with |k| <= 2^24", params[0]);
      check_param(std::isfinite(params[1]) && params[1] >= 0, family, 1, "eps", "non-negative and finite",
                  params[1]);
      check_param(params[0] > 0 || params[1] > 0, family, 1, "eps", "positive when k <= 0", params[1]);
      break;
    case kPolynomial:
      check_param_count(n == 3, family, "[degree, gamma, coef0]", n);
      check_param(is_int_param(params[0]) && params[0] >= 1, family, 0, "degree", "an integer in [1, 2^24]",
                  params[0]);
      check_param(positive(params[1]), family, 1, "gamma", "positive and finite", params[1]);
      check_param(std::isfinite(params[2]), family, 2, "coef0", "finite", params[2]);
      break;
  }
}

template <typename T>
struct Family {
  int64_t code = 0;
  std::vector<T> p;       // family parameters (see below)
  std::vector<int> ladder;  // Gaussian: 0 = fresh exp, m > 0 = previous^(4^m)

  Family(int64_t family, const std::vector<double>& params) : code(family) {
    check_family_params(family, params);
    switch (family) {
      case kGaussian: {
        std::vector<double> s(params);
        std::sort(s.begin(), s.end(), std::greater<double>());
        int chain = 0;
        for (size_t k = 0; k < s.size(); ++k) {
          int m = 0;
          if (k > 0) {
            double ratio = s[k - 1] / s[k];
            int e = 0;
            double frac = std::frexp(ratio, &e);  // ratio = frac * 2^e, frac in [0.5, 1)
            if (frac == 0.5 && e - 1 >= 1 && chain + (e - 1) <= 2) m = e - 1;
          }
          chain = m ? chain + m : 0;
          ladder.push_back(m);
          p.push_back(static_cast<T>(-0.5 / (s[k] * s[k])));  // exponent coefficient
        }
        break;
      }
      case kRationalQuadratic:  // [l, alphas...]
      case kInverseMultiquadric:  // [beta, c...]
      case kLaplacian:            // [sigmas...]
      case kPolyharmonic:         // [k, eps]
      case kPolynomial:           // [degree, gamma, coef0]
        for (double v : params) p.push_back(static_cast<T>(v));
        break;
      case kEnergy:
      case kLinear:
        break;
      default:
        TORCH_CHECK_VALUE(false, "unknown kernel family code ", family);
    }
  }

  bool radial() const { return is_radial(code); }
  // phi' unbounded at z = 0: Laplacian, Energy, Polyharmonic without eps (flows are then summed pair by pair)
  bool kinked() const {
    return code == kLaplacian || code == kEnergy || (code == kPolyharmonic && p[1] == T(0));
  }

  // v[i] = phi(z[i]), d1[i] = phi'(z[i]), d2[i] = phi''(z[i]); any output may be null.
  // `tmp` is scratch of n elements.
  void eval(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2,
            T* __restrict tmp) const {
    if (v) std::fill(v, v + n, T(0));
    if (d1) std::fill(d1, d1 + n, T(0));
    if (d2) std::fill(d2, d2 + n, T(0));
    switch (code) {
      case kGaussian: {
        for (size_t k = 0; k < p.size(); ++k) {
          const T c = p[k];
          if (ladder[k] == 0) {
            for (int64_t i = 0; i < n; ++i) tmp[i] = fast_exp(c * z[i]);
          } else {
            for (int m = 0; m < ladder[k]; ++m)
              for (int64_t i = 0; i < n; ++i) {
                T e2 = flush_tiny(tmp[i] * tmp[i]);
                tmp[i] = flush_tiny(e2 * e2);
              }
          }
          if (v) for (int64_t i = 0; i < n; ++i) v[i] += tmp[i];
          if (d1) for (int64_t i = 0; i < n; ++i) d1[i] += c * tmp[i];
          if (d2) { const T c2 = c * c; for (int64_t i = 0; i < n; ++i) d2[i] += c2 * tmp[i]; }
        }
        break;
      }
      case kRationalQuadratic: {
        const T l2 = p[0] * p[0];
        for (size_t k = 1; k < p.size(); ++k) {
          const T a = p[k], inv = T(1) / (T(2) * a * l2);
          for (int64_t i = 0; i < n; ++i) {
            const T base = T(1) + z[i] * inv;
            const T val = std::exp(-a * std::log(base));
            const T ib = T(1) / base;
            if (v) v[i] += val;
            if (d1) d1[i] += -val * ib / (T(2) * l2);
            if (d2) d2[i] += (a + T(1)) * val * ib * ib / (T(4) * a * l2 * l2);
          }
        }
        break;
      }
      case kInverseMultiquadric: {
        const T beta = p[0];
        for (size_t k = 1; k < p.size(); ++k) {
          const T c2 = p[k] * p[k];
          for (int64_t i = 0; i < n; ++i) {
            const T q = c2 + z[i];
            const T val = beta == T(-0.5) ? T(1) / std::sqrt(q) : std::exp(beta * std::log(q));
            const T iq = T(1) / q;
            if (v) v[i] += val;
            if (d1) d1[i] += beta * val * iq;
            if (d2) d2[i] += beta * (beta - T(1)) * val * iq * iq;
          }
        }
        break;
      }
      case kLaplacian: {
        for (int64_t i = 0; i < n; ++i) tmp[i] = std::sqrt(z[i]);
        for (size_t k = 0; k < p.size(); ++k) {
          const T is = T(1) / p[k];
          for (int64_t i = 0; i < n; ++i) {
            const T r = tmp[i];
            const T e = fast_exp(-r * is);
            const bool kink = r == T(0);
            const T ir = kink ? T(0) : T(1) / r;
            if (v) v[i] += e;
            if (d1) d1[i] += -e * is * T(0.5) * ir;
            if (d2) d2[i] += e * (T(0.25) * is * is * ir * ir + T(0.25) * is * ir * ir * ir);
          }
        }
        break;
      }
      case kEnergy: {
        for (int64_t i = 0; i < n; ++i) {
          const T r = std::sqrt(z[i]);
          const T ir = r == T(0) ? T(0) : T(1) / r;
          if (v) v[i] = -r;
          if (d1) d1[i] = T(-0.5) * ir;
          if (d2) d2[i] = T(0.25) * ir * ir * ir;
        }
        break;
      }
      case kPolyharmonic: {
        const int64_t k = static_cast<int64_t>(p[0]);
        const T eps2 = p[1] * p[1];
        const T h = T(0.5) * static_cast<T>(k);
        const bool even = (k % 2) == 0;
        for (int64_t i = 0; i < n; ++i) {
          const T q = z[i] + eps2;
          const bool kink = q == T(0);
          const T qs = kink ? T(1) : q;  // safe value at the kink; results masked below
          const T lq = std::log(qs);
          const T qh = std::exp(h * lq);          // q^h
          const T qh1 = qh / qs, qh2 = qh1 / qs;  // q^(h-1), q^(h-2)
          T val, g1, g2;
          if (even) {
            val = T(0.5) * qh * lq;
            g1 = T(0.5) * h * qh1 * lq + T(0.5) * qh1;
            g2 = T(0.5) * h * (h - T(1)) * qh2 * lq + (T(0.5) * h + T(0.5) * (h - T(1))) * qh2;
          } else {
            val = qh;
            g1 = h * qh1;
            g2 = h * (h - T(1)) * qh2;
          }
          if (v) v[i] = kink ? T(0) : val;
          if (d1) d1[i] = kink ? T(0) : g1;
          if (d2) d2[i] = kink ? T(0) : g2;
          if (q != q) {  // NaN in, NaN out
            if (v) v[i] = q;
            if (d1) d1[i] = q;
            if (d2) d2[i] = q;
          }
        }
        break;
      }
      case kPolynomial: {
        const int64_t deg = static_cast<int64_t>(p[0]);
        const T gamma = p[1], c0 = p[2];
        for (int64_t i = 0; i < n; ++i) {
          const T w = gamma * z[i] + c0;
          T pw2 = T(1);  // w^(deg-2)
          for (int64_t e = 0; e < deg - 2; ++e) pw2 *= w;
          const T pw1 = deg >= 2 ? pw2 * w : T(1);  // w^(deg-1)
          if (v) v[i] = pw1 * w;
          if (d1) d1[i] = static_cast<T>(deg) * gamma * pw1;
          if (d2) d2[i] = deg >= 2 ? static_cast<T>(deg * (deg - 1)) * gamma * gamma * pw2 : T(0);
        }
        break;
      }
      case kLinear: {
        for (int64_t i = 0; i < n; ++i) {
          if (v) v[i] = z[i];
          if (d1) d1[i] = T(1);
        }
        break;
      }
    }
  }
};

}  // namespace gankernels
