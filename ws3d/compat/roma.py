"""roma's rigid registration on ws3d's fused :func:`~ws3d.ops.weighted_procrustes`.

``from ws3d.compat.roma import rigid_points_registration`` replaces
``from roma import rigid_points_registration`` (roma 1.8; checked against it in
tests/compat/test_roma.py).
"""

from __future__ import annotations

from torch import Tensor

from ws3d.errors import InputError
from ws3d.ops import weighted_procrustes

from ._procrustes import check_points, warn_undetermined

__all__ = ["rigid_points_registration"]

_CALLER = "ws3d.compat.roma.rigid_points_registration"


def rigid_points_registration(
    x: Tensor, y: Tensor, weights: Tensor | None = None, compute_scaling: bool = False
) -> tuple[Tensor, ...]:
    """Rigid (or similarity) transform that best aligns the points x onto y, as roma computes it.

    Same as ``roma.rigid_points_registration`` for 3D points: minimises
    sum_i w_i ||s R x_i + t - y_i||^2 over rotations R (det +1), translations t and, with
    ``compute_scaling``, a scale s; so ``y ~ s * x @ R.mT + t[..., None, :]``. roma normalises
    the weights to sum to 1 and uses them once, in the centroids and in the cross-covariance,
    which is what the fused op does (the result does not depend on the weights' sum).

    Calls ``weighted_procrustes(x, y, weights, scale=compute_scaling)`` on the batch
    dimensions flattened into one.

    Differences from roma:

    * Degenerate point sets (all weights 0, fewer than 3 weighted points, collinear or
      coincident points, NaN / inf) give R = I, s = 1 and t = ybar - xbar (t = 0 with NaN /
      inf or all weights 0), with a warning, where roma returns NaN (all weights 0) or an
      arbitrary rotation; :func:`ws3d.ops.weighted_procrustes` with ``return_valid=True``
      returns the flag. Such point sets pass no gradient.
    * Negative weights raise ``ValueError`` (value checks); roma accepts them.
    * 3D points only (roma also registers other dimensions), and ``weights`` must have the
      shape ``x.shape[:-1]``, not merely broadcast to it.
    * roma solves in float64 whatever the input; ws3d accumulates float16 / bfloat16 /
      float32 in float32 (float64 stays float64), so float32 results agree to float32
      rounding, not bit for bit.
    * The gradient is the exact derivative. roma damps its own where singular values of
      the cross-covariance nearly cancel (``gradient_eps``); on three points the two differ
      by ~1e-7 of the gradient's size, elsewhere by rounding.

    Args:
        x: (..., P, 3) source points, float16 / bfloat16 / float32 / float64.
        y: (..., P, 3) target points, same shape, dtype and device.
        weights: (..., P) non-negative weights, or ``None`` for uniform weights.
        compute_scaling: also estimate the scale s.

    Returns:
        ``(R, t)``, or ``(R, t, s)`` with ``compute_scaling``: R (..., 3, 3), t (..., 3),
        s (...), in the input's dtype.

    Raises:
        InputError: not tensors, shapes that differ, fewer than 2 dimensions or not 3D points.
        TypeError, ValueError: from :func:`ws3d.ops.weighted_procrustes` (dtypes, negative
            weights).

    Example:
        >>> x = torch.eye(3)
        >>> R, t = rigid_points_registration(x, x + 1.0)
        >>> R.round().tolist(), t.tolist()
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [1.0, 1.0, 1.0])
    """
    check_points(_CALLER, ("x", "y"), x, y, batched=False)
    batch, points = x.shape[:-2], x.shape[-2]
    w = None
    if weights is not None:
        if not isinstance(weights, Tensor) or weights.shape != x.shape[:-1]:
            shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
            raise InputError(f"{_CALLER}: weights must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, got {shape}")
        w = weights.reshape(-1, points)
    out = weighted_procrustes(
        x.reshape(-1, points, 3), y.reshape(-1, points, 3), w, scale=compute_scaling, return_valid=True
    )
    warn_undetermined(_CALLER, out[-1], "NaN (all weights 0) or an arbitrary rotation")
    R, t = out[0].reshape(*batch, 3, 3), out[1].reshape(*batch, 3)
    return (R, t, out[2].reshape(batch)) if compute_scaling else (R, t)
