"""Argument checks run before any kernel launch.

Structural checks (type, dtype, shape, device) are free and always run. Value checks
(NaN, rows without a distribution, negative weights) need the data and, on a GPU, a
device synchronisation, so they run only in eager mode (never while ``torch.compile``
traces) and can be switched off with :func:`set_value_checks` or
``WS3D_VALUE_CHECKS=0`` once a pipeline is known to be clean.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_value_checks = os.environ.get("WS3D_VALUE_CHECKS", "1") not in ("0", "", "false", "False")


def set_value_checks(enabled: bool) -> None:
    """Turn the data-dependent checks (NaN and friends) on or off for every ws3d op."""
    global _value_checks
    _value_checks = bool(enabled)


def value_checks_active() -> bool:
    """True when the data-dependent checks should run for this call."""
    return _value_checks and not torch.compiler.is_compiling()


def check_float_tensor(name: str, x: object, ndim: int | tuple[int, ...], layout: str) -> Tensor:
    """Raise TypeError/ValueError unless ``x`` is a floating tensor with ``ndim`` dims
    (or one of the ranks in ``ndim`` when it is a tuple).

    ``layout`` is the expected shape as people read it, e.g. ``"(B, J, H, W)"``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be float16, bfloat16, float32 or float64, got {x.dtype}"
        )
    if x.dim() not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    return x


def check_same_dtype_device(pairs: dict[str, Tensor]) -> None:
    """Raise unless every tensor shares the first one's dtype and device."""
    (first_name, first), *rest = pairs.items()
    for name, x in rest:
        if x.device != first.device:
            raise ValueError(f"{name} is on {x.device} but {first_name} is on {first.device}")
        if x.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {x.dtype} but {first_name} has {first.dtype}")


def check_dim(name: str, x: Tensor, dim: int, expected: int, layout: str) -> None:
    if x.shape[dim] != expected:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")


def check_no_nan(name: str, x: Tensor) -> None:
    """Raise ValueError naming the first NaN of ``x`` (value check).

    Screened by the sum, one read of ``x`` without a mask the size of ``x``: a NaN makes it
    NaN, and so may +inf beside -inf, which the exact test that follows then clears."""
    if value_checks_active() and x.numel() and bool(torch.isnan(x.sum())) and bool(torch.isnan(x).any()):
        index = tuple(torch.nonzero(torch.isnan(x))[0].tolist())
        raise ValueError(f"{name} contains NaN (first at index {index})")
