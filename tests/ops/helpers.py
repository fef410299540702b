"""What the op tests share: the device, the backends to compare, dtypes, tolerances."""

from __future__ import annotations

import torch

from ws3d.ops._backend import HAS_TRITON, triton_interpreted
from ws3d.ops._ext import native_supports

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"

# Backends that can run on DEVICE in this session: Triton on a GPU, or through the
# interpreter on the CPU; the native kernels wherever csrc/ builds (CI builds them, so a
# broken build fails test_native_kernels_build rather than silently dropping them).
BACKENDS = (
    ["reference"]
    + (["triton"] if HAS_TRITON and (ON_GPU or triton_interpreted()) else [])
    + (["native"] if native_supports(DEVICE) else [])
)

# The interpreter has no bfloat16; on a GPU every dtype is compared.
KERNEL_DTYPES = [torch.float16, torch.float32, torch.float64] + ([torch.bfloat16] if ON_GPU else [])


def dtypes_for(backend: str) -> list[torch.dtype]:
    if backend == "reference":
        return [torch.float16, torch.bfloat16, torch.float32, torch.float64]
    return KERNEL_DTYPES


# Relative tolerance against the float64 reference, as a fraction of the largest
# magnitude of the expected tensor. float16/bfloat16 outputs are rounded to 11 / 8
# significant bits on the way out, which dominates their error.
RTOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    """Compare in float64, with a tolerance scaled by the magnitude of ``expected``."""
    expected = expected.detach().double()
    bound = RTOL[dtype] * scale * max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    torch.testing.assert_close(actual.detach().double(), expected, rtol=0.0, atol=bound)


def backend_params(dtypes_of=dtypes_for):
    """pytest params (backend, dtype) for every combination this session can run."""
    return [(b, d) for b in BACKENDS for d in dtypes_of(b)]


def assert_compile_matches_eager(fn, inputs: list[torch.Tensor], grad_inputs: list[int]) -> None:
    """``fn(*inputs)`` returns a scalar loss: torch.compile(fullgraph=True) must give the
    eager value and the eager gradients of ``inputs[i]`` for i in ``grad_inputs``."""
    results = []
    for f in (fn, torch.compile(fn, fullgraph=True)):
        args = [x.detach().clone().requires_grad_(i in grad_inputs) for i, x in enumerate(inputs)]
        value = f(*args)
        value.backward()
        results.append((value, *(args[i].grad for i in grad_inputs)))
    for eager, compiled in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)
