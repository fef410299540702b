// Shared by the C++ (CPU) and CUDA kernels: no torch headers, raw pointers only.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

// Host+device helpers are always inlined, and small loops over constant counts fully
// unrolled: the CPU procrustes kernel vectorises the solver across pairs, which needs
// straight-line code, and CUDA keeps fixed-index arrays in registers.
#ifdef __CUDACC__
#define WS3D_HD __host__ __device__ __forceinline__
#define WS3D_UNROLL _Pragma("unroll")
#else
#define WS3D_HD inline __attribute__((always_inline))
#define WS3D_UNROLL _Pragma("GCC unroll 16")
#endif

namespace ws3d {

#ifndef __CUDACC__
// Unqualified sqrt / fabs in the shared headers must pick the float overloads on the
// host too (CUDA's math headers already provide them): float lanes stay float.
using std::fabs;
using std::sqrt;
#endif

// exp for the CPU softmax loops. The float version is written with arithmetic only, so
// that `#pragma omp simd` loops vectorise it (glibc's vector expf needs -ffast-math,
// which would break the -inf and NaN handling the ops promise). exp(x) = 2^k exp(r),
// |r| <= ln2 / 2, with a degree-6 Taylor polynomial: relative error below 2e-7.
// -inf and anything below the float range give exactly 0; NaN stays NaN.
inline float fast_exp(float x) {
  const float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  const float clamped = x > 88.3762626647949f ? 88.3762626647949f : x;  // NaN passes through
  // Round to nearest by adding 1.5 * 2^23: the integer lands in the low mantissa bits.
  // (floorf would be a library call, which stops the loop from vectorising.)
  const float kMagic = 12582912.0f;
  const float shifted = clamped * kLog2e + kMagic;
  int32_t k_bits;
  std::memcpy(&k_bits, &shifted, sizeof k_bits);
  const float k = shifted - kMagic;
  const float r = clamped - k * kLn2Hi - k * kLn2Lo;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (k_bits - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return clamped < -87.33654475f ? 0.0f : p * scale;
}

// The same for double: Cody-Waite reduction with ln2 split in two and a degree-13 Taylor
// polynomial (truncation below 1e-17 relative on |r| <= ln2 / 2), a few ulp in all.
// Results below the normal range (x < -708.39) are 0, where std::exp gives subnormals:
// the softmax sums add them to terms near 1.
inline double fast_exp(double x) {
  const double kLog2e = 1.4426950408889634, kLn2Hi = 6.93147180369123816490e-01,
               kLn2Lo = 1.90821492927058770002e-10;
  // The clamps keep the integer arithmetic below in range; NaN passes through both.
  double clamped = x > 709.0 ? 709.0 : x;
  clamped = clamped < -745.0 ? -745.0 : clamped;
  const double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  const double shifted = clamped * kLog2e + kMagic;
  int64_t k_bits;
  std::memcpy(&k_bits, &shifted, sizeof k_bits);
  const double k = shifted - kMagic;
  const double r = clamped - k * kLn2Hi - k * kLn2Lo;
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const int64_t bits = (k_bits - 0x4338000000000000LL + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return clamped < -708.3964185322641 ? 0.0 : p * scale;
}

}  // namespace ws3d

namespace ws3d {

// conf of softargmax_2p5d: the heatmap row h (H * W, contiguous) sampled bilinearly at
// (u, v), clamped to the grid; a NaN coordinate samples the origin, and a corner of
// weight 0 contributes nothing even where h is -inf.
template <typename T>
WS3D_HD T bilinear_sample(const T* h, int64_t H, int64_t W, T u, T v) {
  u = u == u ? u : T(0);
  v = v == v ? v : T(0);
  u = u < T(0) ? T(0) : (u > T(W - 1) ? T(W - 1) : u);
  v = v < T(0) ? T(0) : (v > T(H - 1) ? T(H - 1) : v);
  const int64_t x0 = static_cast<int64_t>(u) < W - 1 ? static_cast<int64_t>(u) : W - 1;
  const int64_t y0 = static_cast<int64_t>(v) < H - 1 ? static_cast<int64_t>(v) : H - 1;
  const int64_t x1 = x0 + 1 < W ? x0 + 1 : W - 1;
  const int64_t y1 = y0 + 1 < H ? y0 + 1 : H - 1;
  const T wx = u - T(x0), wy = v - T(y0);
  const T w00 = (1 - wx) * (1 - wy), w01 = wx * (1 - wy), w10 = (1 - wx) * wy, w11 = wx * wy;
  T out = 0;
  out += w00 == T(0) ? T(0) : h[y0 * W + x0] * w00;
  out += w01 == T(0) ? T(0) : h[y0 * W + x1] * w01;
  out += w10 == T(0) ? T(0) : h[y1 * W + x0] * w10;
  out += w11 == T(0) ? T(0) : h[y1 * W + x1] * w11;
  return out;
}

}  // namespace ws3d
