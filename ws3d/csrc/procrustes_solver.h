// Weighted Procrustes, shared by the CPU and CUDA kernels: Horn's quaternion eigenproblem
// solved by cyclic Jacobi sweeps in registers (no LAPACK, no cuSOLVER). The same
// algorithm and validity rule as the Triton kernel; see ws3d/ops/procrustes.py.
//
// Three steps, so that the CPU kernel can run the middle one SIMD across pairs:
//   cross_covariance (per pair, loops over joints) -> horn_rotation (branch-free, fixed
//   sweeps, no run-time indices) -> finish_pair (validity, scale, translation).
// Pair pointers: X, Y (J, 3) and w (J), contiguous; R (3, 3) row-major, t (3), s, valid.
#pragma once

#include "common.h"

namespace ws3d {

constexpr double kProcrustesRelTol = 1e-5;  // s2 + d s3 <= tol * s1: rotation undetermined
constexpr int kJacobiSweeps = 8;            // cyclic Jacobi on 4x4 converges quadratically

template <typename T>
struct CrossCovariance {
  T H[3][3];  // sum_j w_j (X_j - Xbar)(Y_j - Ybar)^T
  T xb[3], yb[3], total, var;
  bool finite;
};

template <typename T>
WS3D_HD void cross_covariance(const T* X, const T* Y, const T* w, int64_t J, CrossCovariance<T>& c) {
  // A row with NaN or inf is treated as all weights zero (then flagged, R = I, t = 0).
  c.finite = true;
  for (int64_t j = 0; j < J; ++j) {
    const T probe = X[3 * j] + X[3 * j + 1] + X[3 * j + 2] + Y[3 * j] + Y[3 * j + 1] + Y[3 * j + 2] + w[j];
    c.finite = c.finite && probe - probe == T(0);
  }
  c.total = c.var = T(0);
  for (int i = 0; i < 3; ++i) {
    c.xb[i] = c.yb[i] = T(0);
    for (int k = 0; k < 3; ++k) c.H[i][k] = T(0);
  }
  if (!c.finite) return;
  for (int64_t j = 0; j < J; ++j) {
    c.total += w[j];
    for (int i = 0; i < 3; ++i) {
      c.xb[i] += w[j] * X[3 * j + i];
      c.yb[i] += w[j] * Y[3 * j + i];
    }
  }
  const T inv_total = T(1) / (c.total > T(0) ? c.total : T(1));
  for (int i = 0; i < 3; ++i) c.xb[i] *= inv_total, c.yb[i] *= inv_total;
  // Centred moments: raw ones would cancel for poses far from the origin.
  for (int64_t j = 0; j < J; ++j) {
    const T x[3] = {X[3 * j] - c.xb[0], X[3 * j + 1] - c.xb[1], X[3 * j + 2] - c.xb[2]};
    const T y[3] = {Y[3 * j] - c.yb[0], Y[3 * j + 1] - c.yb[1], Y[3 * j + 2] - c.yb[2]};
    for (int a = 0; a < 3; ++a) {
      const T wx = w[j] * x[a];
      c.var += wx * x[a];
      for (int b = 0; b < 3; ++b) c.H[a][b] += wx * y[b];
    }
  }
}

// One Jacobi rotation zeroing a[p][q] of the symmetric 4x4 a, accumulated into v.
// Branch-free (a zero a[p][q] gives t = 0, the identity) so that it vectorises.
template <typename T>
WS3D_HD void jacobi_rotate(T (&a)[4][4], T (&v)[4][4], int p, int q) {
  const T apq = a[p][q];
  const bool rotate = apq != T(0);
  const T theta = (a[q][q] - a[p][p]) / (T(2) * (rotate ? apq : T(1)));
  // The smaller rotation angle; theta^2 may overflow to inf, which gives t = 0.
  const T t_raw = (theta >= T(0) ? T(1) : T(-1)) / (fabs(theta) + sqrt(T(1) + theta * theta));
  const T t = rotate ? t_raw : T(0);
  const T c = T(1) / sqrt(T(1) + t * t), s = t * c;
  a[p][p] -= t * apq;
  a[q][q] += t * apq;
  a[p][q] = a[q][p] = T(0);
WS3D_UNROLL
  for (int r = 0; r < 4; ++r) {
    if (r != p && r != q) {  // compile-time after unrolling
      const T arp = a[r][p], arq = a[r][q];
      a[r][p] = a[p][r] = c * arp - s * arq;
      a[r][q] = a[q][r] = s * arp + c * arq;
    }
    const T vrp = v[r][p], vrq = v[r][q];
    v[r][p] = c * vrp - s * vrq;
    v[r][q] = s * vrp + c * vrq;
  }
}

// The proper rotation R (row-major) maximising trace(R H^T)... i.e. aligning X onto Y,
// with N's largest and second-largest eigenvalues (in units of h_scale = max |H|).
template <typename T>
WS3D_HD void horn_rotation(const T (&H_in)[3][3], T (&R)[9], T& top, T& second, T& h_scale) {
  T h_max = T(0);
WS3D_UNROLL
  for (int a = 0; a < 3; ++a)
WS3D_UNROLL
    for (int b = 0; b < 3; ++b) h_max = fabs(H_in[a][b]) > h_max ? fabs(H_in[a][b]) : h_max;
  h_scale = h_max > T(0) ? h_max : T(1);  // normalise: a scale-free eigenproblem
  const T r = T(1) / h_scale;
  const T h00 = H_in[0][0] * r, h01 = H_in[0][1] * r, h02 = H_in[0][2] * r;
  const T h10 = H_in[1][0] * r, h11 = H_in[1][1] * r, h12 = H_in[1][2] * r;
  const T h20 = H_in[2][0] * r, h21 = H_in[2][1] * r, h22 = H_in[2][2] * r;
  // Horn's symmetric 4x4; its top eigenvector is the quaternion (w, x, y, z) of R.
  T N[4][4] = {
      {h00 + h11 + h22, h12 - h21, h20 - h02, h01 - h10},
      {h12 - h21, h00 - h11 - h22, h01 + h10, h20 + h02},
      {h20 - h02, h01 + h10, h11 - h00 - h22, h12 + h21},
      {h01 - h10, h20 + h02, h12 + h21, h22 - h00 - h11},
  };
  T V[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
WS3D_UNROLL
  for (int sweep = 0; sweep < kJacobiSweeps; ++sweep) {
    jacobi_rotate(N, V, 0, 1);
    jacobi_rotate(N, V, 0, 2);
    jacobi_rotate(N, V, 0, 3);
    jacobi_rotate(N, V, 1, 2);
    jacobi_rotate(N, V, 1, 3);
    jacobi_rotate(N, V, 2, 3);
  }
  // Largest and second-largest eigenvalue, and the top eigenvector, by selects over
  // constant indices (a run-time index would push N and V out of registers).
  top = N[0][0];
  second = T(-INFINITY);
  T q[4] = {V[0][0], V[1][0], V[2][0], V[3][0]};
WS3D_UNROLL
  for (int c = 1; c < 4; ++c) {
    const T lam = N[c][c];
    const bool better = lam > top;
    second = better ? top : (lam > second ? lam : second);
    top = better ? lam : top;
WS3D_UNROLL
    for (int i = 0; i < 4; ++i) q[i] = better ? V[i][c] : q[i];
  }
  const T inv_norm = T(1) / sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const T qw = q[0] * inv_norm, qx = q[1] * inv_norm, qy = q[2] * inv_norm, qz = q[3] * inv_norm;
  R[0] = 1 - 2 * (qy * qy + qz * qz), R[1] = 2 * (qx * qy - qw * qz), R[2] = 2 * (qx * qz + qw * qy);
  R[3] = 2 * (qx * qy + qw * qz), R[4] = 1 - 2 * (qx * qx + qz * qz), R[5] = 2 * (qy * qz - qw * qx);
  R[6] = 2 * (qx * qz - qw * qy), R[7] = 2 * (qy * qz + qw * qx), R[8] = 1 - 2 * (qx * qx + qy * qy);
}

// Validity, scale and translation; invalid rows get R = I and s = 1.
template <typename T>
WS3D_HD void finish_pair(const CrossCovariance<T>& c, const T (&R_in)[9], T top, T second, T h_scale, bool scale,
                         T* R, T* t, T* s, bool* valid) {
  // top - second = 2 (s2 + d s3) and top + second = 2 s1, in units of h_scale.
  const bool ok = c.finite && c.total > T(0) && top - second > T(kProcrustesRelTol) * (top + second);
WS3D_UNROLL
  for (int i = 0; i < 9; ++i) R[i] = ok ? R_in[i] : (i % 4 == 0 ? T(1) : T(0));
  const T sc = scale && ok && c.var > T(0) ? top * h_scale / c.var : T(1);
WS3D_UNROLL
  for (int i = 0; i < 3; ++i) {
    t[i] = c.yb[i] - sc * (R[3 * i] * c.xb[0] + R[3 * i + 1] * c.xb[1] + R[3 * i + 2] * c.xb[2]);
  }
  *s = sc;
  *valid = ok;
}

template <typename T>
WS3D_HD void procrustes_pair(const T* X, const T* Y, const T* w, int64_t J, bool scale, T* R, T* t, T* s,
                             bool* valid) {
  CrossCovariance<T> c;
  cross_covariance(X, Y, w, J, c);
  T R_opt[9], top, second, h_scale;
  horn_rotation(c.H, R_opt, top, second, h_scale);
  finish_pair(c, R_opt, top, second, h_scale, scale, R, t, s, valid);
}

}  // namespace ws3d
