"""pytorch3d's corresponding-points alignment on ws3d's fused :func:`~ws3d.ops.weighted_procrustes`.

``from ws3d.compat.pytorch3d import corresponding_points_alignment`` replaces
``from pytorch3d.ops import corresponding_points_alignment``. pytorch3d has no wheel for
current torch on CPU, so tests/compat/test_pytorch3d.py checks this against a float64
reference written from pytorch3d's documented algorithm (its ``ops/points_alignment.py``).

pytorch3d's weights are not ws3d's: it uses them once in the centroids, then multiplies
the centred points by them before the cross-covariance, so the covariance (and the
variance of the scale) weights each point by w^2 while the centroids weight it by w. This
module reproduces that exactly (see :func:`corresponding_points_alignment`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ws3d.errors import InputError
from ws3d.ops import weighted_procrustes
from ws3d.ops._validate import check_same_dtype_device

from ._procrustes import check_points, warn_undetermined

__all__ = ["SimilarityTransform", "corresponding_points_alignment"]

_CALLER = "ws3d.compat.pytorch3d.corresponding_points_alignment"


class SimilarityTransform(NamedTuple):
    """pytorch3d's result type: ``Y ~ s[:, None, None] * X @ R + T[:, None]`` (row vectors)."""

    R: Tensor
    T: Tensor
    s: Tensor


