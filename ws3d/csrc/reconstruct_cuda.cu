// reconstruct_3d on CUDA: one thread per batch row (elementwise over the batch), the
// per-row math shared with the CPU kernel in reconstruct_math.h.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "kernels.h"
#include "reconstruct_math.h"

namespace ws3d {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void forward_kernel(const T* uv, const T* z, const T* K, int64_t B, int64_t J, int64_t k, int64_t l, T* P,
                               T* z_root, bool* valid) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < B) {
    reconstruct_row_forward(uv + 2 * J * b, z + J * b, K + 9 * b, J, k, l, P + 3 * J * b, z_root + b, valid + b);
  }
}

template <typename T>
__global__ void backward_kernel(const T* g_P, const T* g_root, const T* uv, const T* z, const T* K, int64_t B,
                                int64_t J, int64_t k, int64_t l, T* g_uv, T* g_z) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b < B) {
    reconstruct_row_backward(g_P + 3 * J * b, g_root[b], uv + 2 * J * b, z + J * b, K + 9 * b, J, k, l,
                             g_uv + 2 * J * b, g_z + J * b);
  }
}

}  // namespace

template <typename T>
void reconstruct_forward_cuda(const T* uv, const T* z, const T* K, int64_t B, int64_t J, int64_t k, int64_t l, T* P,
                              T* z_root, bool* valid, void* stream) {
  const auto blocks = static_cast<unsigned>((B + kThreads - 1) / kThreads);
  forward_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(uv, z, K, B, J, k, l, P, z_root, valid);
  check_launch("reconstruct_3d forward");
}

template <typename T>
void reconstruct_backward_cuda(const T* g_P, const T* g_root, const T* uv, const T* z, const T* K, int64_t B,
                               int64_t J, int64_t k, int64_t l, T* g_uv, T* g_z, void* stream) {
  const auto blocks = static_cast<unsigned>((B + kThreads - 1) / kThreads);
  backward_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(g_P, g_root, uv, z, K, B, J, k, l,
                                                                               g_uv, g_z);
  check_launch("reconstruct_3d backward");
}

#define WS3D_INSTANTIATE(T)                                                                                       \
  template void reconstruct_forward_cuda<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, \
                                            T*, bool*, void*);                                                    \
  template void reconstruct_backward_cuda<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                             int64_t, int64_t, T*, T*, void*);
WS3D_INSTANTIATE(float)
WS3D_INSTANTIATE(double)

}  // namespace ws3d
