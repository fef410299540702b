"""ws3d.compat.kornia against kornia itself: forward and gradient on the same inputs.

Skipped, with the reason, where kornia is not installed (CI installs it: the ``dev`` extra).
"""

from __future__ import annotations

import pytest
import torch

from ws3d.compat.kornia import spatial_soft_argmax2d

from .helpers import DTYPES, assert_matches

subpix = pytest.importorskip(
    "kornia.geometry.subpix", reason="kornia is not installed (pip install -e '.[dev]' brings it)"
)
geometry = pytest.importorskip("kornia.geometry")
# kornia's own grid, where the release keeps it (kornia.utils before 0.8.3).
create_meshgrid = getattr(geometry, "create_meshgrid", None) or pytest.importorskip("kornia.utils").create_meshgrid


def _run(fn, logits, grad_out, temperature=None, normalized=True):
    """fn's (B, N, 2) output and the gradient of sum(output * grad_out) on the logits."""
    logits = logits.detach().clone().requires_grad_()
    out = fn(logits, temperature, normalized)
    (grad,) = torch.autograd.grad((out * grad_out.to(out.dtype)).sum(), logits)
    return out, grad


def _assert_same_as_kornia(logits, temperature=None, normalized=True, seed=0):
    """ws3d in the logits' dtype against kornia in float64 on the same (rounded) logits."""
    grad_out = torch.randn(*logits.shape[:2], 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ours = _run(spatial_soft_argmax2d, logits, grad_out, temperature, normalized)
    theirs = _run(subpix.spatial_soft_argmax2d, logits.double(), grad_out, temperature, normalized)
    assert ours[0].dtype == subpix.spatial_soft_argmax2d(logits, temperature, normalized).dtype == logits.dtype
    # kornia sums grid positions of size up to 1 (or W - 1 pixels): the rounding is at that size.
    grid = 1.0 if normalized else max(logits.shape[-2:]) - 1.0
    assert_matches(ours[0], theirs[0], logits.dtype, "coordinates", floor=grid)
    assert_matches(ours[1], theirs[1], logits.dtype, "gradient", floor=_gradient_terms(logits, grad_out, temperature,
                                                                                         normalized))  # fmt: skip


def _gradient_terms(logits, grad_out, temperature, normalized):
    """The size of the terms the logits' gradient is the difference of: p_i (g_i - gbar) / T with
    g_i = grad_out . (x_i, y_i) cancels to ~0 where p is one-hot, and rounds at the terms' size."""
    B, N, H, W = logits.shape
    p = subpix.spatial_softmax2d(logits.double(), temperature).reshape(B, N, H * W)
    grid = create_meshgrid(H, W, normalized, dtype=torch.float64).reshape(H * W, 2)
    g = grad_out @ grid.T  # (B, N, H * W)
    g_bar = (p * g).sum(-1, keepdim=True)
    return (p * (g.abs() + g_bar.abs())).max().item() / (1.0 if temperature is None else temperature)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("temperature", [None, 0.5, 2.0])
def test_matches_kornia_on_random_maps(dtype, normalized, temperature):
    logits = 3 * torch.randn(3, 17, 32, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _assert_same_as_kornia(logits.to(dtype), temperature, normalized)


@pytest.mark.parametrize("shape", [(1, 1, 1, 5), (2, 3, 6, 1), (1, 2, 1, 1), (4, 1, 7, 9)])
def test_matches_kornia_on_small_and_size_one_maps(shape):
    """A size-1 axis normalises to 0 in kornia's grid; a 1x1 map is its own centre."""
    logits = torch.randn(*shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for normalized in (True, False):
        _assert_same_as_kornia(logits, 0.7, normalized)


def test_matches_kornia_with_a_tensor_temperature_and_its_gradient():
    """A per-map temperature broadcasts over (B, N, H*W) and gets a gradient, as in kornia."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 8, 10, generator=g, dtype=torch.float64)
    temperature = 0.3 + torch.rand(2, 4, 1, generator=g, dtype=torch.float64)
    grad_out = torch.randn(2, 4, 2, generator=g, dtype=torch.float64)
    results = []
    for fn in (spatial_soft_argmax2d, subpix.spatial_soft_argmax2d):
        x, t = logits.clone().requires_grad_(), temperature.clone().requires_grad_()
        out = fn(x, t, True)
        results.append((out, *torch.autograd.grad((out * grad_out).sum(), (x, t))))
    for ours, theirs, what in zip(*results, ("coordinates", "d/d input", "d/d temperature"), strict=True):
        assert_matches(ours, theirs, torch.float64, what)


def test_non_contiguous_input_matches_kornia():
    logits = torch.randn(3, 5, 9, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    _assert_same_as_kornia(logits.transpose(0, 1), 1.0, False)


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniform_maps_give_the_centre_in_both(dtype):
    logits = torch.zeros(2, 3, 5, 8, dtype=dtype)
    _assert_same_as_kornia(logits, None, False)
    out = spatial_soft_argmax2d(logits, normalized_coordinates=False)
    torch.testing.assert_close(out.double(), torch.tensor([3.5, 2.0], dtype=torch.float64).expand(2, 3, 2))


def test_minus_inf_logits_get_probability_zero_in_both():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 6, 7, generator=g, dtype=torch.float64)
    logits[torch.rand(logits.shape, generator=g) < 0.6] = float("-inf")
    logits[..., 0, 0] = 0.0  # every map keeps a finite logit
    _assert_same_as_kornia(logits, 0.5, True)
    _, grad = _run(spatial_soft_argmax2d, logits, torch.ones(2, 3, 2, dtype=torch.float64))
    assert torch.isfinite(grad).all() and (grad[logits == float("-inf")] == 0).all()


def test_huge_logits_do_not_overflow_in_either():
    logits = torch.randn(2, 2, 5, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float32) * 1e30
    _assert_same_as_kornia(logits, 1e-3, False)


def test_a_map_without_a_finite_logit_raises_where_kornia_returns_nan():
    """Documented difference: ws3d's value checks name the map instead of returning NaN."""
    logits = torch.zeros(1, 2, 4, 4)
    logits[0, 1] = float("-inf")
    assert torch.isnan(subpix.spatial_soft_argmax2d(logits)[0, 1]).all()
    with pytest.raises(ValueError, match=r"heatmaps\[0, 1\] has no finite value"):
        spatial_soft_argmax2d(logits)


@pytest.mark.parametrize("shape", [(17, 8, 8), (8, 8), (1, 2, 3, 8, 8)])
def test_both_refuse_maps_without_the_batch_dimension(shape):
    """kornia takes (B, N, H, W) only; so does the drop-in, with a ValueError in both."""
    logits = torch.randn(shape)
    with pytest.raises(ValueError):
        subpix.spatial_soft_argmax2d(logits)
    with pytest.raises(ValueError, match=r"\(B, N, H, W\)"):
        spatial_soft_argmax2d(logits)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), torch.tensor([1.0, -1.0])])
def test_both_refuse_a_non_positive_temperature(temperature):
    logits = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError):
        subpix.spatial_soft_argmax2d(logits, temperature)
    with pytest.raises(ValueError, match="temperature must be positive"):
        spatial_soft_argmax2d(logits, temperature)