def corresponding_points_alignment(
    X: Tensor,
    Y: Tensor,
    weights: Tensor | None = None,
    estimate_scale: bool = False,
    allow_reflection: bool = False,
    eps: float = 1e-9,
) -> SimilarityTransform:
    """Similarity transform (R, T, s) with ``s X R + T ~ Y``, as pytorch3d computes it.

    Same as ``pytorch3d.ops.corresponding_points_alignment`` for tensors of 3D points
    (Umeyama), in pytorch3d's row-vector convention: ``Y[i] ~ s[i] * X[i] @ R[i] + T[i]``,
    so R is the transpose of the column-vector rotation that :func:`ws3d.ops.weighted_procrustes`
    returns. With weights w, pytorch3d computes
    ``Xmu = sum_j w_j X_j / max(sum_j w_j, eps)`` (Ymu alike), centres the points, multiplies
    the centred points by w and forms ``XYcov = sum_j w_j^2 Xc_j Yc_j^T / max(sum_j w_j, eps)``;
    R comes from the SVD of XYcov with the reflection removed, and with ``estimate_scale``
    ``s = trace(E S) / max(Xcov, eps)``, ``Xcov = sum_j w_j^2 |Xc_j|^2 / max(sum_j w_j, eps)``,
    ``T = Ymu - s Xmu R``. The weights thus count once in the centroids and squared in the
    covariance, which a weighted least-squares fit would not do; this function keeps it.

    Calls ``weighted_procrustes`` once. Without weights, on (X, Y) directly. With weights, on
    the centred points and their mirror images, ``[Xc, -Xc]`` and ``[Yc, -Yc]`` (2P points),
    each with weight w^2: that set's weighted centroid is 0, so the op's cross-covariance
    and variance are pytorch3d's w^2-weighted ones, while the w-weighted centroids are
    computed here. The mirrored set doubles the points the op reads; both paths add a few
    elementwise passes over (N, P, 3).

    Differences from pytorch3d:

    * ``allow_reflection=True`` raises :class:`InputError`: the fused op returns proper
      rotations only (det +1), a reflected target included.
    * Tensors of 3D points only: ``Pointclouds`` or a list of weights (ragged point clouds)
      and other dimensions raise :class:`InputError`. Pad ragged clouds and give the padding
      weight 0, which is what pytorch3d does with them.
    * Degenerate point sets (all weights 0, fewer than 3 weighted points, collinear or
      coincident points, NaN / inf) get R = I, s = 1 and T = Ymu - Xmu (0 where every
      weight is 0, NaN where the points are), R and s without gradient, and a warning;
      pytorch3d returns an arbitrary rotation (or NaN) and its own warning. pytorch3d warns
      whenever a cloud has fewer than 4 points; ws3d warns only where the rotation is
      undetermined (3 points that are not collinear determine it).
      :func:`ws3d.ops.weighted_procrustes` with ``return_valid=True`` returns the flag.
    * float16 / bfloat16 are accepted (accumulated in float32), where pytorch3d's SVD
      refuses them; float32 accumulates in float32 and float64 in float64, so results
      agree with pytorch3d to the rounding of the dtype.
    * Negative weights raise ``ValueError`` (value checks).

    Args:
        X: (N, P, 3) source points, float16 / bfloat16 / float32 / float64.
        Y: (N, P, 3) target points, same shape, dtype and device.
        weights: (N, P) non-negative weights, or ``None`` for uniform weights.
        estimate_scale: also estimate s; otherwise s = 1.
        allow_reflection: must be False (see above).
        eps: pytorch3d's clamp on the total weight and on the variance Xcov.

    Returns:
        ``SimilarityTransform(R, T, s)``: R (N, 3, 3) rotations (det +1), T (N, 3), s (N,),
        in the input's dtype.

    Raises:
        InputError: ``allow_reflection=True``, ragged or non-3D point clouds, shapes that
            differ.
        TypeError, ValueError: dtypes or devices that differ, negative weights.

    Example:
        >>> X = torch.eye(3)[None]
        >>> R, T, s = corresponding_points_alignment(X, X @ torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]))
        >>> (R.round() + 0.0).tolist(), s.tolist()  # + 0.0 turns -0.0 into 0.0
        ([[[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], [1.0])
    """
    if allow_reflection:
        raise InputError(
            f"{_CALLER}: allow_reflection=True is not supported: ws3d's fused Procrustes returns proper "
            "rotations only (det +1); call pytorch3d for orthonormal matrices with det -1"
        )
    if isinstance(weights, (list, tuple)):
        raise InputError(
            f"{_CALLER}: a list of weights (ragged point clouds) is not supported; pad the clouds to one size "
            "and give the padding weight 0"
        )
    check_points(_CALLER, ("X", "Y"), X, Y, batched=True)
    if weights is not None and (not isinstance(weights, Tensor) or weights.shape != X.shape[:2]):
        shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
        raise InputError(f"{_CALLER}: weights must have shape (N, P) = {tuple(X.shape[:2])}, got {shape}")
    check_same_dtype_device({"X": X, "Y": Y} if weights is None else {"X": X, "Y": Y, "weights": weights})
    dtype = X.dtype
    # The centroids and the mirrored set are formed here, before the op: in float32 at
    # least, so half-precision inputs are rounded once, on the way out, as the op rounds them.
    work = torch.promote_types(dtype, torch.float32)
    X, Y = X.to(work), Y.to(work)
    if weights is None:
        out = weighted_procrustes(X, Y, scale=estimate_scale, return_valid=True)
        X_mu, Y_mu = X.mean(1), Y.mean(1)
        total, spread = X.new_full(X.shape[:1], X.shape[1]), (X - X_mu[:, None]).square().sum(-1)
    else:
        weights = weights.to(work)
        total = weights.sum(1).clamp(min=eps)
        X_mu = (weights[..., None] * X).sum(1) / total[:, None]
        Y_mu = (weights[..., None] * Y).sum(1) / total[:, None]
        Xc, Yc = X - X_mu[:, None], Y - Y_mu[:, None]
        w2 = weights.square()
        out = weighted_procrustes(
            torch.cat([Xc, -Xc], 1), torch.cat([Yc, -Yc], 1), torch.cat([w2, w2], 1),
            scale=estimate_scale, return_valid=True,
        )  # fmt: skip
        spread = w2 * Xc.square().sum(-1)
    R, valid = out[0], out[-1]
    warn_undetermined(_CALLER, valid, "an arbitrary rotation or NaN")
    R_rows = R.mT  # pytorch3d's row-vector R: X @ R = (R_ws3d X^T)^T
    if estimate_scale:
        # The op's s = trace(E S) / Xcov; pytorch3d divides by max(Xcov, eps) instead.
        x_cov = spread.sum(1) / total
        s = torch.where(valid & (x_cov < eps), out[2] * x_cov / eps, out[2])
    else:
        s = X.new_ones(X.shape[:1])
    T = Y_mu - s[:, None] * (X_mu[:, None] @ R_rows)[:, 0]
    return SimilarityTransform(R_rows.to(dtype), T.to(dtype), s.to(dtype))
