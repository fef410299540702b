// Launch-error check for the .cu files (no torch headers: a C++ exception, which the
// pybind11 binding turns into a Python RuntimeError).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace ws3d {

inline void check_launch(const char* kernel) {
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) throw std::runtime_error(std::string("ws3d ") + kernel + ": " + cudaGetErrorString(error));
}

}  // namespace ws3d
