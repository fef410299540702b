"""The tolerance every compat test holds ws3d's drop-in to, against the peer's own result.

ws3d's drop-in runs on inputs in each dtype; the peer runs on the same inputs (the dtype's
rounded values) in float64, and per output (and per gradient)::

    |ws3d - peer| <= rtol * max(max|peer|, floor)

The peer in the low-precision dtype itself only has its output dtype compared: its own
rounding there (kornia sums in half precision, roma normalises the weights in half
precision, up to ~10 epsilons of a weight gradient) would hide ws3d's.

* ``rtol`` (``RTOL[dtype]`` unless a test states another): float64 1e-10, float32 2e-5 (sums
  over a 32 x 24 map, the 3x3 eigen-solve), float16 / bfloat16 8 epsilons (ws3d rounds its
  result, and its soft-argmax backward reads the uv its forward rounded to the dtype: up to
  3.3 epsilons of the largest gradient over 30 random inputs).
* ``floor``: the size of the terms a result sums where they can cancel (a soft-argmax
  coordinate sums grid positions of size up to 1, or W - 1 pixels, whatever the mean).
"""

from __future__ import annotations

import torch

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]

RTOL = {
    torch.float64: 1e-10,
    torch.float32: 2e-5,
    torch.float16: 8 * torch.finfo(torch.float16).eps,
    torch.bfloat16: 8 * torch.finfo(torch.bfloat16).eps,
}


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "",
                   floor: float = 0.0, rtol: float | None = None) -> None:  # fmt: skip
    """``actual`` (ws3d) within the module's tolerance of ``expected`` (the peer), and that
    bound tight enough that a zeroed or 10 %-perturbed result would fail it."""
    actual, expected = actual.detach().double(), expected.detach().double()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if not expected.numel():
        return
    peak = expected.abs().max().item()
    bound = (RTOL[dtype] if rtol is None else rtol) * max(peak, floor)
    error = (actual - expected).abs().max().item()
    assert error <= bound, f"{what} ({dtype}): max |ws3d - peer| = {error:.3g} > {bound:.3g}"
    if peak > floor:
        for wrong in (torch.zeros_like(expected), 1.1 * expected):
            assert (wrong - expected).abs().max().item() > bound, f"{what}: the tolerance would pass a wrong result"
