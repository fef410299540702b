"""What the op tests share: the device, the backends to compare, dtypes, tolerances."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from ws3d.ops._backend import HAS_TRITON, triton_interpreted
from ws3d.ops._ext import native_supports

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_GPU = DEVICE.type == "cuda"

# Backends that can run on DEVICE in this session: Triton on a GPU, or through the
# interpreter on the CPU; the native kernels wherever ws3d/csrc/ builds (CI builds them, so a
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


def tolerance(expected: torch.Tensor, dtype: torch.dtype, cond: float = 1.0, rounding: float = 4.0,
              floor: float = 0.0, kappa: float | torch.Tensor = 1.0) -> float | torch.Tensor:  # fmt: skip
    """The largest error allowed against the float64 reference of the same inputs:
    ``max(max|expected|, floor) * (rounding * eps(dtype) + cond * kappa * eps(compute))``.

    Every backend computes in float32 (float64 for float64 inputs) and rounds once on the
    way out, so a half-precision result is off by eps/2 of its own precision: ``rounding``
    = 4 covers that (measured: <= 0.5 eps), more where a backward reads a rounded forward
    output. ``cond`` is the op's conditioning for the computation itself: how many float32
    (float64) epsilons it loses in sums over a heatmap's pixels, the root-depth solve or
    the eigen-solve, per unit of ``kappa``; it never rescales the first term. The tests'
    COND tables hold it per op and output, at least 3x the largest seen over native builds
    for several instruction sets (benchmarks/native_build_errors.py).
    ``kappa``: what the error scales with where that varies with the input (the eigen-gap
    condition of each Procrustes pair, one per row, broadcast against ``expected``; the
    error models of softargmax's conf and heatmap gradient); 1 elsewhere. ``floor``: the
    size of the terms a result is the difference of, for results that cancel to ~0 (one
    pixel's gradient).
    """
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    peak = expected.detach().abs().max().item() if expected.numel() else 0.0
    return max(peak, floor) * (rounding * torch.finfo(dtype).eps + cond * kappa * torch.finfo(compute).eps)


# Set by benchmarks/native_build_errors.py: each named comparison then appends what it
# needed to that file (a JSON line) and asserts nothing.
MEASURE_ERRORS = os.environ.get("WS3D_MEASURE_ERRORS")


def epsilons_lost(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, rounding: float = 4.0,
                  floor: float = 0.0, kappa: float | torch.Tensor = 1.0) -> float:  # fmt: skip
    """The smallest ``cond`` under which :func:`tolerance` passes ``actual``: the float32
    (float64) epsilons of ``max(max|expected|, floor)`` per unit of ``kappa`` that the
    computation lost beyond ``rounding`` half-precision epsilons (0 when within those)."""
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    error = (actual.detach().double() - expected.detach().double().to(actual.device)).abs()
    if not error.numel():
        return 0.0
    peak = max(expected.detach().abs().max().item(), floor)
    if peak == 0.0:
        return 0.0 if error.max() == 0 else math.inf
    excess = (error / peak - rounding * torch.finfo(dtype).eps) / (kappa * torch.finfo(compute).eps)
    return max(excess.max().item(), 0.0)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, cond: float = 1.0,
                 rounding: float = 4.0, floor: float = 0.0, kappa: float | torch.Tensor = 1.0,
                 name: str | None = None) -> None:  # fmt: skip
    """``actual`` within :func:`tolerance` of ``expected`` (compared in float64), and,
    unless ``expected`` cancelled to below ``floor``, the tolerance tight enough that a
    zeroed result, or one off by 10 %, would fail. ``name`` (the COND table's key) labels
    the comparison in a measurement run (``WS3D_MEASURE_ERRORS``)."""
    actual, expected = actual.detach().double(), expected.detach().double().to(actual.device)
    if isinstance(kappa, torch.Tensor):
        kappa = kappa.detach().double().to(actual.device)
    if MEASURE_ERRORS and name is not None:
        record = {"test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0], "name": name,
                  "dtype": str(dtype).removeprefix("torch."), "cond": cond,
                  "needed": epsilons_lost(actual, expected, dtype, rounding, floor, kappa)}  # fmt: skip
        with open(MEASURE_ERRORS, "a") as log:
            log.write(json.dumps(record) + "\n")
        return
    bound = torch.as_tensor(tolerance(expected, dtype, cond, rounding, floor, kappa), dtype=torch.float64,
                            device=actual.device).expand_as(expected)  # fmt: skip
    error = (actual - expected).abs()
    outside = ~(error <= bound)  # NaN counts as outside
    if outside.any():
        index = tuple(torch.nonzero(outside)[(error - bound).nan_to_num(math.inf)[outside].argmax()].tolist())
        needed = epsilons_lost(actual, expected, dtype, rounding, floor, kappa)
        raise AssertionError(
            f"{name or 'result'} ({dtype}): {int(outside.sum())} of {outside.numel()} elements outside the tolerance;"
            f" the worst at {index}: {actual[index].item():.17g} against {expected[index].item():.17g} (error"
            f" {error[index].item():.3g}, allowed {bound[index].item():.3g}); cond {cond} < {needed:.4g} needed"
        )
    if expected.numel() and expected.abs().max() > floor:
        for mutated in (torch.zeros_like(actual), 1.1 * actual):
            assert ((mutated - expected).abs() > bound).any(), (
                f"the {dtype} tolerance (up to {bound.max().item():.3g}) would pass a zeroed or 10 %-perturbed result"
            )


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


def mutate(result, index: int, mutation: str):
    """``result`` (a tuple of tensors) with element ``index`` zeroed or 10 % too large."""
    out = list(result)
    out[index] = torch.zeros_like(out[index]) if mutation == "zeroed" else out[index] * 1.1
    return tuple(out)


def assert_catches_a_wrong_gradient(module, backend: str, index: int, mutation: str, monkeypatch,
                                    parity_test, *args) -> None:  # fmt: skip
    """Plant a bug in ``backend``'s backward of the op in ``module`` (gradient ``index``
    zeroed or 10 % off): ``parity_test(*args)`` must fail."""
    forward, backward = module._IMPLEMENTATIONS[backend]
    wrong = lambda *a: mutate(backward(*a), index, mutation)  # noqa: E731
    monkeypatch.setitem(module._IMPLEMENTATIONS, backend, (forward, wrong))
    with pytest.raises(AssertionError):
        parity_test(*args)


def assert_catches_a_wrong_result(module, backend: str, index: int, mutation: str, monkeypatch,
                                  parity_test, *args) -> None:  # fmt: skip
    """Plant a bug in ``backend``'s forward of the op in ``module`` (output ``index`` zeroed
    or 10 % off): ``parity_test(*args)`` must fail."""
    forward, backward = module._IMPLEMENTATIONS[backend]
    wrong = lambda *a: mutate(forward(*a), index, mutation)  # noqa: E731
    monkeypatch.setitem(module._IMPLEMENTATIONS, backend, (wrong, backward))
    with pytest.raises(AssertionError):
        parity_test(*args)


MUTATIONS = ["zeroed", "10% off"]
