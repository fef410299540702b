// weighted_procrustes and its backward on CUDA: one thread per pair, the Horn 4x4 Jacobi solver in
// registers (procrustes_solver.h, shared with the CPU kernel); no cuSOLVER.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "kernels.h"
#include "procrustes_solver.h"

namespace ws3d {
namespace {

constexpr int kThreads = 128;

template <typename T>
__global__ void procrustes_kernel(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t,
                                  T* s, bool* valid) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n < N) procrustes_pair(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, scale, R + 9 * n, t + 3 * n, s + n, valid + n);
}

template <typename T>
__global__ void procrustes_backward_kernel(const T* X, const T* Y, const T* w, const bool* valid, const T* gR,
                                           const T* gt, const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY,
                                           T* gw) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (n < N) {
    procrustes_backward_pair(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, scale, valid[n], gR + 9 * n, gt + 3 * n,
                             gs[n], gX + 3 * J * n, gY + 3 * J * n, gw + J * n);
  }
}

}  // namespace

template <typename T>
void procrustes_cuda(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                     bool* valid, void* stream) {
  const auto blocks = static_cast<unsigned>((N + kThreads - 1) / kThreads);
  procrustes_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(X, Y, w, N, J, scale, R, t, s,
                                                                                  valid);
  check_launch("weighted_procrustes");
}

template <typename T>
void procrustes_backward_cuda(const T* X, const T* Y, const T* w, const bool* valid, const T* gR, const T* gt,
                              const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY, T* gw, void* stream) {
  const auto blocks = static_cast<unsigned>((N + kThreads - 1) / kThreads);
  procrustes_backward_kernel<T><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      X, Y, w, valid, gR, gt, gs, N, J, scale, gX, gY, gw);
  check_launch("weighted_procrustes_backward");
}

template void procrustes_cuda<float>(const float*, const float*, const float*, int64_t, int64_t, bool, float*,
                                     float*, float*, bool*, void*);
template void procrustes_cuda<double>(const double*, const double*, const double*, int64_t, int64_t, bool, double*,
                                      double*, double*, bool*, void*);

template void procrustes_backward_cuda<float>(const float*, const float*, const float*, const bool*, const float*,
                                              const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                              float*, void*);
template void procrustes_backward_cuda<double>(const double*, const double*, const double*, const bool*,
                                               const double*, const double*, const double*, int64_t, int64_t, bool,
                                               double*, double*, double*, void*);

}  // namespace ws3d
