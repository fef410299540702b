// Weighted Procrustes for one pair, shared by the CPU and CUDA kernels: Horn's quaternion
// eigenproblem solved by cyclic Jacobi sweeps in registers (no LAPACK, no cuSOLVER).
// The same algorithm and validity rule as the Triton kernel; see ws3d/ops/procrustes.py.
// Pair pointers: X, Y (J, 3) and w (J), contiguous; R (3, 3) row-major, t (3), s, valid.
#pragma once

#include "common.h"

namespace ws3d {

constexpr double kProcrustesRelTol = 1e-5;  // s2 + d s3 <= tol * s1: rotation undetermined
constexpr int kJacobiMaxSweeps = 8;

// One Jacobi rotation zeroing a[p][q] of the symmetric 4x4 a, accumulated into v.
template <typename T>
WS3D_HD void jacobi_rotate(T (&a)[4][4], T (&v)[4][4], int p, int q) {
  const T apq = a[p][q];
  if (apq == T(0)) return;
  const T theta = (a[q][q] - a[p][p]) / (T(2) * apq);
  // The smaller rotation angle; theta^2 may overflow to inf, which gives t = 0.
  const T t = (theta >= T(0) ? T(1) : T(-1)) / (fabs(theta) + sqrt(T(1) + theta * theta));
  const T c = T(1) / sqrt(T(1) + t * t), s = t * c;
  a[p][p] -= t * apq;
  a[q][q] += t * apq;
  a[p][q] = a[q][p] = T(0);
  for (int r = 0; r < 4; ++r) {
    if (r != p && r != q) {
      const T arp = a[r][p], arq = a[r][q];
      a[r][p] = a[p][r] = c * arp - s * arq;
      a[r][q] = a[q][r] = s * arp + c * arq;
    }
    const T vrp = v[r][p], vrq = v[r][q];
    v[r][p] = c * vrp - s * vrq;
    v[r][q] = s * vrp + c * vrq;
  }
}

template <typename T>
WS3D_HD void procrustes_pair(const T* X, const T* Y, const T* w, int64_t J, bool scale, T* R, T* t, T* s,
                             bool* valid) {
  // A row with NaN or inf takes the all-weights-zero path (R = I, t = 0, flagged).
  bool finite = true;
  for (int64_t j = 0; j < J; ++j) {
    const T probe = X[3 * j] + X[3 * j + 1] + X[3 * j + 2] + Y[3 * j] + Y[3 * j + 1] + Y[3 * j + 2] + w[j];
    finite = finite && probe - probe == T(0);
  }
  T total = 0, xb[3] = {0, 0, 0}, yb[3] = {0, 0, 0};
  if (finite) {
    for (int64_t j = 0; j < J; ++j) {
      total += w[j];
      for (int i = 0; i < 3; ++i) {
        xb[i] += w[j] * X[3 * j + i];
        yb[i] += w[j] * Y[3 * j + i];
      }
    }
    const T inv_total = T(1) / (total > T(0) ? total : T(1));
    for (int i = 0; i < 3; ++i) xb[i] *= inv_total, yb[i] *= inv_total;
  }
  // Centred second moments (raw ones would cancel for poses far from the origin).
  T H[3][3] = {{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, var = 0, h_max = 0;
  if (finite) {
    for (int64_t j = 0; j < J; ++j) {
      const T x[3] = {X[3 * j] - xb[0], X[3 * j + 1] - xb[1], X[3 * j + 2] - xb[2]};
      const T y[3] = {Y[3 * j] - yb[0], Y[3 * j + 1] - yb[1], Y[3 * j + 2] - yb[2]};
      for (int a = 0; a < 3; ++a) {
        const T wx = w[j] * x[a];
        var += wx * x[a];
        for (int b = 0; b < 3; ++b) H[a][b] += wx * y[b];
      }
    }
  }
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) h_max = fabs(H[a][b]) > h_max ? fabs(H[a][b]) : h_max;
  const T h_scale = h_max > T(0) ? h_max : T(1);  // normalise: a scale-free eigenproblem
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) H[a][b] /= h_scale;

  // Horn's symmetric 4x4; its top eigenvector is the quaternion (w, x, y, z) of R.
  T N[4][4] = {
      {H[0][0] + H[1][1] + H[2][2], H[1][2] - H[2][1], H[2][0] - H[0][2], H[0][1] - H[1][0]},
      {H[1][2] - H[2][1], H[0][0] - H[1][1] - H[2][2], H[0][1] + H[1][0], H[2][0] + H[0][2]},
      {H[2][0] - H[0][2], H[0][1] + H[1][0], H[1][1] - H[0][0] - H[2][2], H[1][2] + H[2][1]},
      {H[0][1] - H[1][0], H[2][0] + H[0][2], H[1][2] + H[2][1], H[2][2] - H[0][0] - H[1][1]},
  };
  T V[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
  for (int sweep = 0; sweep < kJacobiMaxSweeps; ++sweep) {
    const T off = fabs(N[0][1]) + fabs(N[0][2]) + fabs(N[0][3]) + fabs(N[1][2]) + fabs(N[1][3]) + fabs(N[2][3]);
    // N's entries are O(1) (H is normalised to max 1): stop far below rounding level.
    if (off < (sizeof(T) == 4 ? T(1e-10) : T(1e-19))) break;
    jacobi_rotate(N, V, 0, 1);
    jacobi_rotate(N, V, 0, 2);
    jacobi_rotate(N, V, 0, 3);
    jacobi_rotate(N, V, 1, 2);
    jacobi_rotate(N, V, 1, 3);
    jacobi_rotate(N, V, 2, 3);
  }
  // Largest and second-largest eigenvalue, and the top eigenvector, by selects over
  // constant indices (a run-time index would push N and V out of registers).
  T top = N[0][0], second = T(-INFINITY);
  T q[4] = {V[0][0], V[1][0], V[2][0], V[3][0]};
#pragma unroll
  for (int c = 1; c < 4; ++c) {
    const T lam = N[c][c];
    const bool better = lam > top;
    second = better ? top : (lam > second ? lam : second);
    top = better ? lam : top;
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = better ? V[i][c] : q[i];
  }

  // top - second = 2 (s2 + d s3) and top + second = 2 s1, in units of h_scale.
  const bool ok = finite && total > T(0) && top - second > T(kProcrustesRelTol) * (top + second);
  T qw = q[0], qx = q[1], qy = q[2], qz = q[3];
  const T norm = sqrt(qw * qw + qx * qx + qy * qy + qz * qz);
  qw = ok ? qw / norm : T(1);  // invalid rows: the identity quaternion, R = I
  qx = ok ? qx / norm : T(0);
  qy = ok ? qy / norm : T(0);
  qz = ok ? qz / norm : T(0);
  R[0] = 1 - 2 * (qy * qy + qz * qz), R[1] = 2 * (qx * qy - qw * qz), R[2] = 2 * (qx * qz + qw * qy);
  R[3] = 2 * (qx * qy + qw * qz), R[4] = 1 - 2 * (qx * qx + qz * qz), R[5] = 2 * (qy * qz - qw * qx);
  R[6] = 2 * (qx * qz - qw * qy), R[7] = 2 * (qy * qz + qw * qx), R[8] = 1 - 2 * (qx * qx + qy * qy);
  const T sc = scale && ok && var > T(0) ? top * h_scale / var : T(1);
  for (int i = 0; i < 3; ++i) t[i] = yb[i] - sc * (R[3 * i] * xb[0] + R[3 * i + 1] * xb[1] + R[3 * i + 2] * xb[2]);
  *s = sc;
  *valid = ok;
}

}  // namespace ws3d
