// weighted_procrustes on the CPU: OpenMP over pairs; the 3x3 (Horn 4x4) solver is shared
// with the CUDA kernel in procrustes_solver.h.
#include "kernels.h"
#include "procrustes_solver.h"

namespace ws3d {

template <typename T>
void procrustes_cpu(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                    bool* valid) {
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    procrustes_pair(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, scale, R + 9 * n, t + 3 * n, s + n, valid + n);
  }
}

template void procrustes_cpu<float>(const float*, const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                    float*, bool*);
template void procrustes_cpu<double>(const double*, const double*, const double*, int64_t, int64_t, bool, double*,
                                     double*, double*, bool*);

}  // namespace ws3d
