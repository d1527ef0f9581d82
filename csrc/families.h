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
//
// Extreme parameters.  Every derived constant is computed in double
// from the double params and rounded to T once.  A component whose constants
// leave [2^-e, 2^e] (e = max_exponent / 3 of T: 2^42 for fp32, 2^341 for fp64)
// is "steep" and takes a guarded loop instead of the plain one:
// * a coefficient u that overflows T (Gaussian 1/(2 s^2), Laplacian 1/s,
//   1/s of RationalQuadratic / InverseMultiquadric) is applied as a * (b * z)
//   with a b = u (a = b = sqrt(u), clamped to the largest finite T), so z = 0
//   gives phi(0) exactly and z > 0 the limit (0), never inf * 0 = NaN;
// * RationalQuadratic and InverseMultiquadric are both C (1 + z/s)^beta
//   (RQ: s = 2 alpha l^2, beta = -alpha, C = 1; IMQ: s = c^2, C = c^(2 beta)),
//   evaluated as C exp(beta log1p(z/s)) while z/s <= big and as
//   exp(beta (log(z + s) - log s)) beyond, with log s folded in double, so
//   tiny and huge scales both work (pow_steep below);
// * phi'(0), phi''(0) whose magnitude exceeds max(T) / 256 are returned as 0:
//   they only ever multiply x_i - y_j = 0 (flows, and the Hessian terms
//   through h . grad z); the one term they would enter, 2 phi'(0) h of a
//   Hessian-vector product at coincident points, is not representable then.
// Families whose |phi'(0)| exceeds 2^40 also report kinked(): the engine then
// sums their flows pair by pair, as for the kinks (the factored form
// 2 (x_i sum_j w_ij - sum_j w_ij y_j) would cancel catastrophically or overflow).
// Common parameters keep the plain loops (no extra branch or transcendental
// per element).  Polynomial degrees are carried exactly as int64 (params are
// double; the Python side bounds them by 2^53) and powers use repeated squaring.
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
// Always inlined: called through the PLT (-fPIC) it does not vectorise and the
// Gaussian ksum runs ~2.5x slower.
__attribute__((always_inline)) inline float fast_exp(float x) {
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
__attribute__((always_inline)) inline double fast_exp(double x) { return std::exp(x); }

template <typename T> inline T flush_tiny(T v);
template <> inline float flush_tiny(float v) { return v < 1e-30f ? 0.0f : v; }
template <> inline double flush_tiny(double v) { return v < 1e-280 ? 0.0 : v; }

// ---------------------------------------------------------------- parameter checks
//
// The rules of gankernels/kernels.py, applied to the raw (family, params) pair that
// every op receives, so that a direct call of a torch.ops.gankernels op with a
// wrong count or an out-of-range value raises instead of reading past the end of
// the parameter array or computing garbage.  gankernels/_checks.py has the same
// rules for the Triton launchers.  Polyharmonic k is limited to |k| <= 2^24; the
// Polynomial degree to [1, 2^53] (exact in the double params, evaluated by squaring).

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
      check_param(std::isfinite(params[0]) && params[0] == std::nearbyint(params[0]) && params[0] >= 1 &&
                      params[0] <= 9007199254740992.0,
                  family, 0, "degree", "an integer in [1, 2^53]", params[0]);
      check_param(positive(params[1]), family, 1, "gamma", "positive and finite", params[1]);
      check_param(std::isfinite(params[2]), family, 2, "coef0", "finite", params[2]);
      break;
  }
}

