"""ws3d.compat.roma against roma itself: forward and gradient on the same inputs.

Skipped, with the reason, where roma is not installed (CI installs it: the ``dev`` extra).
"""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from ws3d.compat.roma import rigid_points_registration

from .helpers import DTYPES, RTOL, assert_matches

roma = pytest.importorskip("roma", reason="roma is not installed (pip install -e '.[dev]' brings it)")


def _pairs(batch, points, seed=0, dtype=torch.float64):
    """Points about a metre across, a random similarity of them plus noise, positive weights."""
    g = torch.Generator().manual_seed(seed)
    n = int(torch.tensor(batch).prod()) if batch else 1
    R = torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix()).reshape(*batch, 3, 3)
    x = torch.randn(*batch, points, 3, generator=g, dtype=torch.float64)
    s = 0.5 + torch.rand(*batch, 1, 1, generator=g, dtype=torch.float64)
    t = torch.randn(*batch, 1, 3, generator=g, dtype=torch.float64)
    y = s * x @ R.mT + t + 0.05 * torch.randn(*batch, points, 3, generator=g, dtype=torch.float64)
    w = 0.1 + torch.rand(*batch, points, generator=g, dtype=torch.float64)
    return x.to(dtype), y.to(dtype), w.to(dtype)


def _run(fn, x, y, weights, scaling, seed=1):
    """fn's outputs and the gradients on (x, y[, weights]) of a random linear function of them."""
    leaves = [v.detach().clone().requires_grad_() for v in (x, y) + ((weights,) if weights is not None else ())]
    out = fn(*leaves[:2], leaves[2] if weights is not None else None, scaling)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in out)
    return out, torch.autograd.grad(loss, leaves)


# roma damps its derivative where singular values of the cross-covariance nearly cancel
# (``gradient_eps`` = 1e-5: 1 / t -> t / (t^2 + 1e-10)); on three points, whose centred
# cross-covariance has rank 2, that moves its float64 gradient by up to ~2e-7 of the peak.
# ws3d's is the undamped derivative (test_float64_gradients_are_exact checks it).
ROMA_GRAD_RTOL = 1e-6


def _assert_same_as_roma(x, y, weights, scaling):
    """ws3d in the points' dtype against roma in float64 on the same (rounded) inputs."""
    dtype = x.dtype
    ours, our_grads = _run(rigid_points_registration, x, y, weights, scaling)
    theirs, their_grads = _run(roma.rigid_points_registration, x.double(), y.double(),
                               None if weights is None else weights.double(), scaling)  # fmt: skip
    assert len(ours) == len(theirs) == (3 if scaling else 2)
    in_dtype = roma.rigid_points_registration(x, y, weights, scaling)
    assert {o.dtype for o in ours} == {o.dtype for o in in_dtype} == {dtype}
    for a, b, what in zip(ours, theirs, ("R", "t", "s"), strict=False):
        assert_matches(a, b, dtype, what)
    for a, b, what in zip(our_grads, their_grads, ("d/dx", "d/dy", "d/dweights"), strict=False):
        assert_matches(a, b, dtype, what, rtol=max(RTOL[dtype], ROMA_GRAD_RTOL))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaling", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_roma_on_random_pairs(dtype, scaling, weighted):
    x, y, w = _pairs((6,), 17, seed=2, dtype=dtype)
    _assert_same_as_roma(x, y, w if weighted else None, scaling)


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
@pytest.mark.parametrize("points", [3, 17])
def test_matches_roma_with_and_without_batch_dimensions(batch, points):
    x, y, w = _pairs(batch, points, seed=3)
    _assert_same_as_roma(x, y, w, True)
    R, t, s = rigid_points_registration(x, y, w, compute_scaling=True)
    assert R.shape == (*batch, 3, 3) and t.shape == (*batch, 3) and s.shape == batch


def test_weights_count_once_and_a_zero_weight_drops_the_point_in_both():
    """roma normalises the weights and uses them once, as the fused op does: scaling every
    weight changes nothing, and a point of weight 0 is the same as no point."""
    x, y, w = _pairs((5,), 12, seed=4)
    w[:, 3] = 0.0
    _assert_same_as_roma(x, y, w, True)
    dropped = torch.cat([x[:, :3], x[:, 4:]], 1), torch.cat([y[:, :3], y[:, 4:]], 1)
    keep = torch.cat([w[:, :3], w[:, 4:]], 1)
    scaled = rigid_points_registration(x, y, 7.0 * w, True)
    for a, b in zip(scaled, roma.rigid_points_registration(*dropped, keep, True), strict=True):
        assert_matches(a, b, torch.float64)


