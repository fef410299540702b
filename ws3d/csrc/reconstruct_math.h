// reconstruct_3d for one batch row, shared by the CPU and CUDA kernels; the math and its
// implicit-differentiation backward are documented in ws3d/ops/reconstruct.py.
// Row pointers: uv (J, 2), z (J), K (3, 3) row-major, P (J, 3): all contiguous.
#pragma once

#include "common.h"

namespace ws3d {

// Defined once, in ws3d/ops/_constants.py, and passed by the build as a -D definition.
#ifndef WS3D_RECONSTRUCT_EPS
#error "build with the -D definitions of ws3d/ops/_constants.py (DEFINES)"
#endif
constexpr double kReconstructEps = WS3D_RECONSTRUCT_EPS;  // a <= eps: coincident reference joints

template <typename T>
WS3D_HD void invert3x3(const T* K, T* inv) {
  const T c00 = K[4] * K[8] - K[5] * K[7], c01 = K[2] * K[7] - K[1] * K[8], c02 = K[1] * K[5] - K[2] * K[4];
  const T c10 = K[5] * K[6] - K[3] * K[8], c11 = K[0] * K[8] - K[2] * K[6], c12 = K[2] * K[3] - K[0] * K[5];
  const T c20 = K[3] * K[7] - K[4] * K[6], c21 = K[1] * K[6] - K[0] * K[7], c22 = K[0] * K[4] - K[1] * K[3];
  const T r = T(1) / (K[0] * c00 + K[1] * c10 + K[2] * c20);
  inv[0] = c00 * r, inv[1] = c01 * r, inv[2] = c02 * r;
  inv[3] = c10 * r, inv[4] = c11 * r, inv[5] = c12 * r;
  inv[6] = c20 * r, inv[7] = c21 * r, inv[8] = c22 * r;
}

template <typename T>
WS3D_HD void unproject(const T* inv, const T* uv, T* x) {
  for (int i = 0; i < 3; ++i) x[i] = inv[3 * i] * uv[0] + inv[3 * i + 1] * uv[1] + inv[3 * i + 2];
}

template <typename T>
WS3D_HD T dot3(const T* a, const T* b) {
  return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

// The rays of the reference joints, d, e and the far root of a z^2 + 2 b z + c = 0.
template <typename T>
struct RootDepth {
  T xk[3], xl[3], d[3], e[3];
  T z_root, s;  // s = sqrt(b^2 - a c), 1 where invalid
  bool valid;

  WS3D_HD RootDepth(const T* inv, const T* uv, const T* z, int64_t k, int64_t l) {
    unproject(inv, uv + 2 * k, xk);
    unproject(inv, uv + 2 * l, xl);
    for (int i = 0; i < 3; ++i) {
      d[i] = xk[i] - xl[i];
      e[i] = z[k] * xk[i] - z[l] * xl[i];
    }
    const T a = dot3(d, d), b = dot3(d, e), c = dot3(e, e) - T(1);
    const T disc = b * b - a * c;
    const bool a_ok = a > T(kReconstructEps);
    valid = disc >= T(0) && a_ok;
    s = valid ? sqrt(disc) : T(1);
    // (-b + s) / a cancels when b > 0; c / (-b - s) is the same root without cancellation.
    const T far = b > T(0) ? c / (-b - s) : (-b + s) / (a_ok ? a : T(1));
    z_root = valid ? far : (a_ok ? -b / a : T(0));
  }
};

// The row given K^-1 (inv).
template <typename T>
WS3D_HD void reconstruct_row_forward_inv(const T* uv, const T* z, const T* inv, int64_t J, int64_t k, int64_t l,
                                         T* P, T* z_root, bool* valid) {
  const RootDepth<T> root(inv, uv, z, k, l);
  for (int64_t j = 0; j < J; ++j) {
    T x[3];
    unproject(inv, uv + 2 * j, x);
    for (int i = 0; i < 3; ++i) P[3 * j + i] = (root.z_root + z[j]) * x[i];
  }
  *z_root = root.z_root;
  *valid = root.valid;
}

template <typename T>
WS3D_HD void reconstruct_row_forward(const T* uv, const T* z, const T* K, int64_t J, int64_t k, int64_t l, T* P,
                                     T* z_root, bool* valid) {
  T inv[9];
  invert3x3(K, inv);
  reconstruct_row_forward_inv(uv, z, inv, J, k, l, P, z_root, valid);
}

template <typename T>
WS3D_HD void reconstruct_row_backward_inv(const T* g_P, T g_root, const T* uv, const T* z, const T* inv, int64_t J,
                                          int64_t k, int64_t l, T* g_uv, T* g_z) {
  const RootDepth<T> root(inv, uv, z, k, l);
  // d/du and d/dv of x~ = K^-1 [u, v, 1] are K^-1's first two columns.
  auto to_uv = [&](const T* g_x, T* out, T sign) {
    out[0] += sign * (inv[0] * g_x[0] + inv[3] * g_x[1] + inv[6] * g_x[2]);
    out[1] += sign * (inv[1] * g_x[0] + inv[4] * g_x[1] + inv[7] * g_x[2]);
  };
  T g_total = g_root;
  for (int64_t j = 0; j < J; ++j) {
    T x[3], g_x[3];
    unproject(inv, uv + 2 * j, x);
    for (int i = 0; i < 3; ++i) g_x[i] = (root.z_root + z[j]) * g_P[3 * j + i];
    g_uv[2 * j] = g_uv[2 * j + 1] = T(0);
    to_uv(g_x, g_uv + 2 * j, T(1));
    g_z[j] = dot3(g_P + 3 * j, x);
    g_total += g_z[j];
  }
  if (!root.valid) return;  // an invalid row's z_root carries no gradient
  T g_d[3], g_e[3], at_k[3], at_l[3];
  for (int i = 0; i < 3; ++i) {
    const T bone = root.z_root * root.d[i] + root.e[i];  // P_k - P_l
    g_d[i] = -g_total * root.z_root / root.s * bone;
    g_e[i] = -g_total / root.s * bone;
  }
  for (int i = 0; i < 3; ++i) {
    at_k[i] = g_d[i] + z[k] * g_e[i];
    at_l[i] = g_d[i] + z[l] * g_e[i];
  }
  to_uv(at_k, g_uv + 2 * k, T(1));
  to_uv(at_l, g_uv + 2 * l, T(-1));
  g_z[k] += dot3(g_e, root.xk);
  g_z[l] -= dot3(g_e, root.xl);
}

template <typename T>
WS3D_HD void reconstruct_row_backward(const T* g_P, T g_root, const T* uv, const T* z, const T* K, int64_t J,
                                      int64_t k, int64_t l, T* g_uv, T* g_z) {
  T inv[9];
  invert3x3(K, inv);
  reconstruct_row_backward_inv(g_P, g_root, uv, z, inv, J, k, l, g_uv, g_z);
}

}  // namespace ws3d