// Limits of the accumulation type for the derived constants (see the header comment).
template <typename T>
struct Limits {
  static double max() { return static_cast<double>(std::numeric_limits<T>::max()); }
  static double min_normal() { return static_cast<double>(std::numeric_limits<T>::min()); }
  static double hi() { return std::ldexp(1.0, std::numeric_limits<T>::max_exponent / 3); }
  static double lo() { return std::ldexp(1.0, -(std::numeric_limits<T>::max_exponent / 3)); }
  // pow_steep: z/s up to `big` goes through log1p (1 / eps: beyond it, s is below rounding of z + s)
  static double big() { return 1.0 / static_cast<double>(std::numeric_limits<T>::epsilon()); }
  // exp(-room) stays a normal number: keeps C (1 + big)^beta from underflowing while C is large
  static double exp_room() { return sizeof(T) == 4 ? 60.0 : 600.0; }
};

// A positive coefficient u (computed in double) as a product a * b in T: b = 1 while u fits T, else
// a = b = sqrt(u) (`root`, computed by the caller without overflow; clamped to max(T)).  Applied as
// a * (b * z), so that z = 0 gives exactly 0 and z > 0 the overflow limit, never inf * 0 = NaN.  The
// kernel families and the smoothed score (score.h) split their coefficients with this one rule.
template <typename T>
inline void split_coefficient(double u, double root, T& a, T& b) {
  if (u <= Limits<T>::max()) {
    a = static_cast<T>(u);
    b = T(1);
  } else {
    a = b = static_cast<T>(std::min(root, Limits<T>::max()));
  }
}

constexpr double kSteepFlow = 1099511627776.0;  // 2^40: |phi'(0)| above it -> flows summed pair by pair

// log1p(q) for q >= 0 from one log (Goldberg): u = 1 + q, log(u) q / (u - 1).  `lu` = log(u).
template <typename T>
inline T log1p_from(T q, T u, T lu) { return u == T(1) ? q : lu * q / (u - T(1)); }

template <typename T>
struct Family {
  // Per mixture component, derived in double (derive()).
  struct Comp {
    bool steep = false;
    T a = 0, b = 1;    // Gaussian / Laplacian coefficient u = a * b (b = 1 unless u overflows T)
    T g1 = 0, g2 = 0;  // phi'(0), phi''(0) of the component (0 where they overflow)
    // RationalQuadratic plain loop: 1 / (2 alpha l^2), 1 / (2 l^2), (alpha + 1) / (4 alpha l^4); IMQ: c^2
    T inv = 0, c1 = 0, c2 = 0;
    // pow_steep: phi = C (1 + z/s)^beta
    T beta = 0, bm1 = 0;        // beta, beta - 1
    T i1 = 0, i2 = 1;           // 1 / s = i1 * i2
    T s = 0;                    // s rounded to T (0 or inf when out of range)
    T cm = 1;                   // C where representable, else 1 (log C folded into ks)
    T ks_hi = 0, ks_lo = 0;     // exponent offset while z/s <= big (hi + lo: log s in ~2x the precision of T)
    T kb_hi = 0, kb_lo = 0;     // beyond big: phi = exp(beta (log(z + s) + kb))
    T big = 0;
  };

