"""ws3d.compat.pytorch3d against pytorch3d's documented algorithm.

pytorch3d has no wheel for current torch on CPU, so the peer here is ``_pytorch3d_reference``:
``corresponding_points_alignment`` for tensors, written in float64 from pytorch3d's
documentation and its ``ops/points_alignment.py`` (centroids weighted by w and clamped by
eps, centred points multiplied by w before the cross-covariance, the SVD with the
reflection removed, s = trace(E S) / max(Xcov, eps), T = Ymu - s Xmu R). Where pytorch3d
itself is installed, ``test_matches_pytorch3d_itself`` compares with it too.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from scipy.spatial.transform import Rotation

from ws3d.compat.pytorch3d import SimilarityTransform, corresponding_points_alignment
from ws3d.errors import InputError
from ws3d.ops import weighted_procrustes

from .helpers import DTYPES, assert_matches


def _pytorch3d_reference(X, Y, weights=None, estimate_scale=False, eps=1e-9):
    """pytorch3d's corresponding_points_alignment (tensors, no reflection), in float64."""
    X, Y = X.double(), Y.double()
    N, P, _ = X.shape
    w = X.new_ones(N, P) if weights is None else weights.double()
    total = w.sum(1).clamp(min=eps) if weights is not None else X.new_full((N,), P)
    X_mu = (w[..., None] * X).sum(1, keepdim=True) / w.sum(1).clamp(min=eps)[:, None, None]
    Y_mu = (w[..., None] * Y).sum(1, keepdim=True) / w.sum(1).clamp(min=eps)[:, None, None]
    Xc, Yc = (X - X_mu) * w[..., None], (Y - Y_mu) * w[..., None]  # the weights, a second time
    U, S, Vh = torch.linalg.svd(Xc.mT @ Yc / total[:, None, None])
    V = Vh.mT
    E = torch.ones_like(S)
    E[:, -1] = torch.linalg.det(U @ V.mT)
    R = U @ torch.diag_embed(E) @ V.mT
    s = (E * S).sum(1) / (Xc.square().sum((1, 2)) / total).clamp(min=eps) if estimate_scale else X.new_ones(N)
    T = Y_mu[:, 0] - s[:, None] * (X_mu @ R)[:, 0]
    return R, T, s


def _clouds(N, P, seed=0, noise=0.05):
    """Row-vector similarities: Y = s X R + T plus noise, and positive weights."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, P, 3, generator=g, dtype=torch.float64)
    R = torch.from_numpy(Rotation.random(N, random_state=seed).as_matrix())
    s = 0.5 + torch.rand(N, generator=g, dtype=torch.float64)
    T = torch.randn(N, 3, generator=g, dtype=torch.float64)
    Y = s[:, None, None] * X @ R + T[:, None] + noise * torch.randn(N, P, 3, generator=g, dtype=torch.float64)
    w = 0.1 + torch.rand(N, P, generator=g, dtype=torch.float64)
    return X, Y, w, R, T, s


def _run(fn, X, Y, weights, estimate_scale, seed=1, **kwargs):
    """fn's (R, T, s) and the gradients on (X, Y[, weights]) of a random linear function of them."""
    leaves = [v.detach().clone().requires_grad_() for v in (X, Y) + ((weights,) if weights is not None else ())]
    out = fn(leaves[0], leaves[1], leaves[2] if weights is not None else None, estimate_scale, **kwargs)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in out)
    return tuple(out), torch.autograd.grad(loss, leaves)


