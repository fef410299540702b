// reconstruct_3d on the CPU: OpenMP over batch rows; the per-row math is shared with
// the CUDA kernel in reconstruct_math.h.
#include <cstring>

#include "kernels.h"
#include "reconstruct_math.h"

namespace ws3d {

namespace {

// K^-1 of the rows one thread visits, inverted again only where K changes: most batches
// share one camera (a (3, 3) K expanded), and the inverse costs as much as the joints.
template <typename T>
class InverseCache {
 public:
  const T* operator()(const T* K) {
    if (!filled_ || std::memcmp(K, K_, sizeof K_) != 0) {
      std::memcpy(K_, K, sizeof K_);
      invert3x3(K_, inv_);
      filled_ = true;
    }
    return inv_;
  }

 private:
  T K_[9], inv_[9];
  bool filled_ = false;
};

}  // namespace

template <typename T>
void reconstruct_forward_cpu(const T* uv, const T* z, const T* K, int64_t B, int64_t J, int64_t k, int64_t l, T* P,
                             T* z_root, bool* valid) {
#pragma omp parallel if (B > 256)
  {
    InverseCache<T> inverse;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      reconstruct_row_forward_inv(uv + 2 * J * b, z + J * b, inverse(K + 9 * b), J, k, l, P + 3 * J * b,
                                  z_root + b, valid + b);
    }
  }
}

template <typename T>
void reconstruct_backward_cpu(const T* g_P, const T* g_root, const T* uv, const T* z, const T* K, int64_t B,
                              int64_t J, int64_t k, int64_t l, T* g_uv, T* g_z) {
#pragma omp parallel if (B > 256)
  {
    InverseCache<T> inverse;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
      reconstruct_row_backward_inv(g_P + 3 * J * b, g_root[b], uv + 2 * J * b, z + J * b, inverse(K + 9 * b), J, k,
                                   l, g_uv + 2 * J * b, g_z + J * b);
    }
  }
}

#define WS3D_INSTANTIATE(T)                                                                                      \
  template void reconstruct_forward_cpu<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, \
                                           T*, bool*);                                                           \
  template void reconstruct_backward_cpu<T>(const T*, const T*, const T*, const T*, const T*, int64_t, int64_t,  \
                                            int64_t, int64_t, T*, T*);
WS3D_INSTANTIATE(float)
WS3D_INSTANTIATE(double)

}  // namespace ws3d
