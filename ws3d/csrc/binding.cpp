// The one file that knows about tensors: checks what the raw-pointer kernels assume and
// exposes them to ws3d/ops/_ext.py. Outputs are allocated by the Python launchers.
// Only the headers it uses: torch/extension.h pulls in all of libtorch's C++ API and
// takes several times as long to compile, on every fresh install.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <torch/csrc/utils/pybind.h>

#include "kernels.h"

#ifdef WS3D_WITH_CUDA
// c10's guard and stream headers need only the CUDA runtime's, so CI can syntax-check this
// file against the CPU wheel's headers and the toolkit (ATen/cuda/CUDAContext.h pulls cuBLAS).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {

void check(const at::Tensor& x, const char* name, const at::Tensor& like) {
  TORCH_CHECK(x.device() == like.device(), "ws3d native: ", name, " is on ", x.device(), ", expected ", like.device());
  TORCH_CHECK(x.scalar_type() == like.scalar_type(), "ws3d native: ", name, " has dtype ", x.scalar_type());
}

void check_contiguous(std::initializer_list<std::pair<const at::Tensor*, const char*>> tensors,
                      const at::Tensor& like) {
  for (const auto& [x, name] : tensors) {
    check(*x, name, like);
    TORCH_CHECK(x->is_contiguous(), "ws3d native: ", name, " must be contiguous");
  }
}

void check_planes(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4 && x.stride(3) == 1 && (x.size(2) == 1 || x.stride(2) == x.size(3)),
              "ws3d native: every H*W plane of ", name, " must be contiguous");
}

// Runs `body<scalar_t>(cpu)` for float or double inputs.
#define WS3D_DISPATCH(x, ...)                                                                  \
  TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble,             \
              "ws3d native kernels take float32 or float64, got ", (x).scalar_type());         \
  AT_DISPATCH_FLOATING_TYPES((x).scalar_type(), "ws3d", [&] { __VA_ARGS__; })

// Calls ws3d::<name>_cuda or ws3d::<name>_cpu. A CUDA launch goes to x's device and that
// device's current stream: the guard makes x's device current for the call, so a tensor on
// cuda:1 is not launched on cuda:0 when cuda:0 is the caller's current device.
#ifdef WS3D_WITH_CUDA
#define WS3D_LAUNCH(x, name, ...)                                                          \
  if ((x).is_cuda()) {                                                                     \
    const c10::cuda::CUDAGuard guard((x).device());                                        \
    ws3d::name##_cuda<scalar_t>(__VA_ARGS__, c10::cuda::getCurrentCUDAStream().stream());  \
  } else {                                                                                 \
    ws3d::name##_cpu<scalar_t>(__VA_ARGS__);                                               \
  }
#else
#define WS3D_LAUNCH(x, name, ...)                                                         \
  TORCH_CHECK(!(x).is_cuda(), "ws3d native: this build has no CUDA kernels (CPU only)"); \
  ws3d::name##_cpu<scalar_t>(__VA_ARGS__)
#endif

void softargmax_forward(const at::Tensor& h, const at::Tensor& d, double beta, at::Tensor& uv, at::Tensor& z,
                        at::Tensor& conf, at::Tensor& lse) {
  check_planes(h, "heatmaps");
  check_planes(d, "depthmaps");
  check(d, "depthmaps", h);
  check_contiguous({{&uv, "uv"}, {&z, "z"}, {&conf, "conf"}, {&lse, "lse"}}, h);
  const int64_t B = h.size(0), J = h.size(1), H = h.size(2), W = h.size(3);
  WS3D_DISPATCH(h, {
    WS3D_LAUNCH(h, softargmax_forward,
                h.data_ptr<scalar_t>(), d.data_ptr<scalar_t>(), B, J, H, W, h.stride(0), h.stride(1),
                d.stride(0), d.stride(1), beta, uv.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                conf.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>());
  });
}

void softargmax_backward(const at::Tensor& g_uv, const at::Tensor& g_z, const at::Tensor& h, const at::Tensor& d,
                         const at::Tensor& uv, const at::Tensor& z, const at::Tensor& lse, double beta,
                         at::Tensor& dh, at::Tensor& dd) {
  check_planes(h, "heatmaps");
  check_planes(d, "depthmaps");
  check(d, "depthmaps", h);
  check_contiguous({{&g_uv, "grad_uv"}, {&g_z, "grad_z"}, {&uv, "uv"}, {&z, "z"}, {&lse, "lse"}, {&dh, "dh"},
                    {&dd, "dd"}}, h);
  const int64_t B = h.size(0), J = h.size(1), H = h.size(2), W = h.size(3);
  WS3D_DISPATCH(h, {
    WS3D_LAUNCH(h, softargmax_backward,
                g_uv.data_ptr<scalar_t>(), g_z.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(),
                d.data_ptr<scalar_t>(), uv.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(),
                lse.data_ptr<scalar_t>(), B, J, H, W, h.stride(0), h.stride(1), d.stride(0),
                d.stride(1), beta, dh.data_ptr<scalar_t>(), dd.data_ptr<scalar_t>());
  });
}

