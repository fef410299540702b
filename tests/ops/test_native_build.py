import shutil
import warnings

import pytest
import torch

from ws3d.ops import _ext, select_backend


def test_native_kernels_build_where_a_compiler_exists():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.fail("no C++ compiler: CI and the developer machines are expected to have one")
    module = _ext.build()
    assert hasattr(module, "softargmax_forward") and hasattr(module, "procrustes")
    assert _ext.native_supports(torch.device("cpu"))


def test_failed_build_warns_once_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(_ext, "SOURCES", tmp_path)  # no sources here: the build must fail
    monkeypatch.setattr(_ext, "_module", None)
    monkeypatch.setattr(_ext, "_failure", None)
    monkeypatch.delenv("WS3D_BACKEND", raising=False)
    with pytest.warns(UserWarning, match="native kernels unavailable .*no C\\+\\+ sources"):
        assert _ext.native() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call must stay quiet
        assert select_backend(torch.device("cpu")) == "reference"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", _ext.CUDA_SOURCES)
def test_cuda_kernels_compile_with_nvcc(source, arch, tmp_path):
    """The .cu files hold no torch headers, so CI (no CUDA torch) can compile-check them."""
    import subprocess

    result = subprocess.run(
        ["nvcc", "-c", "-O3", "-std=c++17", f"-arch={arch}", "-DWS3D_WITH_CUDA", str(_ext.SOURCES / source),
         "-o", str(tmp_path / "kernel.o")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
