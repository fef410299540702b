"""kornia's spatial soft-argmax on ws3d's fused :func:`~ws3d.ops.softargmax_2p5d`.

``from ws3d.compat.kornia import spatial_soft_argmax2d`` replaces
``from kornia.geometry.subpix import spatial_soft_argmax2d`` (kornia 0.9; checked against it
in tests/compat/test_kornia.py).

``spatial_expectation2d`` is not provided: it is a plain weighted sum of a probability map
the caller already holds, with no softmax to fuse, and the fused op would renormalise the
map and change its gradient. Code that calls
``spatial_expectation2d(spatial_softmax2d(x, temperature), normalized_coordinates)`` is
asking for ``spatial_soft_argmax2d(x, temperature, normalized_coordinates)``; a 2.5D head
that also takes the expectation of a depth map under the same softmax calls
:func:`ws3d.ops.softargmax_2p5d` directly (examples/integral_regression.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ws3d.errors import InputError
from ws3d.ops import softargmax_2p5d

__all__ = ["spatial_soft_argmax2d"]


def _scaled_logits(input: Tensor, temperature: Tensor | float | None) -> tuple[Tensor, float]:
    """(logits, beta) with softmax(beta * logits) = kornia's softmax(input / temperature)."""
    if temperature is None:
        return input, 1.0
    if isinstance(temperature, Tensor):
        # A tensor temperature may broadcast per map and may carry a gradient: divide the
        # input by it exactly as kornia does, over the flattened (B, N, H*W) maps, and let the
        # fused op take beta = 1. That costs one elementwise pass over the input each way.
        if not torch.compiler.is_compiling() and not bool((temperature > 0).all()):
            raise InputError(f"temperature must be positive, got {temperature}")
        B, N, H, W = input.shape
        flat = input.reshape(B, N, H * W) / temperature.to(device=input.device, dtype=input.dtype)
        return flat.reshape(B, N, H, W), 1.0
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise InputError(f"temperature must be a positive number, a tensor or None, got {type(temperature).__name__}")
    if not temperature > 0:  # also refuses NaN
        raise InputError(f"temperature must be positive, got {temperature}")
    beta = 1.0 / temperature
    if not math.isfinite(beta):
        raise InputError(f"temperature {temperature} is too small: 1 / temperature overflows")
    return input, beta


def spatial_soft_argmax2d(
    input: Tensor, temperature: Tensor | float | None = None, normalized_coordinates: bool = True
) -> Tensor:
    """Expected (x, y) location of each map under its spatial softmax, as kornia computes it.

    Same as ``kornia.geometry.subpix.spatial_soft_argmax2d``: per map, p = softmax(input /
    temperature) over its H*W pixels, and the result is sum p * (x, y) with x = column,
    y = row. ``normalized_coordinates=True`` (kornia's default) maps pixel centres linearly
    onto [-1, 1]: column 0 -> -1, column W-1 -> +1 (a size-1 axis -> 0), kornia's
    corner-aligned grid; ``False`` gives pixels, 0..W-1 and 0..H-1.

    Calls ``softargmax_2p5d(input, zeros, beta=1 / temperature)``: ws3d's ``beta``
    multiplies the logits where kornia's temperature divides them. The fused op also takes
    the expectation of a depth map, which kornia's function has none of: it gets a zero map
    of the input's size, so a call allocates and reads that map and writes its (discarded)
    gradient, about twice the memory traffic of a 2.5D call on the same heatmaps. A 2.5D head
    should call :func:`ws3d.ops.softargmax_2p5d` with its depth maps instead.

    Differences from kornia:

    * float16 / bfloat16 inputs are accumulated in float32 and rounded once on the way out
      (kornia computes in the input's precision), so coordinates there are closer to the
      exact value than kornia's, not bit-equal; the gradient reads the coordinates rounded
      to the dtype and is within a few epsilons of the largest gradient.
    * A map with NaN, +inf or no finite value (all ``-inf``) raises ``ValueError`` naming it
      (ws3d's value checks: eager mode, unless ``ws3d.ops.set_value_checks(False)``) where
      kornia returns NaN. ``-inf`` entries in an otherwise finite map get probability 0 in
      both.
    * A tensor ``temperature`` is applied by dividing the input by it (one elementwise pass
      each way, gradient to the temperature included, as in kornia); a number costs nothing.
    * Empty maps (H or W = 0) are an error.

    Args:
        input: (B, N, H, W) logits, float16 / bfloat16 / float32 / float64.
        temperature: positive number or tensor broadcastable to (B, N, H*W); the logits are
            divided by it (smaller is sharper). ``None`` means 1.
        normalized_coordinates: return coordinates in [-1, 1] instead of pixels.

    Returns:
        (B, N, 2) expected (x, y) per map, in the input's dtype.

    Raises:
        InputError: ``input`` is not 4-D, or ``temperature`` is not positive.
        TypeError, ValueError: from :func:`ws3d.ops.softargmax_2p5d` (dtype, NaN, no finite
            logit).

    Example:
        >>> h = torch.zeros(1, 1, 3, 3); h[0, 0, 1, 2] = 20.0
        >>> spatial_soft_argmax2d(h, normalized_coordinates=False).round().tolist()
        [[[2.0, 1.0]]]
    """
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise InputError(f"input must be a (B, N, H, W) tensor, got {shape}")
    logits, beta = _scaled_logits(input, temperature)
    uv, _, _ = softargmax_2p5d(logits, torch.zeros_like(logits), beta)
    if not normalized_coordinates:
        return uv
    H, W = input.shape[-2:]
    # x_norm = 2 x / (W - 1) - 1, done in float32 at least so half inputs round only once more.
    work = uv.to(torch.promote_types(uv.dtype, torch.float32))
    spans = work.new_tensor([W - 1, H - 1])
    normalized = torch.where(spans > 0, 2.0 * work / spans.clamp(min=1) - 1.0, 0.0)
    return normalized.to(uv.dtype)