void reconstruct_forward(const at::Tensor& uv, const at::Tensor& z, const at::Tensor& K, int64_t k, int64_t l,
                         at::Tensor& P, at::Tensor& z_root, at::Tensor& valid) {
  check_contiguous({{&uv, "uv"}, {&z, "z"}, {&K, "K"}, {&P, "P"}, {&z_root, "z_root"}}, uv);
  TORCH_CHECK(valid.is_contiguous() && valid.scalar_type() == at::kBool, "ws3d native: valid must be contiguous bool");
  const int64_t B = z.size(0), J = z.size(1);
  WS3D_DISPATCH(uv, {
    WS3D_LAUNCH(uv, reconstruct_forward,
                uv.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), B, J, k, l,
                P.data_ptr<scalar_t>(), z_root.data_ptr<scalar_t>(), valid.data_ptr<bool>());
  });
}

void reconstruct_backward(const at::Tensor& g_P, const at::Tensor& g_root, const at::Tensor& uv,
                          const at::Tensor& z, const at::Tensor& K, int64_t k, int64_t l, at::Tensor& g_uv,
                          at::Tensor& g_z) {
  check_contiguous({{&g_P, "grad_P"}, {&g_root, "grad_z_root"}, {&uv, "uv"}, {&z, "z"}, {&K, "K"}, {&g_uv, "g_uv"},
                    {&g_z, "g_z"}}, uv);
  const int64_t B = z.size(0), J = z.size(1);
  WS3D_DISPATCH(uv, {
    WS3D_LAUNCH(uv, reconstruct_backward,
                g_P.data_ptr<scalar_t>(), g_root.data_ptr<scalar_t>(), uv.data_ptr<scalar_t>(),
                z.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), B, J, k, l, g_uv.data_ptr<scalar_t>(),
                g_z.data_ptr<scalar_t>());
  });
}

void procrustes(const at::Tensor& X, const at::Tensor& Y, const at::Tensor& w, bool scale, at::Tensor& R,
                at::Tensor& t, at::Tensor& s, at::Tensor& valid) {
  check_contiguous({{&X, "X"}, {&Y, "Y"}, {&w, "w"}, {&R, "R"}, {&t, "t"}, {&s, "s"}}, X);
  TORCH_CHECK(valid.is_contiguous() && valid.scalar_type() == at::kBool, "ws3d native: valid must be contiguous bool");
  const int64_t N = w.size(0), J = w.size(1);
  WS3D_DISPATCH(X, {
    WS3D_LAUNCH(X, procrustes,
                X.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), N, J, scale,
                R.data_ptr<scalar_t>(), t.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                valid.data_ptr<bool>());
  });
}

void procrustes_backward(const at::Tensor& X, const at::Tensor& Y, const at::Tensor& w, const at::Tensor& valid,
                         const at::Tensor& g_R, const at::Tensor& g_t, const at::Tensor& g_s, bool scale,
                         at::Tensor& g_X, at::Tensor& g_Y, at::Tensor& g_w) {
  check_contiguous({{&X, "X"}, {&Y, "Y"}, {&w, "w"}, {&g_R, "grad_R"}, {&g_t, "grad_t"}, {&g_s, "grad_s"},
                    {&g_X, "g_X"}, {&g_Y, "g_Y"}, {&g_w, "g_w"}}, X);
  TORCH_CHECK(valid.is_contiguous() && valid.scalar_type() == at::kBool, "ws3d native: valid must be contiguous bool");
  const int64_t N = w.size(0), J = w.size(1);
  WS3D_DISPATCH(X, {
    WS3D_LAUNCH(X, procrustes_backward,
                X.data_ptr<scalar_t>(), Y.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), valid.data_ptr<bool>(),
                g_R.data_ptr<scalar_t>(), g_t.data_ptr<scalar_t>(), g_s.data_ptr<scalar_t>(), N, J, scale,
                g_X.data_ptr<scalar_t>(), g_Y.data_ptr<scalar_t>(), g_w.data_ptr<scalar_t>());
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ws3d native kernels (C++/OpenMP on CPU, CUDA on GPU); called by ws3d/ops";
#ifdef WS3D_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("softargmax_forward", &softargmax_forward);
  m.def("softargmax_backward", &softargmax_backward);
  m.def("reconstruct_forward", &reconstruct_forward);
  m.def("reconstruct_backward", &reconstruct_backward);
  m.def("procrustes", &procrustes);
  m.def("procrustes_backward", &procrustes_backward);
}
