// weighted_procrustes on the CPU: OpenMP over blocks of kLanes pairs, and SIMD across the
// pairs of a block in the two costly steps:
//   * the moments: the block's points are copied to lane-minor order, then summed joint by
//     joint on every lane at once (per pair, X, Y and w are (J, 3), (J, 3), (J) rows, which
//     a SIMD loop over joints could only gather);
//   * Horn's eigenproblem: swept on every lane at once until every lane has converged
//     (jacobi_converged), at most kJacobiSweeps sweeps. Jacobi converges quadratically, so
//     float32 stops sooner than float64, and well-conditioned pairs sooner than near-ties.
// The per-pair steps around them (validity, scale, translation; the backward's scatter to
// the joints) are shared with the CUDA kernel in procrustes_solver.h.
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

#include "kernels.h"
#include "procrustes_solver.h"

// A block is one SIMD register of pairs: wider blocks would not fit Horn's N and V (32
// values per pair) in the registers.
#ifdef __AVX512F__
#define WS3D_SIMD_BYTES 64
#else
#define WS3D_SIMD_BYTES 32
#endif

namespace ws3d {

namespace {

// One block's pairs, lane-minor: field[...][i] belongs to pair first + i.
template <typename T>
struct Block {
  static constexpr int64_t kLanes = WS3D_SIMD_BYTES / sizeof(T);  // one SIMD register of T
  T H[3][3][kLanes], xb[3][kLanes], yb[3][kLanes], total[kLanes], var[kLanes];
  T N[4][4][kLanes], V[4][4][kLanes], h_scale[kLanes];
  T finite[kLanes];  // 1 or 0 (T, not bool, so that the loop that sets it vectorises)

