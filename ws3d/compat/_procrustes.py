"""What the Procrustes drop-ins share: shape checks and the warning for undetermined rows."""

from __future__ import annotations

import warnings

from torch import Tensor

from ws3d.errors import InputError
from ws3d.ops._validate import value_checks_active


def check_points(caller: str, names: tuple[str, str], X: object, Y: object, batched: bool) -> None:
    """Raise InputError unless X and Y are tensors of one shape: (N, P, 3) when ``batched``,
    else (..., P, 3)."""
    for name, value in zip(names, (X, Y), strict=True):
        if not isinstance(value, Tensor):
            raise InputError(
                f"{caller}: {name} must be a torch.Tensor, got {type(value).__name__} "
                "(ragged point clouds are not supported: pad them and give the padding weight 0)"
            )
    if (X.dim() != 3 if batched else X.dim() < 2) or X.shape[-1] != 3:
        raise InputError(
            f"{caller}: {names[0]} must have shape {'(N, P, 3)' if batched else '(..., P, 3)'}, "
            f"got {tuple(X.shape)} (ws3d's fused Procrustes aligns 3D points only)"
        )
    if Y.shape != X.shape:
        raise InputError(f"{caller}: {names[0]} {tuple(X.shape)} and {names[1]} {tuple(Y.shape)} must have one shape")


def warn_undetermined(caller: str, valid: Tensor, peer_result: str) -> None:
    """Warn where the fused op flagged point sets whose rotation is undetermined.

    A value check like the ops' own (it reads ``valid``, a device synchronisation): eager
    mode only, and off with ``ws3d.ops.set_value_checks(False)``.
    """
    if not value_checks_active() or valid.numel() == 0:
        return
    undetermined = int((~valid).sum())
    if undetermined:
        warnings.warn(
            f"{caller}: {undetermined} of {valid.numel()} point sets have no unique rotation (all weights 0, "
            "fewer than 3 weighted points, collinear or coincident points, or NaN / inf); ws3d returns R = I "
            f"and s = 1 for them where the peer returns {peer_result}. "
            "ws3d.ops.weighted_procrustes(..., return_valid=True) returns this flag per point set.",
            stacklevel=3,
        )
