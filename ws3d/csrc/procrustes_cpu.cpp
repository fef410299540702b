// weighted_procrustes on the CPU: OpenMP over blocks of kLanes pairs. Per block, the
// cross-covariances are formed pair by pair, then the Horn eigen-solve (the expensive,
// branch-free part) runs SIMD across the block's pairs, in the forward and the backward.
// The solver is shared with the CUDA kernel in procrustes_solver.h.
#include "kernels.h"
#include "procrustes_solver.h"

namespace ws3d {

template <typename T>
void procrustes_cpu(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                    bool* valid) {
  constexpr int64_t kLanes = 64 / sizeof(T);  // one AVX-512 register of T
#pragma omp parallel for schedule(static)
  for (int64_t first = 0; first < N; first += kLanes) {  // a block of kLanes pairs (the last may be short)
    const int64_t lanes = N - first < kLanes ? N - first : kLanes;
    CrossCovariance<T> cov[kLanes];
    T H[3][3][kLanes], R_opt[9][kLanes], top[kLanes], second[kLanes], h_scale[kLanes];
    for (int64_t i = 0; i < kLanes; ++i) {
      const int64_t n = first + (i < lanes ? i : 0);  // idle lanes redo a real pair
      cross_covariance(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, cov[i]);
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) H[a][b][i] = cov[i].H[a][b];
    }
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) {
      const T Hi[3][3] = {{H[0][0][i], H[0][1][i], H[0][2][i]},
                          {H[1][0][i], H[1][1][i], H[1][2][i]},
                          {H[2][0][i], H[2][1][i], H[2][2][i]}};
      T Ri[9];
      horn_rotation(Hi, Ri, top[i], second[i], h_scale[i]);
      for (int k = 0; k < 9; ++k) R_opt[k][i] = Ri[k];
    }
    for (int64_t i = 0; i < lanes; ++i) {
      const int64_t n = first + i;
      T Ri[9];
      for (int k = 0; k < 9; ++k) Ri[k] = R_opt[k][i];
      finish_pair(cov[i], Ri, top[i], second[i], h_scale[i], scale, R + 9 * n, t + 3 * n, s + n, valid + n);
    }
  }
}

template <typename T>
void procrustes_backward_cpu(const T* X, const T* Y, const T* w, const bool* valid, const T* gR, const T* gt,
                             const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY, T* gw) {
  constexpr int64_t kLanes = 64 / sizeof(T);
#pragma omp parallel for schedule(static)
  for (int64_t first = 0; first < N; first += kLanes) {  // a block of kLanes pairs (the last may be short)
    const int64_t lanes = N - first < kLanes ? N - first : kLanes;
    CrossCovariance<T> cov[kLanes];
    T H[3][3][kLanes], xb[3][kLanes], var[kLanes], g_R[9][kLanes], g_t[3][kLanes], g_s[kLanes];
    T g_H[9][kLanes], g_var[kLanes], g_xb[3][kLanes];
    for (int64_t i = 0; i < kLanes; ++i) {
      const int64_t n = first + (i < lanes ? i : 0);  // idle lanes redo a real pair
      cross_covariance(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, cov[i]);
      for (int a = 0; a < 3; ++a) {
        for (int b = 0; b < 3; ++b) H[a][b][i] = cov[i].H[a][b];
        xb[a][i] = cov[i].xb[a];
        g_t[a][i] = gt[3 * n + a];
      }
      for (int k = 0; k < 9; ++k) g_R[k][i] = gR[9 * n + k];
      var[i] = cov[i].var;
      g_s[i] = gs[n];
    }
#pragma omp simd
    for (int64_t i = 0; i < kLanes; ++i) {
      const T Hi[3][3] = {{H[0][0][i], H[0][1][i], H[0][2][i]},
                          {H[1][0][i], H[1][1][i], H[1][2][i]},
                          {H[2][0][i], H[2][1][i], H[2][2][i]}};
      const T xbi[3] = {xb[0][i], xb[1][i], xb[2][i]};
      T gRi[9], gti[3] = {g_t[0][i], g_t[1][i], g_t[2][i]}, gHi[9], g_xbi[3];
      for (int k = 0; k < 9; ++k) gRi[k] = g_R[k][i];
      pair_moment_gradients(Hi, xbi, var[i], scale, gRi, gti, g_s[i], gHi, g_var[i], g_xbi);
      for (int k = 0; k < 9; ++k) g_H[k][i] = gHi[k];
      for (int a = 0; a < 3; ++a) g_xb[a][i] = g_xbi[a];
    }
    for (int64_t i = 0; i < lanes; ++i) {
      const int64_t n = first + i;
      T gHi[9], g_xbi[3];
      for (int k = 0; k < 9; ++k) gHi[k] = g_H[k][i];
      for (int a = 0; a < 3; ++a) g_xbi[a] = g_xb[a][i];
      scatter_pair_gradients(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, cov[i], valid[n], gHi, g_var[i], g_xbi,
                             gt + 3 * n, gX + 3 * J * n, gY + 3 * J * n, gw + J * n);
    }
  }
}

template void procrustes_cpu<float>(const float*, const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                    float*, bool*);
template void procrustes_cpu<double>(const double*, const double*, const double*, int64_t, int64_t, bool, double*,
                                     double*, double*, bool*);

template void procrustes_backward_cpu<float>(const float*, const float*, const float*, const bool*, const float*,
                                             const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                             float*);
template void procrustes_backward_cpu<double>(const double*, const double*, const double*, const bool*,
                                              const double*, const double*, const double*, int64_t, int64_t, bool,
                                              double*, double*, double*);

}  // namespace ws3d