  CrossCovariance<T> pair(int64_t i) const {
    CrossCovariance<T> c;
WS3D_UNROLL
    for (int a = 0; a < 3; ++a) {
WS3D_UNROLL
      for (int b = 0; b < 3; ++b) c.H[a][b] = H[a][b][i];
      c.xb[a] = xb[a][i];
      c.yb[a] = yb[a][i];
    }
    c.total = total[i];
    c.var = var[i];
    c.finite = finite[i] != T(0);
    return c;
  }
};

#ifdef __AVX__
// dst[r * dst_stride + i] = src[i * src_stride + r]: an 8 x 8 (float) or 4 x 4 (double)
// transpose in registers.
inline void transpose_tile(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

inline void transpose_tile(const double* src, int64_t src_stride, double* dst, int64_t dst_stride) {
  __m256d r[4], t[4];
  for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(src + i * src_stride);
  t[0] = _mm256_unpacklo_pd(r[0], r[1]);
  t[1] = _mm256_unpackhi_pd(r[0], r[1]);
  t[2] = _mm256_unpacklo_pd(r[2], r[3]);
  t[3] = _mm256_unpackhi_pd(r[2], r[3]);
  _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t[0], t[2], 0x20));
  _mm256_storeu_pd(dst + dst_stride, _mm256_permute2f128_pd(t[1], t[3], 0x20));
  _mm256_storeu_pd(dst + 2 * dst_stride, _mm256_permute2f128_pd(t[0], t[2], 0x31));
  _mm256_storeu_pd(dst + 3 * dst_stride, _mm256_permute2f128_pd(t[1], t[3], 0x31));
}
#endif

// Rows of M values, one per pair of the block (row n at src + M n), in lane-minor order:
// dst[m * kLanes + i] is value m of pair first + i. Idle lanes of a short last block copy
// its first pair. A full block goes through register tiles where the CPU has AVX (a copy
// value by value stores to kLanes-strided addresses, which costs as much as the moments).
template <typename T>
void to_lane_minor(const T* src, int64_t M, int64_t first, int64_t lanes, T* dst) {
  constexpr int64_t L = Block<T>::kLanes;
  int64_t m0 = 0;
#ifdef __AVX__
  constexpr int64_t W = 32 / sizeof(T);  // a tile is W pairs by W values
  if (lanes == L) {
    for (; m0 + W <= M; m0 += W)
      for (int64_t i0 = 0; i0 < L; i0 += W) transpose_tile(src + M * (first + i0) + m0, M, dst + m0 * L + i0, L);
  }
#endif
  for (int64_t i = 0; i < L; ++i) {
    const T* row = src + M * (first + (i < lanes ? i : 0));
    for (int64_t m = m0; m < M; ++m) dst[m * L + i] = row[m];
  }
}

// The block's points in lane-minor order (to_lane_minor): X's 3J values, then Y's 3J,
// then w's J, each kLanes wide.
template <typename T>
void gather_block(const T* X, const T* Y, const T* w, int64_t J, int64_t first, int64_t lanes, T* points) {
  constexpr int64_t L = Block<T>::kLanes;
  to_lane_minor(X, 3 * J, first, lanes, points);
  to_lane_minor(Y, 3 * J, first, lanes, points + 3 * J * L);
  to_lane_minor(w, J, first, lanes, points + 6 * J * L);
}

// cross_covariance of procrustes_solver.h on every lane: the same sums in the same order.
template <typename T>
void block_moments(const T* points, int64_t J, Block<T>& b) {
  constexpr int64_t L = Block<T>::kLanes;
  T inf_or_nan[L];
  for (int64_t i = 0; i < L; ++i) {  // (a memset)
    inf_or_nan[i] = b.total[i] = b.var[i] = T(0);
WS3D_UNROLL
    for (int a = 0; a < 3; ++a) {
      b.xb[a][i] = b.yb[a][i] = T(0);
WS3D_UNROLL
      for (int c = 0; c < 3; ++c) b.H[a][c][i] = T(0);
    }
  }
  for (int64_t j = 0; j < J; ++j) {
    const T *p = points + 3 * j * L, *q = p + 3 * J * L, *wj = points + (6 * J + j) * L;
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const T probe = p[i] + p[L + i] + p[2 * L + i] + q[i] + q[L + i] + q[2 * L + i] + wj[i];
      inf_or_nan[i] = probe - probe == T(0) ? inf_or_nan[i] : T(1);
      b.total[i] += wj[i];
WS3D_UNROLL
      for (int a = 0; a < 3; ++a) {
        b.xb[a][i] += wj[i] * p[a * L + i];
        b.yb[a][i] += wj[i] * q[a * L + i];
      }
    }
  }
#pragma omp simd
  for (int64_t i = 0; i < L; ++i) {
    const T inv_total = T(1) / (b.total[i] > T(0) ? b.total[i] : T(1));
WS3D_UNROLL
    for (int a = 0; a < 3; ++a) b.xb[a][i] *= inv_total, b.yb[a][i] *= inv_total;
  }
  // Centred moments: raw ones would cancel for poses far from the origin.
  for (int64_t j = 0; j < J; ++j) {
    const T *p = points + 3 * j * L, *q = p + 3 * J * L, *wp = points + (6 * J + j) * L;
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const T wj = wp[i];
      const T x[3] = {p[i] - b.xb[0][i], p[L + i] - b.xb[1][i], p[2 * L + i] - b.xb[2][i]};
      const T y[3] = {q[i] - b.yb[0][i], q[L + i] - b.yb[1][i], q[2 * L + i] - b.yb[2][i]};
WS3D_UNROLL
      for (int a = 0; a < 3; ++a) {
        const T wx = wj * x[a];
        b.var[i] += wx * x[a];
WS3D_UNROLL
        for (int c = 0; c < 3; ++c) b.H[a][c][i] += wx * y[c];
      }
    }
  }
  // A row with NaN or inf is treated as all weights zero (then flagged, R = I, t = 0).
  for (int64_t i = 0; i < L; ++i) {  // (once per block: not worth a SIMD requirement)
    const bool ok = inf_or_nan[i] == T(0);
    b.finite[i] = ok ? T(1) : T(0);
    b.total[i] = ok ? b.total[i] : T(0);
    b.var[i] = ok ? b.var[i] : T(0);
WS3D_UNROLL
    for (int a = 0; a < 3; ++a) {
      b.xb[a][i] = ok ? b.xb[a][i] : T(0);
      b.yb[a][i] = ok ? b.yb[a][i] : T(0);
WS3D_UNROLL
      for (int c = 0; c < 3; ++c) b.H[a][c][i] = ok ? b.H[a][c][i] : T(0);
    }
  }
}

