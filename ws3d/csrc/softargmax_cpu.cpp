// softargmax_2p5d on the CPU: OpenMP over (b, j) rows, SIMD inside a row.
// Forward: one pass for the row max, one fused pass for sum e, sum e x, sum e y, sum e d
// (the row is in cache by then, so h and d come from memory once). Backward: one pass
// that recomputes p = exp(beta (h - lse)) and writes dh and dd. See ws3d/ops/softargmax.py.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "common.h"
#include "kernels.h"

namespace ws3d {

namespace {

// dh and dd are fresh allocations the size of the heatmaps (71 MB each at the training
// shape); their first touch page-faults every 4 KiB, which costs more than the kernel
// itself. Asking for transparent huge pages first (a hint; ignored where THP is off)
// cuts the faults 512-fold.
void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// A column index as T, through int32: AVX2 has no int64 -> float conversion, and one in a
// loop keeps GCC from vectorising it at all (AVX-512 has one). A row is far below 2^31.
template <typename T>
inline T column(int64_t x) {
  return static_cast<T>(static_cast<int32_t>(x));
}

}  // namespace

template <typename T>
void softargmax_forward_cpu(const T* h, const T* d, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb,
                            int64_t h_sj, int64_t d_sb, int64_t d_sj, double beta_, T* uv, T* z, T* conf, T* lse) {
  const T beta = static_cast<T>(beta_);
  const int64_t n = H * W;
  // Every element's x and y as T, shared by the threads (a division per element would
  // not vectorise).
  std::vector<T> xs(n), ys(n);
  for (int64_t i = 0; i < n; ++i) {
    xs[i] = column<T>(i % W);
    ys[i] = column<T>(i / W);
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * J; ++row) {
    const T* hr = h + (row / J) * h_sb + (row % J) * h_sj;
    const T* dr = d + (row / J) * d_sb + (row % J) * d_sj;
    T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = hr[i] > m ? hr[i] : m;
    // A row that is -inf everywhere shifts by 0: its sums stay 0 and lse becomes -inf.
    const T shift = m == -std::numeric_limits<T>::infinity() ? T(0) : m;
    // SIMD partial sums over at most kChunk elements in T, flushed into double: a long
    // sequential float32 sum over the whole grid would lose ~H digits' worth of accuracy.
    // The chunks run over the flat plane, x and y read from tables: at small W a loop per
    // image row spends as long reducing its lanes as computing its exps. float64's chunks
    // stay short, so that its lane sums keep float64's error small.
    constexpr int64_t kChunk = sizeof(T) == 4 ? 512 : 64;
    const T* xt = xs.data();
    const T* yt = ys.data();
    double sum = 0, sum_x = 0, sum_y = 0, sum_d = 0;
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
      const int64_t i1 = i0 + kChunk < n ? i0 + kChunk : n;
      T part = 0, part_x = 0, part_y = 0, part_d = 0;
#pragma omp simd reduction(+ : part, part_x, part_y, part_d)
      for (int64_t i = i0; i < i1; ++i) {
        const T e = fast_exp(beta * (hr[i] - shift));
        part += e;
        part_x += e * xt[i];
        part_y += e * yt[i];
        part_d += e * dr[i];
      }
      sum += part;
      sum_x += part_x;
      sum_y += part_y;
      sum_d += part_d;
    }
    const T u = static_cast<T>(sum_x / sum), v = static_cast<T>(sum_y / sum);
    uv[2 * row] = u;
    uv[2 * row + 1] = v;
    z[row] = static_cast<T>(sum_d / sum);
    lse[row] = static_cast<T>(static_cast<double>(shift) + std::log(sum) / static_cast<double>(beta));
    conf[row] = bilinear_sample(hr, H, W, u, v);
  }
}

template <typename T>
void softargmax_backward_cpu(const T* g_uv, const T* g_z, const T* h, const T* d, const T* uv, const T* z,
                             const T* lse, int64_t B, int64_t J, int64_t H, int64_t W, int64_t h_sb, int64_t h_sj,
                             int64_t d_sb, int64_t d_sj, double beta_, T* dh, T* dd) {
  const T beta = static_cast<T>(beta_);
  advise_huge_pages(dh, B * J * H * W * static_cast<int64_t>(sizeof(T)));
  advise_huge_pages(dd, B * J * H * W * static_cast<int64_t>(sizeof(T)));
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < B * J; ++row) {
    const T* hr = h + (row / J) * h_sb + (row % J) * h_sj;
    const T* dr = d + (row / J) * d_sb + (row % J) * d_sj;
    T* dhr = dh + row * H * W;
    T* ddr = dd + row * H * W;
    const T gu = g_uv[2 * row], gv = g_uv[2 * row + 1], gz = g_z[row], shift = lse[row];
    const T g_bar = gu * uv[2 * row] + gv * uv[2 * row + 1] + gz * z[row];
    for (int64_t y = 0; y < H; ++y) {
      const T* hy = hr + y * W;
      const T* dy = dr + y * W;
      T* dhy = dhr + y * W;
      T* ddy = ddr + y * W;
      const T gy = gv * static_cast<T>(y) - g_bar;
#pragma omp simd
      for (int64_t x = 0; x < W; ++x) {
        const T p = fast_exp(beta * (hy[x] - shift));
        dhy[x] = beta * p * (gu * column<T>(x) + gy + gz * dy[x]);
        ddy[x] = gz * p;
      }
    }
  }
}

#define WS3D_INSTANTIATE(T)                                                                                         \
  template void softargmax_forward_cpu<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                          int64_t, int64_t, double, T*, T*, T*, T*);                               \
  template void softargmax_backward_cpu<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*,    \
                                           int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                           double, T*, T*);
WS3D_INSTANTIATE(float)
WS3D_INSTANTIATE(double)

}  // namespace ws3d