def test_a_reflected_target_gets_the_same_proper_rotation_in_both():
    x, y, w = _pairs((4,), 17, seed=5)
    mirrored = y * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    _assert_same_as_roma(x, mirrored, w, True)
    R, _ = rigid_points_registration(x, mirrored, w)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4, dtype=torch.float64))


def test_all_weights_zero_gives_identity_and_a_warning_where_roma_returns_nan():
    """Documented difference: a defined result and a warning instead of NaN."""
    x, y, w = _pairs((3,), 6, seed=6)
    w[1] = 0.0
    assert torch.isnan(roma.rigid_points_registration(x, y, w)[0][1]).all()
    with pytest.warns(UserWarning, match="1 of 3 point sets have no unique rotation"):
        R, t, s = rigid_points_registration(x, y, w, compute_scaling=True)
    torch.testing.assert_close(R[1], torch.eye(3, dtype=torch.float64))
    assert t[1].tolist() == [0.0, 0.0, 0.0] and s[1].item() == 1.0
    for a, b in zip((R, t, s), roma.rigid_points_registration(x, y, w, True), strict=True):
        assert_matches(a[[0, 2]], b[[0, 2]], torch.float64)  # the other rows are unaffected


def test_collinear_points_give_identity_and_a_warning_where_roma_aligns_the_line():
    """Documented difference: a rotation about the line is undetermined, so ws3d flags the
    set and returns R = I; roma returns one of the rotations that map the line onto the
    target line."""
    g = torch.Generator().manual_seed(7)
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    R_true = torch.from_numpy(Rotation.random(random_state=7).as_matrix())
    y = x @ R_true.mT + torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64)
    w = torch.rand(9, generator=g, dtype=torch.float64)
    with pytest.warns(UserWarning, match="1 of 1 point sets have no unique rotation"):
        R, t = rigid_points_registration(x, y, w)
    torch.testing.assert_close(R, torch.eye(3, dtype=torch.float64))
    R_roma, t_roma = roma.rigid_points_registration(x, y, w)
    assert (x @ R_roma.mT + t_roma - y).abs().max() < 1e-9
    torch.testing.assert_close(t, (w[:, None] * (y - x)).sum(0) / w.sum())  # t = ybar - xbar


def test_negative_weights_raise_where_roma_accepts_them():
    x, y, w = _pairs((2,), 5, seed=8)
    w[0, 2] = -1.0
    roma.rigid_points_registration(x, y, w)  # no check in roma
    with pytest.raises(ValueError, match="w must be non-negative"):
        rigid_points_registration(x, y, w)


def test_points_that_are_not_3d_raise_where_roma_registers_them():
    x = torch.randn(5, 2, dtype=torch.float64)
    roma.rigid_points_registration(x, x)
    with pytest.raises(ValueError, match="3D points only"):
        rigid_points_registration(x, x)


def test_weights_must_have_the_points_shape():
    x, y, w = _pairs((2,), 5, seed=9)
    with pytest.raises(ValueError, match=r"weights must have shape x.shape\[:-1\]"):
        rigid_points_registration(x, y, w[0])


def _umeyama_svd(x, y, weights, scaling):
    """Weighted Umeyama by torch.linalg.svd, differentiated by autograd: the undamped derivative."""
    w = weights / weights.sum(-1, keepdim=True)
    x_mean, y_mean = (w[..., None] * x).sum(-2), (w[..., None] * y).sum(-2)
    xc, yc = x - x_mean[..., None, :], y - y_mean[..., None, :]
    U, S, Vh = torch.linalg.svd(torch.einsum("...k,...ki,...kj->...ij", w, yc, xc))
    signs = torch.ones_like(S)
    signs[..., -1] = torch.linalg.det(U @ Vh)
    R = U @ torch.diag_embed(signs) @ Vh
    s = (S * signs).sum(-1) / (w * xc.square().sum(-1)).sum(-1) if scaling else torch.ones_like(signs[..., 0])
    t = y_mean - s[..., None] * (R @ x_mean[..., None])[..., 0]
    return (R, t, s) if scaling else (R, t)


@pytest.mark.parametrize("batch, points", [((2, 3), 3), ((6,), 17)])
def test_float64_gradients_are_exact(batch, points):
    """Where roma damps its derivative, ws3d's stays the exact one: against autograd through an SVD."""
    x, y, w = _pairs(batch, points, seed=3)
    ours, our_grads = _run(rigid_points_registration, x, y, w, True)
    exact, exact_grads = _run(_umeyama_svd, x, y, w, True)
    for a, b, what in zip((*ours, *our_grads), (*exact, *exact_grads), ("R", "t", "s", "d/dx", "d/dy", "d/dw"),
                          strict=True):  # fmt: skip
        assert_matches(a, b, torch.float64, what)