  int64_t code = 0;
  std::vector<T> p;       // family parameters (see below)
  std::vector<int> ladder;  // Gaussian: 0 = fresh exp, m > 0 = previous^(4^m)
  std::vector<Comp> comps;  // Gaussian (sorted like p), RationalQuadratic, InverseMultiquadric, Laplacian
  bool steep_flow = false;  // |phi'(0)| > kSteepFlow: flows pair by pair (kinked())
  int64_t degree = 0;       // Polynomial, exact
  T pg = 0, pc0 = 0, pn1 = 0, pm1 = 0;  // Polynomial: gamma, coef0, n gamma, (n - 1) gamma

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
    derive(params);
  }

  bool radial() const { return is_radial(code); }
  // Flows summed pair by pair: phi' unbounded at z = 0 (Laplacian, Energy, Polyharmonic without eps),
  // or so steep there (|phi'(0)| > 2^40, extreme bandwidths) that the factored form would cancel or overflow.
  bool kinked() const {
    return code == kLaplacian || code == kEnergy || (code == kPolyharmonic && p[1] == T(0)) || steep_flow;
  }

  // The derived constants as the Triton engine reads them (`_phi` in gankernels/triton_pairwise.py), each
  // rounded to T: {mixture count NP, integer parameter IP, constants...}.  Per component:
  //   Gaussian [a, b, phi'(0), phi''(0)]; Laplacian [a, b];
  //   RationalQuadratic / InverseMultiquadric [steep, beta-or-alpha, inv, c1, c2] + 13 pow_steep constants
  //   (plain-loop head zeroed but for `steep` = 1 when the component is steep);
  //   Polyharmonic [k/2, eps^2, k even, k/2 (k/2 - 1)] (IP = k); Polynomial [gamma, coef0, n gamma,
  //   (n - 1) gamma] (IP = n, NP = bit length of n - 2).
  std::vector<double> flat_constants() const {
    std::vector<double> out{0.0, 0.0};
    auto put = [&out](T v) { out.push_back(static_cast<double>(v)); };
    switch (code) {
      case kGaussian:
      case kLaplacian:
        for (const Comp& c : comps) {
          put(c.a);
          put(c.b);
          if (code == kGaussian) {
            put(c.g1);
            put(c.g2);
          }
        }
        out[0] = static_cast<double>(comps.size());
        break;
      case kRationalQuadratic:
      case kInverseMultiquadric:
        for (const Comp& c : comps) {
          if (c.steep) {
            out.insert(out.end(), {1.0, 0.0, 0.0, 0.0, 0.0});
          } else if (code == kRationalQuadratic) {
            out.push_back(0.0);
            put(-c.beta);  // alpha
            put(c.inv);
            put(c.c1);
            put(c.c2);
          } else {
            out.push_back(0.0);
            put(c.beta);
            put(c.bm1);
            put(c.c1);  // c^2
            out.push_back(0.0);
          }
          for (T v : {c.beta, c.bm1, c.i1, c.i2, c.s, c.cm, c.ks_hi, c.ks_lo, c.kb_hi, c.kb_lo, c.big, c.g1, c.g2})
            put(v);
        }
        out[0] = static_cast<double>(comps.size());
        break;
      case kPolyharmonic: {
        const int64_t k = static_cast<int64_t>(p[0]);
        const double h = 0.5 * static_cast<double>(k);
        const double eps = static_cast<double>(p[1]);
        for (double v : {h, eps * eps, k % 2 == 0 ? 1.0 : 0.0, h * (h - 1.0)}) put(static_cast<T>(v));
        out[0] = 1.0;
        out[1] = static_cast<double>(k);
        break;
      }
      case kPolynomial: {
        for (T v : {pg, pc0, pn1, pm1}) put(v);
        int64_t bits = 0;
        for (int64_t m = degree >= 2 ? degree - 2 : 0; m > 0; m >>= 1) ++bits;
        out[0] = static_cast<double>(bits);
        out[1] = static_cast<double>(degree);
        break;
      }
      default:  // Energy, Linear: no constants
        break;
    }
    return out;
  }

 private:
  static bool in_range(double v) { return v >= Limits<T>::lo() && v <= Limits<T>::hi(); }
  // a derivative at z = 0: itself, or 0 where it would overflow the products it enters
  static T at_zero(double g) { return std::fabs(g) <= Limits<T>::max() / 256.0 ? static_cast<T>(g) : T(0); }
  static void hi_lo(double v, T& hi, T& lo) {
    hi = static_cast<T>(v);
    lo = static_cast<T>(v - static_cast<double>(hi));
  }
  // pow_steep constants of C (1 + z/s)^beta: log_s = log s, inv_root = 1 / sqrt(s), log_c = log C
  static void pow_constants(Comp& c, double beta, double s, double log_s, double inv_root, double log_c, bool rq) {
    c.beta = static_cast<T>(beta);
    c.bm1 = static_cast<T>(beta - 1.0);
    split_coefficient(1.0 / s, inv_root, c.i1, c.i2);
    c.s = static_cast<T>(s);
    const double C = std::exp(log_c);
    c.big = static_cast<T>(Limits<T>::big());
    if (rq) {  // C = 1: exp(beta (log(z + s) - log s)) beyond big
      hi_lo(-log_s, c.kb_hi, c.kb_lo);
    } else if (C >= Limits<T>::min_normal() && C <= Limits<T>::max()) {
      c.cm = static_cast<T>(C);
      c.big = static_cast<T>(std::min(Limits<T>::big(), std::expm1(Limits<T>::exp_room() / std::fabs(beta))));
    } else {  // C = s^beta not representable: fold log s into the exponent, beta (log1p(z/s) + log s)
      hi_lo(log_s, c.ks_hi, c.ks_lo);
    }
    // phi'(0) = beta C / s, phi''(0) = beta (beta - 1) C / s^2, in the log domain
    c.g1 = at_zero(beta * std::exp(log_c - log_s));
    c.g2 = at_zero(beta * (beta - 1.0) * std::exp(log_c - 2.0 * log_s));
  }

  void derive(const std::vector<double>& params) {
    switch (code) {
      case kGaussian: {
        std::vector<double> s(params);
        std::sort(s.begin(), s.end(), std::greater<double>());
        for (double sk : s) {
          Comp c;
          const double u = 0.5 / (sk * sk);
          c.steep = u > Limits<T>::hi();  // u^2 may overflow (a tiny u is harmless)
          split_coefficient(u, std::sqrt(0.5) / sk, c.a, c.b);
          c.g1 = at_zero(-u);
          c.g2 = at_zero(u * u);
          steep_flow = steep_flow || u > kSteepFlow;
          comps.push_back(c);
        }
        break;
      }
      case kLaplacian:
        for (double sk : params) {
          Comp c;
          const double v = 1.0 / sk;  // the loops only distinguish b = 1 (plain) from the split
          split_coefficient(v, 1.0 / std::sqrt(sk), c.a, c.b);
          comps.push_back(c);
        }
        break;
      case kRationalQuadratic: {
        const double l = params.at(0);
        for (size_t k = 1; k < params.size(); ++k) {
          Comp c;
          const double al = params[k];
          const double w = 2.0 * al * l * l;           // s
          const double c1 = 0.5 / l / l;               // 1 / (2 l^2) = -phi'(0)
          const double c2 = (al + 1.0) / al * c1 * c1;  // phi''(0)
          // plain loop: (1 + z inv)^-alpha through log(1 + z inv): absolute error alpha eps / 2, fine up to alpha 8
          c.steep = !(in_range(w) && in_range(c1) && c2 <= Limits<T>::hi() && al <= 8.0);
          c.inv = static_cast<T>(1.0 / w);
          c.c1 = static_cast<T>(c1);
          c.c2 = static_cast<T>(c2);
          const double log_s = std::log(2.0 * al) + 2.0 * std::log(l);
          pow_constants(c, -al, w, log_s, 1.0 / (l * std::sqrt(2.0 * al)), 0.0, true);
          steep_flow = steep_flow || c1 > kSteepFlow;
          comps.push_back(c);
        }
        break;
      }
      case kInverseMultiquadric: {
        const double beta = params.at(0);
        for (size_t k = 1; k < params.size(); ++k) {
          Comp c;
          const double ck = params[k];
          const double s = ck * ck;
          c.steep = !in_range(s);
          c.c1 = static_cast<T>(s);
          const double log_s = 2.0 * std::log(ck);
          pow_constants(c, beta, s, log_s, 1.0 / ck, beta * log_s, false);
          steep_flow = steep_flow || std::fabs(beta) * std::exp((beta - 1.0) * log_s) > kSteepFlow;
          comps.push_back(c);
        }
        break;
      }
      case kPolynomial: {
        const double n = params.at(0);
        TORCH_CHECK_VALUE(n >= 1.0 && n <= 9007199254740992.0 && n == std::floor(n),
                          "Polynomial degree must be an integer in [1, 2^53], got ", n);
        degree = static_cast<int64_t>(n);
        const double g = params.at(1);
        pg = static_cast<T>(g);
        pc0 = static_cast<T>(params.at(2));
        pn1 = static_cast<T>(n * g);
        pm1 = static_cast<T>((n - 1.0) * g);
        break;
      }
      default:
        break;
    }
  }

  // phi = C (1 + z/s)^beta and its derivatives for a steep component (see the header comment), added to v, d1, d2.
  static void pow_steep(const Comp& c, const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1,
                        T* __restrict d2) {
    for (int64_t i = 0; i < n; ++i) {
      const T zi = z[i];
      const T q = (zi * c.i1) * c.i2;
      const bool small = q <= c.big;  // NaN: false, log(NaN) below
      const T u = T(1) + q;
      const T lu = std::log(small ? u : zi + c.s);
      const T l = small ? log1p_from(q, u, lu) : lu;
      const T kh = small ? c.ks_hi : c.kb_hi, kl = small ? c.ks_lo : c.kb_lo;
      const T val = std::exp(c.beta * ((l + kh) + kl)) * (small ? c.cm : T(1));
      const T den = c.s + zi;
      const T r1 = val / den;  // divisions: no inf * 0 when den underflows or overflows
      if (v) v[i] += val;
      if (d1) d1[i] += zi == T(0) ? c.g1 : c.beta * r1;
      if (d2) d2[i] += zi == T(0) ? c.g2 : c.beta * (c.bm1 * (r1 / den));
    }
  }

 public:
  // v[i] = phi(z[i]), d1[i] = phi'(z[i]), d2[i] = phi''(z[i]); any output may be null.
  // `tmp` is scratch of n elements.  Mixtures add their components into v, d1, d2 (zeroed here).
  void eval(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2,
            T* __restrict tmp) const {
    if (v) std::fill(v, v + n, T(0));
    if (d1) std::fill(d1, d1 + n, T(0));
    if (d2) std::fill(d2, d2 + n, T(0));
    switch (code) {
      case kGaussian: return eval_gaussian(z, n, v, d1, d2, tmp);
      case kRationalQuadratic: return eval_rational_quadratic(z, n, v, d1, d2);
      case kInverseMultiquadric: return eval_inverse_multiquadric(z, n, v, d1, d2);
      case kLaplacian: return eval_laplacian(z, n, v, d1, d2, tmp);
      case kEnergy: return eval_energy(z, n, v, d1, d2);
      case kPolyharmonic: return eval_polyharmonic(z, n, v, d1, d2);
      case kPolynomial: return eval_polynomial(z, n, v, d1, d2);
      case kLinear: return eval_linear(z, n, v, d1, d2);
    }
  }

 private:
  // One family each (eval): plain loops over the n values of z.
  // sum_k exp(c_k z), the doubling ladder reusing exponentials; steep components as a * (b * z)
  void eval_gaussian(const T* __restrict z, int64_t n,
                     T* __restrict v, T* __restrict d1, T* __restrict d2, T* __restrict tmp) const {
    // chunk by chunk, so that the component loops re-read z, tmp, v, d1, d2 from L1, not from L2
    constexpr int64_t kChunk = 512;
    for (int64_t i0 = 0; i0 < n; i0 += kChunk)
      eval_gaussian_chunk(z + i0, std::min(kChunk, n - i0), v ? v + i0 : nullptr, d1 ? d1 + i0 : nullptr,
                          d2 ? d2 + i0 : nullptr, tmp + i0);
  }
  void eval_gaussian_chunk(const T* __restrict z, int64_t n,
                           T* __restrict v, T* __restrict d1, T* __restrict d2, T* __restrict tmp) const {
    for (size_t k = 0; k < p.size(); ++k) {
      const Comp& cp = comps[k];
      const T c = p[k];
      if (ladder[k] == 0) {
        if (cp.b == T(1)) {
          for (int64_t i = 0; i < n; ++i) tmp[i] = fast_exp(c * z[i]);
        } else {  // 1/(2 s^2) overflows T: -(a (b z)), so that z = 0 gives exactly 1
          const T a = cp.a, b = cp.b;
          for (int64_t i = 0; i < n; ++i) tmp[i] = fast_exp(-(a * (b * z[i])));
        }
      } else {
        for (int m = 0; m < ladder[k]; ++m)
          for (int64_t i = 0; i < n; ++i) {
            T e2 = flush_tiny(tmp[i] * tmp[i]);
            tmp[i] = flush_tiny(e2 * e2);
          }
      }
      if (v) for (int64_t i = 0; i < n; ++i) v[i] += tmp[i];
      if (!cp.steep) {
        if (d1) for (int64_t i = 0; i < n; ++i) d1[i] += c * tmp[i];
        if (d2) { const T c2 = c * c; for (int64_t i = 0; i < n; ++i) d2[i] += c2 * tmp[i]; }
      } else {  // u (b = 1) or a b may overflow, u^2 does: products ordered after tmp, z = 0 from g1, g2
        const T a = cp.a, b = cp.b, g1 = cp.g1, g2 = cp.g2;
        if (d1) for (int64_t i = 0; i < n; ++i) d1[i] += z[i] == T(0) ? g1 : -(a * (b * tmp[i]));
        if (d2)
          for (int64_t i = 0; i < n; ++i) d2[i] += z[i] == T(0) ? g2 : a * (b * (a * (b * tmp[i])));
      }
    }
  }

  // RationalQuadratic and InverseMultiquadric, both C (1 + z/s)^beta per component: a steep component through
  // pow_steep, the others through the family's plain loop `plain(component)`.
  template <typename Plain>
  void power_components(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2,
                        Plain plain) const {
    for (const Comp& cp : comps) {
      if (cp.steep)
        pow_steep(cp, z, n, v, d1, d2);
      else
        plain(cp);
    }
  }

  // sum_k (1 + z / (2 alpha_k l^2))^-alpha_k (steep components: pow_steep)
  void eval_rational_quadratic(const T* __restrict z, int64_t n,
                               T* __restrict v, T* __restrict d1, T* __restrict d2) const {
    power_components(z, n, v, d1, d2, [&](const Comp& cp) {
      const T a = -cp.beta, inv = cp.inv, c1 = cp.c1, c2 = cp.c2;
      for (int64_t i = 0; i < n; ++i) {
        const T base = T(1) + z[i] * inv;
        const T val = std::exp(-a * std::log(base));
        const T ib = T(1) / base;
        if (v) v[i] += val;
        if (d1) d1[i] += -val * ib * c1;
        if (d2) d2[i] += c2 * val * ib * ib;
      }
    });
  }

  // sum_k (c_k^2 + z)^beta (steep components: pow_steep)
  void eval_inverse_multiquadric(const T* __restrict z, int64_t n,
                                 T* __restrict v, T* __restrict d1, T* __restrict d2) const {
    power_components(z, n, v, d1, d2, [&](const Comp& cp) {
      const T beta = cp.beta, bm1 = cp.bm1, c2 = cp.c1;
      for (int64_t i = 0; i < n; ++i) {
        const T q = c2 + z[i];
        const T val = beta == T(-0.5) ? T(1) / std::sqrt(q) : std::exp(beta * std::log(q));
        const T iq = T(1) / q;
        if (v) v[i] += val;
        if (d1) d1[i] += beta * val * iq;
        if (d2) d2[i] += beta * (bm1 * (val * iq * iq));
      }
    });
  }

  // sum_k exp(-sqrt(z) / s_k); the derivatives are set to 0 at the kink z = 0
  void eval_laplacian(const T* __restrict z, int64_t n,
                      T* __restrict v, T* __restrict d1, T* __restrict d2, T* __restrict tmp) const {
    for (int64_t i = 0; i < n; ++i) tmp[i] = std::sqrt(z[i]);
    for (const Comp& cp : comps) {
      // products ordered after e (e = 0 far out): no overflow of 1/s^2 r^-2 times e = 0
      const T A = cp.a, B = cp.b;
      if (B == T(1)) {
        for (int64_t i = 0; i < n; ++i) {
          const T r = tmp[i];
          const T e = fast_exp(-r * A);
          const T ir = r == T(0) ? T(0) : T(1) / r;
          const T t1 = A * (e * ir);  // e / (s r)
          if (v) v[i] += e;
          if (d1) d1[i] += T(-0.5) * t1;
          if (d2) d2[i] += T(0.25) * ir * (A * t1 + t1 * ir);
        }
      } else {  // 1/s overflows T: A (B r), so that r = 0 gives exactly 1
        for (int64_t i = 0; i < n; ++i) {
          const T r = tmp[i];
          const T e = fast_exp(-(A * (B * r)));
          const T ir = r == T(0) ? T(0) : T(1) / r;
          const T t1 = A * (B * (e * ir));
          if (v) v[i] += e;
          if (d1) d1[i] += T(-0.5) * t1;
          if (d2) d2[i] += T(0.25) * ir * (A * (B * t1) + t1 * ir);
        }
      }
    }
  }

  // -sqrt(z); the derivatives are set to 0 at the kink z = 0
  void eval_energy(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2) const {
    for (int64_t i = 0; i < n; ++i) {
      const T r = std::sqrt(z[i]);
      const T ir = r == T(0) ? T(0) : T(1) / r;
      if (v) v[i] = -r;
      if (d1) d1[i] = T(-0.5) * ir;
      if (d2) d2[i] = T(0.25) * ir * ir * ir;
    }
  }

  // (z + eps^2)^(k/2), times log(z + eps^2) / 2 for even k; 0 at the kink; NaN in, NaN out
  void eval_polyharmonic(const T* __restrict z, int64_t n,
                         T* __restrict v, T* __restrict d1, T* __restrict d2) const {
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
  }

  // (gamma z + c0)^n
  void eval_polynomial(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2) const {
    // (gamma z + c0)^n by repeated squaring over the bits of n - 2, chunk by chunk (the loops over the
    // chunk vectorise); O(log n) products, exact for exactly representable powers.
    const int64_t m = degree >= 2 ? degree - 2 : 0;
    const T gamma = pg, c0 = pc0, n1 = pn1, m1 = pm1;
    constexpr int64_t kChunk = 64;
    T w[kChunk], sq[kChunk], pw[kChunk];  // base, base^(2^bit), base^(n - 2) so far
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
      const int64_t len = std::min(kChunk, n - i0);
      for (int64_t i = 0; i < len; ++i) {
        w[i] = gamma * z[i0 + i] + c0;
        sq[i] = w[i];
        pw[i] = T(1);
      }
      for (int64_t e = m; e > 0; e >>= 1) {
        if (e & 1) for (int64_t i = 0; i < len; ++i) pw[i] *= sq[i];
        if (e > 1) for (int64_t i = 0; i < len; ++i) sq[i] *= sq[i];
      }
      for (int64_t i = 0; i < len; ++i) {
        const T pw1 = degree >= 2 ? pw[i] * w[i] : T(1);  // base^(n-1)
        if (v) v[i0 + i] = pw1 * w[i];
        if (d1) d1[i0 + i] = n1 * pw1;
        if (d2) d2[i0 + i] = degree >= 2 ? n1 * (m1 * pw[i]) : T(0);
      }
    }
  }

  // z
  void eval_linear(const T* __restrict z, int64_t n, T* __restrict v, T* __restrict d1, T* __restrict d2) const {
    for (int64_t i = 0; i < n; ++i) {
      if (v) v[i] = z[i];
      if (d1) d1[i] = T(1);
    }
  }
};

}  // namespace gankernels
