// Checks csrc/gemm.h against a float64 loop: every transpose case, beta 0 (C may hold NaN) and 0.5,
// edge shapes around the 12 x 32 micro-tile and the 256 / 512 cache blocks, padded leading dimensions,
// and that nothing outside C[m x n] is written.  Built and run by tests/test_tile_gemm.py.
#include "gemm.h"
#include <cstdio>
#include <random>
#include <cmath>
#include <algorithm>
using namespace gankernels;
int main() {
  std::mt19937 g(1); std::normal_distribution<float> nd;
  double worst = 0;
  int shapes[][3] = {{1,1,1},{12,32,1},{13,33,7},{128,256,64},{127,255,300},{5,600,513},{40,3,2},{128,64,256},{300,700,1000}};
  for (auto& sh : shapes) for (int ta = 0; ta < 2; ++ta) for (int tb = 0; tb < 2; ++tb) for (float beta : {0.0f, 0.5f}) {
    int m = sh[0], n = sh[1], k = sh[2];
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
    std::vector<float> A((ta ? k : m) * lda), B((tb ? n : k) * ldb), C(m * ldc), C0;
    for (auto& v : A) v = nd(g); for (auto& v : B) v = nd(g); for (auto& v : C) v = nd(g);
    C0 = C;
    if (beta == 0) for (int i = 0; i < m; ++i) C[i * ldc] = NAN;
    gemm_avx512(ta, tb, m, n, k, 0.7f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    for (int i = 0; i < m; ++i) for (int j = 0; j < ldc; ++j) {
      if (j >= n) { if (C[i*ldc+j] != C0[i*ldc+j]) { printf("clobber\n"); return 1; } continue; }
      double ref = beta * (double)C0[i*ldc+j], mag = std::fabs(ref);
      for (int l = 0; l < k; ++l) { double a = ta ? A[l*lda+i] : A[i*lda+l], b = tb ? B[j*ldb+l] : B[l*ldb+j]; ref += 0.7*a*b; mag += std::fabs(0.7*a*b); }
      double e = std::fabs(C[i*ldc+j] - ref) / (mag + 1e-30);
      if (!(e < 1e-5)) { printf("bad m%d n%d k%d ta%d tb%d beta%g at %d %d: %g vs %g\n", m,n,k,ta,tb,beta,i,j,C[i*ldc+j],ref); return 1; }
      worst = std::max(worst, e);
    }
  }
  printf("ok, worst rel (to sum|terms|) %.3g\n", worst);
}
