"""Drop-in replacements for the functions pose models already call, backed by ws3d's fused ops.

Each submodule mirrors one peer library: the same function name, signature, defaults,
return type and conventions, so switching is one import line::

    from kornia.geometry.subpix import spatial_soft_argmax2d   # before
    from ws3d.compat.kornia import spatial_soft_argmax2d        # after

* :mod:`ws3d.compat.kornia` - ``spatial_soft_argmax2d`` on :func:`ws3d.ops.softargmax_2p5d`
* :mod:`ws3d.compat.roma` - ``rigid_points_registration`` on :func:`ws3d.ops.weighted_procrustes`
* :mod:`ws3d.compat.pytorch3d` - ``corresponding_points_alignment`` (and its
  ``SimilarityTransform``) on :func:`ws3d.ops.weighted_procrustes`

None of them imports the peer library. Each function's docstring says which op it calls
and where it differs from the peer: dtypes, edge cases, and the degenerate inputs that
ws3d flags (with a warning here; the native ops return the flag) where the peer returns
NaN or an arbitrary rotation. What a fused op cannot compute (reflections, ragged point
clouds, dimensions other than 3) raises :class:`ws3d.errors.InputError` instead of
returning something else.
"""

from . import kornia, pytorch3d, roma

__all__ = ["kornia", "pytorch3d", "roma"]