// Horn's eigenproblem of every lane's H, swept until every lane has converged.
template <typename T>
void block_eigen(Block<T>& b) {
  constexpr int64_t L = Block<T>::kLanes;
#pragma omp simd
  for (int64_t i = 0; i < L; ++i) {
    const T Hi[3][3] = {{b.H[0][0][i], b.H[0][1][i], b.H[0][2][i]},
                        {b.H[1][0][i], b.H[1][1][i], b.H[1][2][i]},
                        {b.H[2][0][i], b.H[2][1][i], b.H[2][2][i]}};
    T N[4][4], V[4][4];
    horn_start(Hi, N, V, b.h_scale[i]);
WS3D_UNROLL
    for (int r = 0; r < 4; ++r)
WS3D_UNROLL
      for (int c = 0; c < 4; ++c) b.N[r][c][i] = N[r][c], b.V[r][c][i] = V[r][c];
  }
  for (int sweep = 0; sweep < kJacobiSweeps; ++sweep) {
    int unconverged = 0;
#pragma omp simd reduction(+ : unconverged)
    for (int64_t i = 0; i < L; ++i) {
      T N[4][4], V[4][4];
WS3D_UNROLL
      for (int r = 0; r < 4; ++r)
WS3D_UNROLL
        for (int c = 0; c < 4; ++c) N[r][c] = b.N[r][c][i], V[r][c] = b.V[r][c][i];
      jacobi_sweep(N, V);
      unconverged += jacobi_converged(N) ? 0 : 1;
WS3D_UNROLL
      for (int r = 0; r < 4; ++r)
WS3D_UNROLL
        for (int c = 0; c < 4; ++c) b.N[r][c][i] = N[r][c], b.V[r][c][i] = V[r][c];
    }
    if (unconverged == 0) break;
  }
}

// Runs body(b, first, lanes) on every block of pairs first .. first + lanes - 1 (the last
// block may be short), in parallel, once the block's moments and Horn's eigenproblem are
// solved: the part the forward and the backward share.
template <typename T, typename Body>
void for_each_solved_block(const T* X, const T* Y, const T* w, int64_t N, int64_t J, const Body& body) {
  constexpr int64_t L = Block<T>::kLanes;
#pragma omp parallel
  {
    std::vector<T> points(7 * J * L);
    Block<T> b;
#pragma omp for schedule(static)
    for (int64_t first = 0; first < N; first += L) {
      const int64_t lanes = N - first < L ? N - first : L;
      gather_block(X, Y, w, J, first, lanes, points.data());
      block_moments(points.data(), J, b);
      block_eigen(b);
      body(b, first, lanes);
    }
  }
}

}  // namespace