def _assert_same_as_reference(X, Y, weights, estimate_scale, **kwargs):
    """ws3d in X's dtype against the float64 reference on the same (rounded) inputs."""
    dtype = X.dtype
    result = corresponding_points_alignment(X, Y, weights, estimate_scale, **kwargs)
    assert isinstance(result, SimilarityTransform) and result._fields == ("R", "T", "s")
    assert {o.dtype for o in result} == {dtype}
    ours, our_grads = _run(corresponding_points_alignment, X, Y, weights, estimate_scale, **kwargs)
    theirs, their_grads = _run(_pytorch3d_reference, X.double(), Y.double(),
                               None if weights is None else weights.double(), estimate_scale, **kwargs)  # fmt: skip
    for a, b, what in zip((*ours, *our_grads), (*theirs, *their_grads), ("R", "T", "s", "d/dX", "d/dY", "d/dw"),
                          strict=False):  # fmt: skip
        if what == "s" and not estimate_scale:
            assert (a == 1).all()
            continue
        assert_matches(a, b, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimate_scale", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_the_reference_on_random_clouds(dtype, estimate_scale, weighted):
    """float16 / bfloat16 are not pytorch3d's (its SVD refuses them): ws3d accepts them."""
    X, Y, w, *_ = _clouds(6, 17, seed=2)
    _assert_same_as_reference(X.to(dtype), Y.to(dtype), w.to(dtype) if weighted else None, estimate_scale)


@pytest.mark.parametrize("points", [3, 4, 40])
def test_matches_the_reference_for_few_and_many_points(points):
    X, Y, w, *_ = _clouds(4, points, seed=3)
    _assert_same_as_reference(X, Y, w, True)


def test_returns_pytorch3d_row_vector_convention():
    """Y = s X R + T exactly (row vectors): R, T, s come back as they were made."""
    X, Y, w, R, T, s = _clouds(5, 10, seed=4, noise=0.0)
    out = corresponding_points_alignment(X, Y, w, estimate_scale=True)
    for got, made in zip(out, (R, T, s), strict=True):
        torch.testing.assert_close(got, made, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.s[:, None, None] * X @ out.R + out.T[:, None], Y, rtol=0, atol=1e-12)


def test_uniform_weights_equal_no_weights():
    X, Y, w, *_ = _clouds(3, 8, seed=5)
    for a, b in zip(corresponding_points_alignment(X, Y, torch.ones_like(w), True),
                    corresponding_points_alignment(X, Y, None, True), strict=True):  # fmt: skip
        assert_matches(a, b, torch.float64)


def test_pytorch3d_weights_are_not_the_native_ops_weights():
    """Documented: pytorch3d squares the weights in the covariance, ws3d's native op does not;
    the drop-in keeps pytorch3d's, so the two answers differ on the same weights."""
    X, Y, w, *_ = _clouds(4, 17, seed=6, noise=0.3)
    R_compat = corresponding_points_alignment(X, Y, w).R
    R_native, _ = weighted_procrustes(X, Y, w)
    assert (R_compat - R_native.mT).abs().max() > 1e-3
    R_native_squared, _ = weighted_procrustes(X, Y, w.square())
    assert (R_compat - R_native_squared.mT).abs().max() > 1e-3  # nor the weights squared throughout


def test_eps_clamps_the_total_weight_and_the_variance_as_in_pytorch3d():
    X, Y, w, *_ = _clouds(3, 9, seed=7)
    _assert_same_as_reference(1e-3 * X, 1e-3 * Y, w, True, eps=1e-4)  # Xcov ~ 1e-6 < eps
    _assert_same_as_reference(X, Y, 1e-3 * w, True, eps=0.1)  # sum of weights ~ 5e-3 < eps


def test_a_reflected_target_gets_the_same_proper_rotation():
    X, Y, w, *_ = _clouds(4, 17, seed=8)
    mirrored = Y * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    _assert_same_as_reference(X, mirrored, w, True)
    torch.testing.assert_close(torch.linalg.det(corresponding_points_alignment(X, mirrored, w).R),
                               torch.ones(4, dtype=torch.float64))  # fmt: skip


def test_collinear_points_give_identity_and_a_warning_where_pytorch3d_picks_a_rotation():
    """Documented difference: ws3d flags the undetermined rotation and returns R = I, s = 1."""
    X, Y, w, *_ = _clouds(2, 7, seed=9)
    X[1] = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None] * torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    with pytest.warns(UserWarning, match="1 of 2 point sets have no unique rotation"):
        R, T, s = corresponding_points_alignment(X, Y, w, estimate_scale=True)
    torch.testing.assert_close(R[1], torch.eye(3, dtype=torch.float64))
    assert s[1].item() == 1.0
    R_ref, T_ref, s_ref = _pytorch3d_reference(X, Y, w, True)
    assert s_ref[1].item() != 1.0
    for a, b in zip((R, T, s), (R_ref, T_ref, s_ref), strict=True):
        assert_matches(a[:1], b[:1], torch.float64)  # the determined cloud is unaffected


def test_all_weights_zero_give_identity_zero_translation_and_a_warning():
    """pytorch3d answers s = 0 there (a zero covariance over eps); ws3d returns s = 1 and warns."""
    X, Y, w, *_ = _clouds(2, 5, seed=10)
    w[0] = 0.0
    with pytest.warns(UserWarning, match="no unique rotation"):
        R, T, s = corresponding_points_alignment(X, Y, w, estimate_scale=True)
    torch.testing.assert_close(R[0], torch.eye(3, dtype=torch.float64))
    assert T[0].tolist() == [0.0, 0.0, 0.0] and s[0].item() == 1.0
    assert _pytorch3d_reference(X, Y, w, True)[2][0].item() == 0.0


def test_half_precision_is_accepted_and_rounded_once():
    X, Y, w, *_ = _clouds(3, 17, seed=11)
    _assert_same_as_reference(X.half(), Y.half(), w.half(), True)


class _RaggedClouds:
    """Stands in for pytorch3d's Pointclouds (what is_pointclouds looks for)."""

    def points_padded(self):
        return torch.zeros(2, 4, 3)

    def num_points_per_cloud(self):
        return torch.tensor([4, 3])


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((torch.ones(2, 4, 3), torch.ones(2, 4, 3)), {"allow_reflection": True}, "allow_reflection=True"),
        ((torch.ones(2, 4, 3), torch.ones(2, 4, 3)), {"weights": [torch.ones(4), torch.ones(3)]}, "ragged"),
        ((_RaggedClouds(), _RaggedClouds()), {}, "ragged point clouds are not supported"),
        ((torch.ones(4, 3), torch.ones(4, 3)), {}, r"\(N, P, 3\)"),
        ((torch.ones(2, 4, 2), torch.ones(2, 4, 2)), {}, "3D points only"),
        ((torch.ones(2, 4, 3), torch.ones(2, 5, 3)), {}, "must have one shape"),
        ((torch.ones(2, 4, 3), torch.ones(2, 4, 3)), {"weights": torch.ones(2, 3)}, r"weights must have shape"),
    ],
)
def test_what_the_fused_op_cannot_do_is_an_input_error(args, kwargs, message):
    with pytest.raises(InputError, match=message):
        corresponding_points_alignment(*args, **kwargs)


@pytest.mark.skipif(importlib.util.find_spec("pytorch3d") is None, reason="pytorch3d is not installed")
@pytest.mark.parametrize("estimate_scale", [False, True])
def test_matches_pytorch3d_itself(estimate_scale):
    from pytorch3d.ops import corresponding_points_alignment as theirs

    X, Y, w, *_ = _clouds(5, 17, seed=12)
    for a, b in zip(corresponding_points_alignment(X, Y, w, estimate_scale), theirs(X, Y, w, estimate_scale),
                    strict=True):  # fmt: skip
        assert_matches(a, b, torch.float64)
