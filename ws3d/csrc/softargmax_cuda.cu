// softargmax_2p5d on CUDA: one block per (b, j) row. Forward: each thread keeps an online
// softmax over a strided slice of the row, then warps merge with shuffles and the block
// merges the warps; thread 0 writes the row. Backward: one coalesced pass recomputing
// p = exp(beta (h - lse)). The math: ws3d/ops/softargmax.py.
#include <cuda_runtime.h>

#include "common.h"
#include "cuda_check.h"
#include "kernels.h"

namespace ws3d {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct RowStats {  // running max, and sums of e, e x, e y, e d with e = exp(beta (h - max))
  T m, s, sx, sy, sd;
};

template <typename T>
__device__ __forceinline__ T shift_of(T m) {  // a max of -inf shifts by 0, so exp gives 0, not NaN
  return m == T(-INFINITY) ? T(0) : m;
}

template <typename T>
__device__ __forceinline__ RowStats<T> merge(const RowStats<T>& a, const RowStats<T>& b, T beta) {
  const T m = a.m > b.m ? a.m : b.m;
  const T fa = exp(beta * (a.m - shift_of(m))), fb = exp(beta * (b.m - shift_of(m)));
  return {m, a.s * fa + b.s * fb, a.sx * fa + b.sx * fb, a.sy * fa + b.sy * fb, a.sd * fa + b.sd * fb};
}

template <typename T>
__device__ __forceinline__ RowStats<T> shuffle_down(const RowStats<T>& a, int offset) {
  return {__shfl_down_sync(0xffffffffu, a.m, offset), __shfl_down_sync(0xffffffffu, a.s, offset),
          __shfl_down_sync(0xffffffffu, a.sx, offset), __shfl_down_sync(0xffffffffu, a.sy, offset),
          __shfl_down_sync(0xffffffffu, a.sd, offset)};
}

template <typename T>
__device__ __forceinline__ RowStats<T> warp_merge(RowStats<T> a, T beta) {
  for (int offset = 16; offset > 0; offset /= 2) a = merge(a, shuffle_down(a, offset), beta);
  return a;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* h, const T* d, int64_t J, int64_t H, int64_t W,
                                                           int64_t h_sb, int64_t h_sj, int64_t d_sb, int64_t d_sj,
                                                           T beta, T* uv, T* z, T* conf, T* lse) {
  const int64_t row = blockIdx.x;
  const T* hr = h + (row / J) * h_sb + (row % J) * h_sj;
  const T* dr = d + (row / J) * d_sb + (row % J) * d_sj;
  RowStats<T> stats = {T(-INFINITY), 0, 0, 0, 0};
  for (int64_t i = threadIdx.x; i < H * W; i += kThreads) {
    const T hv = hr[i];
    const T m = stats.m > hv ? stats.m : hv;
    const T rescale = exp(beta * (stats.m - shift_of(m))), e = exp(beta * (hv - shift_of(m)));
    stats = {m, stats.s * rescale + e, stats.sx * rescale + e * T(i % W), stats.sy * rescale + e * T(i / W),
             stats.sd * rescale + e * dr[i]};
  }
  stats = warp_merge(stats, beta);
  __shared__ RowStats<T> per_warp[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) per_warp[warp] = stats;
  __syncthreads();
  if (warp == 0) {
    stats = lane < kThreads / 32 ? per_warp[lane] : RowStats<T>{T(-INFINITY), 0, 0, 0, 0};
    stats = warp_merge(stats, beta);
    if (lane == 0) {
      const T u = stats.sx / stats.s, v = stats.sy / stats.s;
      uv[2 * row] = u;
      uv[2 * row + 1] = v;
      z[row] = stats.sd / stats.s;
      lse[row] = stats.m + log(stats.s) / beta;
      conf[row] = bilinear_sample(hr, H, W, u, v);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) backward_kernel(const T* g_uv, const T* g_z, const T* h, const T* d,
                                                            const T* uv, const T* z, const T* lse, int64_t J,
                                                            int64_t H, int64_t W, int64_t h_sb, int64_t h_sj,
                                                            int64_t d_sb, int64_t d_sj, T beta, T* dh, T* dd) {
  const int64_t row = blockIdx.x;
  const T* hr = h + (row / J) * h_sb + (row % J) * h_sj;
  const T* dr = d + (row / J) * d_sb + (row % J) * d_sj;
  const T gu = g_uv[2 * row], gv = g_uv[2 * row + 1], gz = g_z[row], shift = lse[row];
  const T g_bar = gu * uv[2 * row] + gv * uv[2 * row + 1] + gz * z[row];
  for (int64_t i = threadIdx.x; i < H * W; i += kThreads) {
    const T p = exp(beta * (hr[i] - shift));
    dh[row * H * W + i] = beta * p * (gu * T(i % W) + gv * T(i / W) + gz * dr[i] - g_bar);
    dd[row * H * W + i] = gz * p;
  }
}

}  // namespace

template <typename T>
void softargmax_forward_cuda(const T* h, const T* d, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb,
                             int64_t h_sj, int64_t d_sb, int64_t d_sj, double beta, T* uv, T* z, T* conf, T* lse,
                             void* stream) {
  forward_kernel<T><<<B * J, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      h, d, J, H, W, h_sb, h_sj, d_sb, d_sj, static_cast<T>(beta), uv, z, conf, lse);
  check_launch("softargmax forward");
}

template <typename T>
void softargmax_backward_cuda(const T* g_uv, const T* g_z, const T* h, const T* d, const T* uv, const T* z,
                              const T* lse, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb, int64_t h_sj,
                              int64_t d_sb, int64_t d_sj, double beta, T* dh, T* dd, void* stream) {
  backward_kernel<T><<<B * J, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g_uv, g_z, h, d, uv, z, lse, J, H, W, h_sb, h_sj, d_sb, d_sj, static_cast<T>(beta), dh, dd);
  check_launch("softargmax backward");
}

#define WS3D_INSTANTIATE(T)                                                                                          \
  template void softargmax_forward_cuda<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                           int64_t, int64_t, double, T*, T*, T*, T*, void*);                        \
  template void softargmax_backward_cuda<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,    \
                                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                            double, T*, T*, void*);
WS3D_INSTANTIATE(float)
WS3D_INSTANTIATE(double)

}  // namespace ws3d