template <typename T>
void procrustes_cpu(const T* X, const T* Y, const T* w, int64_t N, int64_t J, bool scale, T* R, T* t, T* s,
                    bool* valid) {
  constexpr int64_t L = Block<T>::kLanes;
  for_each_solved_block(X, Y, w, N, J, [&](const Block<T>& b, int64_t first, int64_t lanes) {
    T R_opt[9][L], top[L], second[L];
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      T Ni[4][4], Vi[4][4], q[4], Ri[9];
WS3D_UNROLL
      for (int r = 0; r < 4; ++r)
WS3D_UNROLL
        for (int c = 0; c < 4; ++c) Ni[r][c] = b.N[r][c][i], Vi[r][c] = b.V[r][c][i];
      horn_top(Ni, Vi, top[i], second[i], q);
      quaternion_bilinear(q, q, Ri);
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) R_opt[k][i] = Ri[k];
    }
    for (int64_t i = 0; i < lanes; ++i) {
      const int64_t n = first + i;
      T Ri[9];
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) Ri[k] = R_opt[k][i];
      finish_pair(b.pair(i), Ri, top[i], second[i], b.h_scale[i], scale, R + 9 * n, t + 3 * n, s + n, valid + n);
    }
  });
}

template <typename T>
void procrustes_backward_cpu(const T* X, const T* Y, const T* w, const bool* valid, const T* gR, const T* gt,
                             const T* gs, int64_t N, int64_t J, bool scale, T* gX, T* gY, T* gw) {
  constexpr int64_t L = Block<T>::kLanes;
  for_each_solved_block(X, Y, w, N, J, [&](const Block<T>& b, int64_t first, int64_t lanes) {
    T g_R[9][L], g_t[3][L], g_s[L], g_H[9][L], g_var[L], g_xb[3][L];
    for (int64_t i = 0; i < L; ++i) {
      const int64_t n = first + (i < lanes ? i : 0);  // idle lanes redo a real pair
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) g_R[k][i] = gR[9 * n + k];
WS3D_UNROLL
      for (int a = 0; a < 3; ++a) g_t[a][i] = gt[3 * n + a];
      g_s[i] = gs[n];
    }
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      T Ni[4][4], Vi[4][4], q[4], top, second;
WS3D_UNROLL
      for (int r = 0; r < 4; ++r)
WS3D_UNROLL
        for (int c = 0; c < 4; ++c) Ni[r][c] = b.N[r][c][i], Vi[r][c] = b.V[r][c][i];
      horn_top(Ni, Vi, top, second, q);
      const T xbi[3] = {b.xb[0][i], b.xb[1][i], b.xb[2][i]};
      T gRi[9], gti[3] = {g_t[0][i], g_t[1][i], g_t[2][i]}, gHi[9], g_xbi[3];
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) gRi[k] = g_R[k][i];
      eigen_moment_gradients(Ni, Vi, b.h_scale[i], top, q, xbi, b.var[i], scale, gRi, gti, g_s[i], gHi, g_var[i],
                             g_xbi);
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) g_H[k][i] = gHi[k];
WS3D_UNROLL
      for (int a = 0; a < 3; ++a) g_xb[a][i] = g_xbi[a];
    }
    for (int64_t i = 0; i < lanes; ++i) {
      const int64_t n = first + i;
      T gHi[9], g_xbi[3];
WS3D_UNROLL
      for (int k = 0; k < 9; ++k) gHi[k] = g_H[k][i];
WS3D_UNROLL
      for (int a = 0; a < 3; ++a) g_xbi[a] = g_xb[a][i];
      scatter_pair_gradients(X + 3 * J * n, Y + 3 * J * n, w + J * n, J, b.pair(i), valid[n], gHi, g_var[i],
                             g_xbi, gt + 3 * n, gX + 3 * J * n, gY + 3 * J * n, gw + J * n);
    }
  });
}

template void procrustes_cpu<float>(const float*, const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                    float*, bool*);
template void procrustes_cpu<double>(const double*, const double*, const double*, int64_t, int64_t, bool, double*,
                                     double*, double*, bool*);

template void procrustes_backward_cpu<float>(const float*, const float*, const float*, const bool*, const float*,
                                             const float*, const float*, int64_t, int64_t, bool, float*, float*,
                                             float*);
template void procrustes_backward_cpu<double>(const double*, const double*, const double*, const bool*,
                                              const double*, const double*, const double*, int64_t, int64_t, bool,
                                              double*, double*, double*);

}  // namespace ws3d
