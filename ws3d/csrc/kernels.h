// Entry points of the native kernels: raw pointers and sizes, no torch types, so that
// the kernels compile without torch headers (nvcc -c in CI) and the one binding file
// (binding.cpp) is the only place that knows about tensors. T is float or double.
//
// Layouts: heatmaps / depthmaps (B, J, H, W) with each H*W plane contiguous and the
// given (b, j) strides; every other tensor contiguous, shapes as in ws3d/ops.
#pragma once

#include <cstdint>

namespace ws3d {

template <typename T>
void softargmax_forward_cpu(const T* h, const T* d, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb,
                            int64_t h_sj, int64_t d_sb, int64_t d_sj, double beta, T* uv, T* z, T* conf, T* lse);

template <typename T>
void softargmax_backward_cpu(const T* g_uv, const T* g_z, const T* h, const T* d, const T* uv, const T* z,
                             const T* lse, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb, int64_t h_sj,
                             int64_t d_sb, int64_t d_sj, double beta, T* dh, T* dd);

template <typename T>
void reconstruct_forward_cpu(const T* uv, const T* z, const T* K, int64_t B, int64_t J, int64_t k, int64_t l, T* P,
                             T* z_root, bool* valid);

template <typename T>
void reconstruct_backward_cpu(const T* g_P, const T* g_root, const T* uv, const T* z, const T* K, int64_t B,
                              int64_t J, int64_t k, int64_t l, T* g_uv, T* g_z);

template <typename T>
void procrustes_cpu(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                    bool* valid);

template <typename T>
void procrustes_backward_cpu(const T* X, const T* Y, const T* w, const bool* valid, const T* gR, const T* gt,
                             const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY, T* gw);

#ifdef WS3D_WITH_CUDA
template <typename T>
void softargmax_forward_cuda(const T* h, const T* d, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb,
                             int64_t h_sj, int64_t d_sb, int64_t d_sj, double beta, T* uv, T* z, T* conf, T* lse,
                             void* stream);

template <typename T>
void softargmax_backward_cuda(const T* g_uv, const T* g_z, const T* h, const T* d, const T* uv, const T* z,
                              const T* lse, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb, int64_t h_sj,
                              int64_t d_sb, int64_t d_sj, double beta, T* dh, T* dd, void* stream);

template <typename T>
void reconstruct_forward_cuda(const T* uv, const T* z, const T* K, int64_t B, int64_t J, int64_t k, int64_t l, T* P,
                              T* z_root, bool* valid, void* stream);

template <typename T>
void reconstruct_backward_cuda(const T* g_P, const T* g_root, const T* uv, const T* z, const T* K, int64_t B,
                               int64_t J, int64_t k, int64_t l, T* g_uv, T* g_z, void* stream);

template <typename T>
void procrustes_cuda(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                     bool* valid, void* stream);

template <typename T>
void procrustes_backward_cuda(const T* X, const T* Y, const T* w, const bool* valid, const T* gR, const T* gt,
                              const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY, T* gw, void* stream);
#endif

}  // namespace ws3d
