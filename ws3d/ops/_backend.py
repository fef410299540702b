"""Backend selection shared by the three ops.

Each op module keeps its own dispatcher (a dict from backend name to implementation);
this module only decides *which* backend a call on a given device uses:

* ``WS3D_BACKEND=reference|triton|native`` in the environment, or :func:`use_backend`
  as a context manager, forces one;
* otherwise CPU tensors go to the native C++ kernels of ws3d/csrc/ (built on first use; the
  pure-PyTorch reference when they cannot be built) and CUDA tensors to Triton.
  CUDA -> Triton for all three ops is chosen from static evidence until a GPU has timed both
  (benchmarks/results/kernel_resources.md, compiled for sm_80 / sm_90 without a GPU): neither
  the Triton nor the CUDA C++ kernels spill, Triton's occupancy is the same or higher for
  every kernel, and Triton reads half precision and strided inputs in place where the
  ws3d/csrc/ kernels need a float32 / float64 contiguous copy (one more pass over memory).
  Once `make gpu-check` has measured both, the faster one per op becomes the default.

Triton on CPU tensors only works through its interpreter (``TRITON_INTERPRET=1``),
which is how the test suite checks the Triton kernels on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

from ._ext import native_supports

try:  # Triton is a Linux-only dependency; the package must import without it.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only where triton is absent
    triton = None
    tl = None
    HAS_TRITON = False

BACKENDS = ("reference", "triton", "native")

_forced: str | None = None
_warned_no_triton = False


def triton_interpreted() -> bool:
    """True when Triton kernels run through the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ws3d backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Force every ws3d op called inside the block onto one backend.

    Example:
        >>> with use_backend("reference"):
        ...     uv, z, conf = softargmax_2p5d(h, d, beta=50.0)
    """
    global _forced
    previous, _forced = _forced, _check_name(name)
    try:
        yield
    finally:
        _forced = previous


def select_backend(device: torch.device) -> str:
    """Name of the backend that runs an op whose inputs live on ``device``."""
    global _warned_no_triton
    forced = _forced or os.environ.get("WS3D_BACKEND") or None
    if forced is not None:
        _check_name(forced)
        if forced == "triton":
            if not HAS_TRITON:
                raise RuntimeError("WS3D_BACKEND=triton, but triton is not installed")
            if device.type != "cuda" and not triton_interpreted():
                raise RuntimeError(
                    f"the triton backend needs CUDA tensors (got {device.type}) "
                    "or TRITON_INTERPRET=1 for the CPU interpreter"
                )
        if forced == "native" and not native_supports(device):
            raise RuntimeError(f"WS3D_BACKEND=native, but the native kernels are unavailable for {device.type}")
        return forced
    if device.type == "cpu" and native_supports(device):
        return "native"
    if device.type == "cuda":
        if HAS_TRITON:
            return "triton"
        if not _warned_no_triton:
            warnings.warn(
                "triton is not installed: ws3d ops on CUDA run the slower PyTorch reference", stacklevel=3
            )
            _warned_no_triton = True
    return "reference"


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every narrower float accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def native_inputs(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors as the native kernels take them: contiguous, in the first one's
    accumulation dtype (the ws3d/csrc/ kernels exist for float32 and float64 only)."""
    acc = accumulation_dtype(tensors[0].dtype)
    return [x.to(acc).contiguous() for x in tensors]


def on_device_of(x: torch.Tensor):
    """The context for a Triton launch on ``x``: Triton launches on the current CUDA device
    and its stream, so a tensor on cuda:1 while cuda:0 is current would run on the wrong
    device. A no-op for CPU tensors (the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def triton_accumulation_dtype(dtype: torch.dtype):
    """The Triton twin of :func:`accumulation_dtype`, passed to kernels as a constexpr."""
    return tl.float64 if dtype == torch.float64 else tl.float32
