import shutil
import warnings
from pathlib import Path

import pytest
import torch

from ws3d.ops import _ext, select_backend
from ws3d.ops._constants import DEFINES


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


def test_a_left_over_build_lock_is_named_before_the_wait(tmp_path):
    """torch's load() waits without a word while the lock exists; a killed build leaves it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ext.warn_if_locked(tmp_path)  # no lock: quiet
    (tmp_path / "lock").touch()
    with pytest.warns(UserWarning, match=f"waiting for {tmp_path / 'lock'} .*delete that file"):
        _ext.warn_if_locked(tmp_path)


def _loop_end(lines: list[str], pragma: int) -> int:
    """The 1-based line that closes the loop under the `#pragma` on line ``pragma``."""
    depth = 0
    for number in range(pragma + 1, len(lines) + 1):
        depth += lines[number - 1].count("{") - lines[number - 1].count("}")
        if depth == 0 and "}" in lines[number - 1]:
            return number
    raise AssertionError(f"no loop closes after line {pragma}")


@pytest.mark.skipif(shutil.which("g++") is None, reason="the vectoriser report is GCC's")
def test_procrustes_simd_loops_vectorise_across_pairs(tmp_path):
    """The CPU Procrustes kernels' speed rests on GCC vectorising their `omp simd` loops over
    the pairs of a block (the moments, the Jacobi eigen-solve, the forward's and backward's
    per-pair steps); small changes lose that silently (pointer arguments did: the backward
    ran 2.4x slower). Compiled with the extension's flags, each must be: GCC reports a
    vectorised loop on a line of its body."""
    import subprocess

    source = _ext.SOURCES / "procrustes_cpu.cpp"
    result = subprocess.run(
        [
            "g++",
            "-std=c++17",
            *_ext.cflags(),
            "-c",
            str(source),
            "-o",
            str(tmp_path / "p.o"),
            "-fopt-info-vec-optimized",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    lines = source.read_text().splitlines()
    pragmas = [i + 1 for i, line in enumerate(lines) if line.strip().startswith("#pragma omp simd")]
    vectorised = [int(line.split(":")[1]) for line in result.stderr.splitlines()
                  if line.startswith(f"{source}:") and ": optimized: loop vectorized" in line]  # fmt: skip
    assert len(pragmas) == 7
    for pragma in pragmas:
        end = _loop_end(lines, pragma)
        assert any(pragma < line <= end for line in vectorised), (pragma, end, vectorised)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", _ext.CUDA_SOURCES)
def test_cuda_kernels_compile_with_nvcc(source, arch, tmp_path):
    """The .cu files hold no torch headers, so CI (no CUDA torch) can compile-check them."""
    import subprocess

    result = subprocess.run(
        [
            "nvcc",
            "-c",
            "-O3",
            "-std=c++17",
            f"-arch={arch}",
            "-DWS3D_WITH_CUDA",
            *DEFINES,
            str(_ext.SOURCES / source),
            "-o",
            str(tmp_path / "kernel.o"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed on this machine")
def test_cuda_binding_compiles_against_the_torch_headers(tmp_path):
    """binding.cpp's CUDA branch (the device guard, the stream) is built only on GPU
    machines; check its syntax here with nvcc driving the host compiler, the CPU wheel's
    torch headers and the toolkit's. The CPU wheel lacks one generated header,
    c10/cuda/impl/cuda_cmake_macros.h (build-configuration macros only): an empty one
    stands in for it."""
    import subprocess
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    (tmp_path / "c10" / "cuda" / "impl").mkdir(parents=True)
    (tmp_path / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").write_text("")
    includes = [f"-I{p}" for p in (*include_paths(), tmp_path, sysconfig.get_paths()["include"], _ext.SOURCES)]
    result = subprocess.run(
        ["nvcc", "-x", "c++", "-std=c++17", "-Xcompiler", "-fsyntax-only", "-c", "-DWS3D_WITH_CUDA", *DEFINES,
         *includes,
         str(_ext.SOURCES / "binding.cpp"), "-o", str(tmp_path / "binding.o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def _relative_error(actual, expected):
    return ((actual.double() - expected).norm() / expected.norm()).item()


@pytest.mark.skipif(not _ext.native_supports(torch.device("cpu")), reason="native kernels did not build")
def test_native_float32_is_within_1e_5_of_float64_reference():
    """Issue 3's accuracy target, on well-conditioned inputs, forward and backward."""
    from ws3d.ops import (
        reconstruct_3d,
        reconstruct_3d_reference,
        softargmax_2p5d,
        softargmax_2p5d_reference,
        use_backend,
        weighted_procrustes,
        weighted_procrustes_reference,
    )

    g = torch.Generator().manual_seed(0)
    h, d = torch.randn(8, 17, 64, 64, generator=g) / 20, torch.randn(8, 17, 64, 64, generator=g)
    g_uv, g_z = torch.randn(8, 17, 2, generator=g), torch.randn(8, 17, generator=g)

    def softargmax_outputs(fn, h, d):
        h, d = h.clone().requires_grad_(), d.clone().requires_grad_()
        uv, z, conf = fn(h, d, 50.0)
        return (uv, z, conf, *torch.autograd.grad((uv * g_uv).sum() + (z * g_z).sum(), (h, d)))

    expected = softargmax_outputs(softargmax_2p5d_reference, h.double(), d.double())
    with use_backend("native"):
        actual = softargmax_outputs(softargmax_2p5d, h, d)
    for a, e in zip(actual, expected, strict=True):
        assert _relative_error(a, e) < 1e-5

    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]]).expand(64, 3, 3)
    uv = 500 + 50 * torch.randn(64, 17, 2, generator=g)
    z = 0.3 * torch.randn(64, 17, generator=g)
    expected = reconstruct_3d_reference(uv.double(), z.double(), K.double())
    with use_backend("native"):
        actual = reconstruct_3d(uv, z, K)
    assert torch.equal(actual[2], expected[2])
    for a, e in zip(actual[:2], expected[:2], strict=True):
        assert _relative_error(a, e) < 1e-5

    X = torch.randn(4096, 17, 3, generator=g)
    Q = torch.linalg.qr(torch.randn(4096, 3, 3, generator=g))[0]
    Q = Q * torch.linalg.det(Q)[:, None, None]  # proper rotations
    Y = 1.3 * X @ Q.mT + 0.5 + 0.01 * torch.randn(4096, 17, 3, generator=g)
    w = torch.rand(4096, 17, generator=g) + 0.1
    expected = weighted_procrustes_reference(X.double(), Y.double(), w.double(), True)
    with use_backend("native"):
        actual = weighted_procrustes(X, Y, w, scale=True)
    for a, e in zip(actual, expected[:3], strict=True):
        assert _relative_error(a, e) < 1e-5


