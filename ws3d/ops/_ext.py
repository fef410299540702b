"""The native kernels of ws3d/csrc/, built on first use and cached.

``native()`` compiles ws3d/csrc/ with torch.utils.cpp_extension.load (ninja, the host C++
compiler, and nvcc for the .cu files when torch has CUDA and a toolkit is found) the
first time a native kernel is needed, then reuses the build from torch's extension
cache. When the build fails (no compiler, no ninja, no sources in this install) it
warns once, with the reason, and returns None: the ops then fall back to Triton or the
PyTorch reference. The package itself never needs a compiler to import.

Prebuild (and see the compiler's output) with ``python -m ws3d.ops.build``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

from ._constants import DEFINES

# Inside the package (package data), so that a wheel or a non-editable install builds them too.
SOURCES = Path(__file__).resolve().parents[1] / "csrc"
CPU_SOURCES = ["binding.cpp", "softargmax_cpu.cpp", "reconstruct_cpu.cpp", "procrustes_cpu.cpp"]
CUDA_SOURCES = ["softargmax_cuda.cu", "reconstruct_cuda.cu", "procrustes_cuda.cu"]
# -fno-math-errno lets sqrt and the hand-written exp vectorise. -fno-trapping-math lets GCC
# evaluate both sides of the Procrustes solver's selects (a comparison or division that
# could raise an FP exception is otherwise kept behind a branch): without it the eigen-solve
# vectorises across pairs only where AVX-512 masks hide the branch, not on AVX2 CPUs. It
# changes no result (ws3d reads no FP exception flags). -ffast-math is avoided on purpose:
# the ops promise exact -inf and NaN behaviour.
CFLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", *DEFINES]
# The instruction set, apart from CFLAGS because results depend on it: the float rounding
# of the kernels changes with FMA contraction and vector width, so a tolerance can hold on
# one CPU's build and fail on another's. WS3D_NATIVE_ISA replaces it, to run the kernels
# as another CPU's build rounds them ("-march=x86-64-v2": no FMA; "-march=x86-64-v3":
# AVX2 + FMA; "-march=native -ffp-contract=off"). The CPU must support what it names.
DEFAULT_ISA = "-march=native"


def isa_flags() -> list[str]:
    """The instruction-set flags the CPU kernels are built with: ``WS3D_NATIVE_ISA``
    (split like a shell line) when set and not empty, else ``-march=native``."""
    return shlex.split(os.environ.get("WS3D_NATIVE_ISA", "").strip() or DEFAULT_ISA)


def cflags() -> list[str]:
    """Every host compiler flag of the CPU kernels: :data:`CFLAGS` and :func:`isa_flags`."""
    return [*CFLAGS, *isa_flags()]


_module: ModuleType | None = None
_failure: str | None = None


def _with_cuda() -> bool:
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and CUDA_HOME is not None and os.environ.get("WS3D_NO_CUDA_BUILD") != "1"


def warn_if_locked(build_directory: Path) -> None:
    """Warn when torch's build lock exists: ``load`` then waits, silently and for as long
    as the file is there, and a build that was killed (Ctrl-C during the first use) leaves
    it behind."""
    lock = build_directory / "lock"
    if lock.exists():
        minutes = (time.time() - lock.stat().st_mtime) / 60
        warnings.warn(
            f"ws3d: waiting for {lock} (made {minutes:.0f} min ago): another process is building the native "
            "kernels, or a build was killed; if none is running, delete that file",
            stacklevel=3,
        )


def machine_tag(cpuinfo: str | None = None, capabilities: list[tuple[int, int]] | None = None,
                isa: list[str] | None = None) -> str:  # fmt: skip
    """A short key for what the build is specific to: the CPU's instruction-set flags
    (``-march=native``), the ISA flags it was built with, and, for a CUDA build, the
    visible GPUs' compute capabilities (nvcc builds for those only). Builds are cached
    under a name that carries it, so machines that share torch's extension cache (a
    cluster's home folder) never load code their CPU or GPU cannot run (SIGILL, "no kernel
    image"), and a build for another ISA (``WS3D_NATIVE_ISA``) never replaces the default.

    ``cpuinfo``: the text of /proc/cpuinfo (read when None; elsewhere the platform's
    processor name stands in); ``capabilities``: (major, minor) per GPU, none for a CPU
    build; ``isa``: the ISA flags (:func:`isa_flags` when None).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags = next((line.split(":", 1)[1] for line in cpuinfo.splitlines() if line.startswith(("flags", "Features"))),
                 platform.processor())  # fmt: skip
    isa = isa_flags() if isa is None else isa
    key = " ".join([platform.machine(), *sorted(flags.split()), *(f"sm_{a}{b}" for a, b in capabilities or []),
                    "isa:", *isa])  # fmt: skip
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def build(verbose: bool = False) -> ModuleType:
    """Compile (or load from the cache) the extension; raises if that fails."""
    from torch.utils.cpp_extension import _get_build_directory, load

    if not (SOURCES / "binding.cpp").exists():
        raise FileNotFoundError(f"no C++ sources at {SOURCES} (an install without its package data?)")
    cuda = _with_cuda()
    capabilities = [torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())] if cuda else None
    name = f"ws3d_native_{'cuda_' if cuda else ''}{machine_tag(capabilities=capabilities)}"
    # torch's own cache folder (a private helper, unchanged since torch 1.x), so that the
    # lock checked here is the one load() waits on.
    build_directory = Path(_get_build_directory(name, verbose=False))
    warn_if_locked(build_directory)
    sources = [str(SOURCES / file) for file in CPU_SOURCES + (CUDA_SOURCES if cuda else [])]
    return load(
        name=name,
        build_directory=str(build_directory),
        sources=sources,
        extra_cflags=cflags() + (["-DWS3D_WITH_CUDA"] if cuda else []),
        extra_cuda_cflags=["-O3", "-DWS3D_WITH_CUDA", *DEFINES],
        extra_ldflags=["-fopenmp"],
        verbose=verbose,
    )


def native() -> ModuleType | None:
    """The built extension, or None (after one warning) when it cannot be built."""
    global _module, _failure
    if _module is None and _failure is None:
        try:
            _module = build()
        except Exception as error:  # noqa: BLE001 - any build failure means: fall back
            _failure = f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
            warnings.warn(
                f"ws3d: native kernels unavailable ({_failure}); falling back to Triton / the PyTorch "
                "reference. `python -m ws3d.ops.build` shows the compiler output.",
                stacklevel=3,
            )
    return _module


def native_supports(device: torch.device) -> bool:
    """True when the native extension builds and has kernels for ``device``."""
    module = native()
    return module is not None and (device.type == "cpu" or (device.type == "cuda" and module.with_cuda))
