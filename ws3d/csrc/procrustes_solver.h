// Weighted Procrustes, shared by the CPU and CUDA kernels: Horn's quaternion eigenproblem
// solved by Jacobi sweeps in registers (no LAPACK, no cuSOLVER). The same
// algorithm and validity rule as the Triton kernel; see ws3d/ops/procrustes.py.
//
// Three steps, so that the CPU kernel can run the middle one SIMD across pairs:
//   cross_covariance (per pair, loops over joints) -> horn_rotation (branch-free, fixed
//   sweeps, no run-time indices) -> finish_pair (validity, scale, translation).
// Pair pointers: X, Y (J, 3) and w (J), contiguous; R (3, 3) row-major, t (3), s, valid.
#pragma once

#include "common.h"

namespace ws3d {

// Defined once, in ws3d/ops/_constants.py, and passed by the build as -D definitions.
#if !defined(WS3D_PROCRUSTES_REL_TOL) || !defined(WS3D_JACOBI_SWEEPS)
#error "build with the -D definitions of ws3d/ops/_constants.py (DEFINES)"
#endif
constexpr double kProcrustesRelTol = WS3D_PROCRUSTES_REL_TOL;  // s2 + d s3 <= tol * s1: rotation undetermined
constexpr int kJacobiSweeps = WS3D_JACOBI_SWEEPS;              // Jacobi sweeps on Horn's 4x4 (the CPU's most)

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
  // t = tan of the smaller rotation angle, sign(theta) / (|theta| + sqrt(1 + theta^2)) with
  // theta = tau / (2 apq), multiplied through by 2 |apq|: one division fewer on the chain
  // of dependent operations, and no overflow of theta^2 (N's entries are at most a few).
  const T tau = a[q][q] - a[p][p];
  const T t_raw = (tau >= T(0) ? T(2) : T(-2)) * apq / (fabs(tau) + sqrt(tau * tau + T(4) * apq * apq));
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

// Horn's symmetric 4x4 of a 3x3 H: q^T N(H) q = trace(R(q) H) for a unit quaternion
// q = (w, x, y, z), so its top eigenvector is the rotation maximising trace(R H).
template <typename T>
WS3D_HD void horn_matrix(const T (&h)[3][3], T (&N)[4][4]) {
  N[0][0] = h[0][0] + h[1][1] + h[2][2];
  N[1][1] = h[0][0] - h[1][1] - h[2][2];
  N[2][2] = h[1][1] - h[0][0] - h[2][2];
  N[3][3] = h[2][2] - h[0][0] - h[1][1];
  N[0][1] = N[1][0] = h[1][2] - h[2][1];
  N[0][2] = N[2][0] = h[2][0] - h[0][2];
  N[0][3] = N[3][0] = h[0][1] - h[1][0];
  N[1][2] = N[2][1] = h[0][1] + h[1][0];
  N[1][3] = N[3][1] = h[2][0] + h[0][2];
  N[2][3] = N[3][2] = h[1][2] + h[2][1];
}

// The symmetric bilinear form B(a, q) whose diagonal B(q, q) is the rotation matrix of the
// unit quaternion q (row-major): R_cd(q) = q^T A_cd q and B_cd(a, q) = a^T A_cd q.
template <typename T>
WS3D_HD void quaternion_bilinear(const T (&a)[4], const T (&q)[4], T (&B)[9]) {
  const T xy = a[1] * q[2] + a[2] * q[1], xz = a[1] * q[3] + a[3] * q[1], yz = a[2] * q[3] + a[3] * q[2];
  const T wx = a[0] * q[1] + a[1] * q[0], wy = a[0] * q[2] + a[2] * q[0], wz = a[0] * q[3] + a[3] * q[0];
  const T ww = a[0] * q[0], xx = a[1] * q[1], yy = a[2] * q[2], zz = a[3] * q[3];
  B[0] = ww + xx - yy - zz, B[1] = xy - wz, B[2] = xz + wy;
  B[3] = xy + wz, B[4] = ww - xx + yy - zz, B[5] = yz - wx;
  B[6] = xz - wy, B[7] = yz + wx, B[8] = ww - xx - yy + zz;
}

// Horn's matrix of H / h_scale, h_scale = max |H| (a scale-free eigenproblem), in N, and
// V = I, ready for the Jacobi sweeps.
template <typename T>
WS3D_HD void horn_start(const T (&H)[3][3], T (&N)[4][4], T (&V)[4][4], T& h_scale) {
  T h_max = T(0);
WS3D_UNROLL
  for (int a = 0; a < 3; ++a)
WS3D_UNROLL
    for (int b = 0; b < 3; ++b) h_max = fabs(H[a][b]) > h_max ? fabs(H[a][b]) : h_max;
  h_scale = h_max > T(0) ? h_max : T(1);
  const T r = T(1) / h_scale;
  const T h[3][3] = {{H[0][0] * r, H[0][1] * r, H[0][2] * r},
                     {H[1][0] * r, H[1][1] * r, H[1][2] * r},
                     {H[2][0] * r, H[2][1] * r, H[2][2] * r}};
  horn_matrix(h, N);
WS3D_UNROLL
  for (int i = 0; i < 4; ++i)
WS3D_UNROLL
    for (int k = 0; k < 4; ++k) V[i][k] = i == k ? T(1) : T(0);
}

// One Jacobi sweep: each off-diagonal pair of N zeroed once, accumulated into V. In the
// round-robin order: each round's two rotations touch disjoint rows and columns, so the
// second's angle does not wait for the first (a rotation is a chain of dependent divisions
// and square roots, which the CPU then overlaps two at a time).
template <typename T>
WS3D_HD void jacobi_sweep(T (&N)[4][4], T (&V)[4][4]) {
  jacobi_rotate(N, V, 0, 1);
  jacobi_rotate(N, V, 2, 3);
  jacobi_rotate(N, V, 0, 2);
  jacobi_rotate(N, V, 1, 3);
  jacobi_rotate(N, V, 0, 3);
  jacobi_rotate(N, V, 1, 2);
}

// Whether N is diagonal to within its dtype's rounding: the off-diagonal's squared
// Frobenius norm at most eps^2 times the diagonal's. What is left then moves the top
// eigenvector by about eps |N| / gap, the size of the error the sweeps' own rounding makes.
template <typename T>
inline bool jacobi_converged(const T (&N)[4][4]) {
  const T off = N[0][1] * N[0][1] + N[0][2] * N[0][2] + N[0][3] * N[0][3] + N[1][2] * N[1][2] +
                N[1][3] * N[1][3] + N[2][3] * N[2][3];
  const T diag = N[0][0] * N[0][0] + N[1][1] * N[1][1] + N[2][2] * N[2][2] + N[3][3] * N[3][3];
  const T eps = std::numeric_limits<T>::epsilon();
  return off <= eps * eps * diag;
}

// From the swept N and V: the largest and second-largest eigenvalue and the unit top
// eigenvector q, by selects over constant indices (a run-time index would push N and V
// out of registers).
template <typename T>
WS3D_HD void horn_top(const T (&N)[4][4], const T (&V)[4][4], T& top, T& second, T (&q)[4]) {
  top = N[0][0];
  second = T(-INFINITY);
WS3D_UNROLL
  for (int i = 0; i < 4; ++i) q[i] = V[i][0];
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
WS3D_UNROLL
  for (int i = 0; i < 4; ++i) q[i] *= inv_norm;
}

// All eigenpairs of N(H / h_scale) by kJacobiSweeps fixed sweeps (the GPU kernels' form:
// no data-dependent trip count): the eigenvalues on the diagonal of N, the eigenvectors in
// the columns of V, then horn_top's outputs. The CPU kernel sweeps blocks of pairs until
// jacobi_converged instead (procrustes_cpu.cpp).
template <typename T>
WS3D_HD void horn_eigen(const T (&H)[3][3], T (&N)[4][4], T (&V)[4][4], T& h_scale, T& top, T& second,
                        T (&q)[4]) {
  horn_start(H, N, V, h_scale);
WS3D_UNROLL
  for (int sweep = 0; sweep < kJacobiSweeps; ++sweep) jacobi_sweep(N, V);
  horn_top(N, V, top, second, q);
}

// The proper rotation R (row-major) taking X onto Y, with N's largest and second-largest
// eigenvalues (in units of h_scale).
template <typename T>
WS3D_HD void horn_rotation(const T (&H)[3][3], T (&R)[9], T& top, T& second, T& h_scale) {
  T N[4][4], V[4][4], q[4];
  horn_eigen(H, N, V, h_scale, top, second, q);
  quaternion_bilinear(q, q, R);
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

// The backward, in the same three steps as the forward (so that the CPU kernel can run
// the eigen-solve SIMD across pairs); the derivation is in ws3d/ops/procrustes.py
// (_reference_backward). Step 2: from the gradients on R (row-major 9), t (3) and s, the
// gradients on H (gH[3 * b + a] is the one on H[a][b]), on var and on Xbar, with the
// eigenproblem solved again. (Array references, not pointers: with pointers GCC does not
// vectorise the CPU kernel's loop over pairs.)
// eigen_moment_gradients takes the solved eigenproblem (N, V, h_scale, top, q of horn_eigen).
template <typename T>
WS3D_HD void eigen_moment_gradients(const T (&N)[4][4], const T (&V)[4][4], T h_scale, T top, const T (&q)[4],
                                    const T (&xb)[3], T var, bool scale, const T (&gR)[9], const T (&gt)[3], T gs,
                                    T (&gH)[9], T& g_var, T (&g_xb)[3]) {
  T R[9];
  quaternion_bilinear(q, q, R);
  const bool use_s = scale && var > T(0);
  const T s = use_s ? top * h_scale / var : T(1);
  // t = Ybar - s R Xbar, then s = lam0 / var.
  T G[3][3], g_s = gs;  // G holds the gradient on R transposed
WS3D_UNROLL
  for (int a = 0; a < 3; ++a) {
    g_xb[a] = -s * (R[a] * gt[0] + R[3 + a] * gt[1] + R[6 + a] * gt[2]);
    g_s -= gt[a] * (R[3 * a] * xb[0] + R[3 * a + 1] * xb[1] + R[3 * a + 2] * xb[2]);
WS3D_UNROLL
    for (int b = 0; b < 3; ++b) G[b][a] = gR[3 * a + b] - s * gt[a] * xb[b];
  }
  const T g_lam = use_s ? g_s / var : T(0);
  g_var = use_s ? -g_s * s / var : T(0);
  // The eigenproblem: g_q = 2 N(G^T) q, then a = g_lam q + sum_k v_k (v_k . g_q) / (lam0 - lam_k).
  T NG[4][4], g_q[4], a[4];
  horn_matrix(G, NG);
WS3D_UNROLL
  for (int i = 0; i < 4; ++i) {
    g_q[i] = T(2) * (NG[i][0] * q[0] + NG[i][1] * q[1] + NG[i][2] * q[2] + NG[i][3] * q[3]);
    a[i] = g_lam * q[i];
  }
WS3D_UNROLL
  for (int k = 0; k < 4; ++k) {
    const T gap = (top - N[k][k]) * h_scale;  // 0 for the top pair itself
    const T along = (V[0][k] * g_q[0] + V[1][k] * g_q[1] + V[2][k] * g_q[2] + V[3][k] * g_q[3]) /
                    (gap > T(0) ? gap : T(1));
WS3D_UNROLL
    for (int i = 0; i < 4; ++i) a[i] += gap > T(0) ? along * V[i][k] : T(0);
  }
  quaternion_bilinear(a, q, gH);  // B(a, q) is the gradient on H transposed
}

template <typename T>
WS3D_HD void pair_moment_gradients(const T (&H)[3][3], const T (&xb)[3], T var, bool scale, const T (&gR)[9],
                                   const T (&gt)[3], T gs, T (&gH)[9], T& g_var, T (&g_xb)[3]) {
  T N[4][4], V[4][4], q[4], h_scale, top, second;
  horn_eigen(H, N, V, h_scale, top, second, q);
  eigen_moment_gradients(N, V, h_scale, top, q, xb, var, scale, gR, gt, gs, gH, g_var, g_xb);
}

// Step 3: the gradients on the pair's points and weights. H = sum_j w_j Xc_j Yc_j^T and
// var = sum_j w_j |Xc_j|^2; the centroids' own terms vanish (sum_j w_j Xc_j = 0). An
// invalid pair passes no gradient.
template <typename T>
WS3D_HD void scatter_pair_gradients(const T* X, const T* Y, const T* w, int64_t J, const CrossCovariance<T>& c,
                                    bool valid, const T (&gH)[9], T g_var, const T (&g_xb)[3], const T* gt, T* gX,
                                    T* gY, T* gw) {
  const T inv_total = T(1) / (c.total > T(0) ? c.total : T(1));
  for (int64_t j = 0; j < J; ++j) {
    const T x[3] = {X[3 * j] - c.xb[0], X[3 * j + 1] - c.xb[1], X[3 * j + 2] - c.xb[2]};
    const T y[3] = {Y[3 * j] - c.yb[0], Y[3 * j + 1] - c.yb[1], Y[3 * j + 2] - c.yb[2]};
    T dw = T(0);
WS3D_UNROLL
    for (int i = 0; i < 3; ++i) {
      const T Hy = gH[i] * y[0] + gH[3 + i] * y[1] + gH[6 + i] * y[2];              // (gH y)_i
      const T Htx = gH[3 * i] * x[0] + gH[3 * i + 1] * x[1] + gH[3 * i + 2] * x[2];  // (gH^T x)_i
      gX[3 * j + i] = valid ? w[j] * (Hy + T(2) * g_var * x[i] + g_xb[i] * inv_total) : T(0);
      gY[3 * j + i] = valid ? w[j] * (Htx + gt[i] * inv_total) : T(0);
      dw += x[i] * Hy + g_var * x[i] * x[i] + (g_xb[i] * x[i] + gt[i] * y[i]) * inv_total;
    }
    gw[j] = valid ? dw : T(0);
  }
}

template <typename T>
WS3D_HD void procrustes_backward_pair(const T* X, const T* Y, const T* w, int64_t J, bool scale, bool valid,
                                      const T* gR, const T* gt, T gs, T* gX, T* gY, T* gw) {
  CrossCovariance<T> c;
  cross_covariance(X, Y, w, J, c);
  T g_R[9], g_t[3], gH[9], g_var, g_xb[3];
  for (int k = 0; k < 9; ++k) g_R[k] = gR[k];
  for (int a = 0; a < 3; ++a) g_t[a] = gt[a];
  pair_moment_gradients(c.H, c.xb, c.var, scale, g_R, g_t, gs, gH, g_var, g_xb);
  scatter_pair_gradients(X, Y, w, J, c, valid, gH, g_var, g_xb, gt, gX, gY, gw);
}

}  // namespace ws3d