def test_builds_are_cached_per_instruction_set_and_gpu_architecture():
    """-march=native code is only safe on a CPU with the same flags: a shared extension
    cache must keep one build per instruction set (and per GPU architecture)."""
    avx2 = "processor : 0\nflags : fpu sse2 avx avx2\n"
    avx512 = "processor : 0\nflags : fpu sse2 avx avx2 avx512f\n"
    assert _ext.machine_tag(avx2) == _ext.machine_tag("flags : avx2 avx sse2 fpu\n")  # order does not matter
    assert _ext.machine_tag(avx2) != _ext.machine_tag(avx512)
    assert _ext.machine_tag(avx2, [(8, 0)]) != _ext.machine_tag(avx2, [(9, 0)])
    module = _ext.build()
    assert _ext.machine_tag() in Path(module.__file__).parent.name


def test_ws3d_native_isa_replaces_march_native_in_its_own_cached_build(monkeypatch):
    """WS3D_NATIVE_ISA (README, Testing) builds the kernels as another CPU's build rounds: its
    flags replace -march=native, and the build is cached apart from the default one."""
    monkeypatch.delenv("WS3D_NATIVE_ISA", raising=False)
    default_flags, default_tag = _ext.cflags(), _ext.machine_tag()
    assert "-march=native" in default_flags
    monkeypatch.setenv("WS3D_NATIVE_ISA", "-march=x86-64-v2  -ffp-contract=off")
    flags = _ext.cflags()
    assert "-march=native" not in flags and flags[-2:] == ["-march=x86-64-v2", "-ffp-contract=off"]
    assert flags[:-2] == default_flags[:-1]  # everything else is kept
    assert _ext.machine_tag() != default_tag
    monkeypatch.setenv("WS3D_NATIVE_ISA", " ")
    assert _ext.cflags() == default_flags and _ext.machine_tag() == default_tag
