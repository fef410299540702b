import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from ws3d.ops import reconstruct as reconstruct_module
from ws3d.ops import reconstruct_3d, reconstruct_3d_reference, use_backend
from ws3d.ops._backend import triton_interpreted
from ws3d.skeleton import standing_pose

from .helpers import (
    BACKENDS,
    DEVICE,
    MUTATIONS,
    assert_catches_a_wrong_gradient,
    assert_close,
    assert_compile_matches_eager,
    backend_params,
)

SKELETON = standing_pose()  # metres, camera axes (y points down)


def _scene(n, seed=0, rotations=None, lateral=0.3):
    """People (random heading, jittered limbs) in front of random pinhole cameras.

    Returns uv (n, 17, 2), z (n, 17), K (n, 3, 3) and the scale-normalised truth P / s.
    """
    g = torch.Generator().manual_seed(seed)
    if rotations is None:  # upright: a random heading about the vertical (y) axis
        heading = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        o, i = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
        c, s = heading.cos(), heading.sin()
        rotations = torch.stack([c, o, s, o, i, o, -s, o, c], -1).reshape(n, 3, 3)
    P = (SKELETON + 0.05 * torch.randn(n, 17, 3, generator=g, dtype=torch.float64)) @ rotations.mT
    depth = 3 + 5 * torch.rand(n, generator=g, dtype=torch.float64)
    offset = (2 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 1) * lateral * depth[:, None]
    P = P + torch.cat([offset, depth[:, None]], -1)[:, None]
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = 500 + 1000 * torch.rand(2, n, generator=g, dtype=torch.float64)
    K[:, :2, 2] = 200 + 600 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    K[:, 2, 2] = 1
    projected = P @ K.mT
    uv = projected[..., :2] / projected[..., 2:]
    s = (P[:, 8] - P[:, 0]).norm(dim=-1)
    z = (P[..., 2] - P[:, :1, 2]) / s[:, None]
    return uv, z, K, P / s[:, None, None]


def _forward_backward(fn, uv, z, K, ref, g_P, g_root):
    uv = uv.detach().requires_grad_()
    z = z.detach().requires_grad_()
    P, z_root, valid = fn(uv, z, K, ref)
    g_uv, g_z = torch.autograd.grad((P * g_P).sum() + (z_root * g_root).sum(), (uv, z))
    return P, z_root, valid, g_uv, g_z


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_recovers_scale_normalised_pose(backend):
    uv, z, K, truth = _scene(500)
    with use_backend(backend):
        P, z_root, valid = reconstruct_3d(uv.to(DEVICE), z.to(DEVICE), K.to(DEVICE))
    assert valid.all()
    torch.testing.assert_close(P.cpu(), truth, rtol=0, atol=1e-6)
    torch.testing.assert_close(z_root.cpu(), truth[:, 0, 2], rtol=0, atol=1e-6)


# Tiles are 128 // next_pow2(J) rows (4 for J = 17, 8 for J = 9): batch sizes 63 / 65 / 300
# end in part-filled tiles, and joint counts around 16 / 32 cross the joint padding.
# Float32 (float64) epsilons the computation may lose, at least 3x the largest over native
# builds for several instruction sets and over the backends, as a power of two
# (benchmarks/native_build_errors.py): the rays K^-1 [u, v, 1] lose digits and the root
# depth amplifies that by ~z_root / |d|.
COND = {"P": 32, "z_root": 32, "g_uv": 64, "g_z": 32}


@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("B,J,ref", [(1, 2, (1, 0)), (65, 9, (8, 0)), (63, 17, (8, 0)), (65, 17, (8, 0)),
                                     (300, 31, (3, 30)), (7, 33, (32, 5))])
def test_matches_float64_reference_forward_and_backward(backend, dtype, B, J, ref):
    uv, z, K, truth = _scene(B, seed=B + J)
    if J != 17:  # other joint counts: repeat / cut the skeleton, z in units of the ref bone
        idx = torch.arange(J) % 17
        bone = (truth[:, idx[ref[0]]] - truth[:, idx[ref[1]]]).norm(dim=-1)
        uv, z = uv[:, idx], z[:, idx] / bone[:, None]
    if B > 4:  # a few rows with a negative discriminant mixed in
        uv[:4, ref[0]] = uv[:4, ref[1]] + torch.tensor([1.0, 0.0], dtype=torch.float64)
        z[:4, ref[0]], z[:4, ref[1]] = 3.0, 0.0
    uv, z, K = uv.to(DEVICE, dtype), z.to(DEVICE, dtype), K.to(DEVICE, dtype)
    g = torch.Generator().manual_seed(7)
    g_P = torch.randn(B, J, 3, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    g_root = torch.randn(B, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    expected = _forward_backward(reconstruct_3d_reference, uv.double(), z.double(), K.double(), ref, g_P.double(),
                                 g_root.double())  # fmt: skip
    with use_backend(backend):
        actual = _forward_backward(reconstruct_3d, uv, z, K, ref, g_P, g_root)
    valid = expected[2]
    assert torch.equal(actual[2], valid)
    assert not valid[:4].any() if B > 4 else valid.all()
    assert valid[4:].all()
    # Invalid rows hold the ill-conditioned stand-in -b / a: they must only be finite.
    for name, a, e in zip(("P", "z_root", "valid", "g_uv", "g_z"), actual, expected, strict=True):
        if name != "valid":
            assert a.dtype == dtype, name
            assert torch.isfinite(a).all(), name
            assert_close(a[valid], e[valid], dtype, cond=COND[name], name=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_that_share_a_camera_and_rows_that_do_not(backend):
    """Runs of rows with the same K between rows with others (A A B A C C B ...): a kernel
    that reuses K^-1 across rows must invert again wherever K changes, and only there."""
    B = 41
    _, _, cameras, _ = _scene(3, seed=5)
    which = torch.randint(0, 3, (B,), generator=torch.Generator().manual_seed(3))
    which[:3] = torch.tensor([0, 0, 1])
    K = cameras[which]
    _, _, _, truth = _scene(B, seed=6)
    projected = truth @ K.mT  # the same people seen through each row's camera
    uv, z = projected[..., :2] / projected[..., 2:], truth[..., 2] - truth[:, :1, 2]
    g = torch.Generator().manual_seed(8)
    g_P = torch.randn(B, 17, 3, generator=g, dtype=torch.float64)
    g_root = torch.randn(B, generator=g, dtype=torch.float64)
    expected = _forward_backward(reconstruct_3d_reference, uv, z, K, (8, 0), g_P, g_root)
    with use_backend(backend):
        actual = _forward_backward(reconstruct_3d, *(x.to(DEVICE) for x in (uv, z, K)), (8, 0), g_P.to(DEVICE),
                                   g_root.to(DEVICE))  # fmt: skip
    assert expected[2].all() and torch.equal(actual[2].cpu(), expected[2])
    for name, a, e in zip(("P", "z_root", "valid", "g_uv", "g_z"), actual, expected, strict=True):
        if name != "valid":
            assert_close(a.cpu(), e, torch.float64, cond=COND[name], name=name)


@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("gradient", [0, 1], ids=["g_uv", "g_z"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_parity_test_catches_a_wrong_gradient(backend, dtype, gradient, mutation, monkeypatch):
    assert_catches_a_wrong_gradient(reconstruct_module, backend, gradient, mutation, monkeypatch,
                                    test_matches_float64_reference_forward_and_backward, backend, dtype, 63, 17,
                                    (8, 0))  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    # Valid rows only: an invalid row's z_root is a stand-in that deliberately carries
    # no gradient (test_degenerate_rows_are_finite_and_flagged covers those rows).
    uv, z, K, _ = _scene(3, seed=3)
    uv, z, K = uv.to(DEVICE).requires_grad_(), z.to(DEVICE).requires_grad_(), K.to(DEVICE)
    fast = backend == "triton" and triton_interpreted()  # as in test_softargmax's gradcheck
    with use_backend(backend):
        assert reconstruct_3d(uv, z, K)[2].all()
        assert torch.autograd.gradcheck(lambda a, b: reconstruct_3d(a, b, K)[:2], (uv, z), fast_mode=fast)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["negative_discriminant", "coincident_reference_joints"])
def test_degenerate_rows_are_finite_and_flagged(backend, case):
    uv, z, K, _ = _scene(4, seed=11)
    if case == "negative_discriminant":
        # Rays 1 px apart with a 3-unit depth gap cannot hold a unit bone: b^2 - ac < 0.
        uv[1, 8] = uv[1, 0] + torch.tensor([1.0, 0.0], dtype=torch.float64)
        z[1, 8], z[1, 0] = 3.0, 0.0
    else:
        uv[1, 8] = uv[1, 0]
    uv, z, K = uv.to(DEVICE).requires_grad_(), z.to(DEVICE).requires_grad_(), K.to(DEVICE)
    with use_backend(backend):
        P, z_root, valid = reconstruct_3d(uv, z, K)
        (P.sum() + z_root.sum()).backward()
    assert valid.tolist() == [True, False, True, True]
    assert torch.isfinite(P).all() and torch.isfinite(z_root).all()
    assert torch.isfinite(uv.grad).all() and torch.isfinite(z.grad).all()


def test_far_root_is_wrong_only_for_bones_along_the_viewing_ray():
    """The documented limitation, measured: people on the optical axis are always
    right; off-axis ones fail only when the neck-pelvis bone points nearly along the
    viewing ray, and there the near root of the same quadratic is the right one."""
    n = 4000
    rotations = torch.from_numpy(Rotation.random(n, random_state=0).as_matrix())
    uv, z, K, truth = _scene(n, seed=5, rotations=rotations, lateral=0.0)
    P, _, valid = reconstruct_3d_reference(uv, z, K)
    assert valid.all() and (P - truth).abs().amax() < 1e-6

    uv, z, K, truth = _scene(n, seed=5, rotations=rotations, lateral=0.5)
    P, z_root, _ = reconstruct_3d_reference(uv, z, K)
    wrong = (P - truth).abs().amax((1, 2)) > 1e-6
    assert 0.002 < wrong.double().mean() < 0.05
    bone = truth[:, 8] - truth[:, 0]
    ray = truth[:, 0] / truth[:, 0].norm(dim=-1, keepdim=True)
    cos_to_ray = (bone * ray).sum(-1).abs()
    assert cos_to_ray[wrong].min() > 0.8  # within ~37 degrees of the ray
    # The other root: the product of the roots is c / a.
    x = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(K).mT
    d, e = x[:, 8] - x[:, 0], z[:, 8, None] * x[:, 8] - z[:, 0, None] * x[:, 0]
    near = ((e * e).sum(-1) - 1) / ((d * d).sum(-1) * z_root)
    torch.testing.assert_close(near[wrong], truth[wrong, 0, 2], rtol=0, atol=1e-6)


def test_broadcast_intrinsics_match_batched():
    uv, z, K, _ = _scene(5)
    P1 = reconstruct_3d(uv, z, K[0])[0]
    P2 = reconstruct_3d(uv, z, K[0].expand(5, 3, 3))[0]
    torch.testing.assert_close(P1, P2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    uv, z, K, _ = _scene(70, seed=4)
    uv_t = uv.transpose(0, 1).contiguous().transpose(0, 1)  # (B, J, 2) with batch stride 2
    z_t = z.t().contiguous().t()
    K_t = K.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (uv_t.is_contiguous() or z_t.is_contiguous() or K_t.is_contiguous())
    g_P = torch.randn(70, 17, 3, dtype=torch.float64)
    g_root = torch.randn(70, dtype=torch.float64)
    expected = _forward_backward(reconstruct_3d_reference, uv, z, K, (8, 0), g_P, g_root)
    with use_backend(backend):
        actual = _forward_backward(reconstruct_3d, uv_t.to(DEVICE), z_t.to(DEVICE), K_t.to(DEVICE), (8, 0),
                                   g_P.to(DEVICE).transpose(0, 1).contiguous().transpose(0, 1), g_root.to(DEVICE))
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a.cpu(), e)


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda uv, z, K: reconstruct_3d(uv, z, K, ref=(0, 0)), ValueError, "two different joints"),
        (lambda uv, z, K: reconstruct_3d(uv, z, K, ref=(17, 0)), ValueError, "two different joints"),
        (lambda uv, z, K: reconstruct_3d(uv[..., :1], z, K), ValueError, r"uv must have shape \(B, J, 2\)"),
        (lambda uv, z, K: reconstruct_3d(uv, z[:, :3], K), ValueError, r"z must have shape \(B, J\)"),
        (lambda uv, z, K: reconstruct_3d(uv, z, K[:, :2]), ValueError, "K must have shape"),
        (lambda uv, z, K: reconstruct_3d(uv, z, K[:1]), ValueError, "K must have shape"),
        (lambda uv, z, K: reconstruct_3d(uv, z.float(), K), TypeError, "z has dtype torch.float32"),
        (lambda uv, z, K: reconstruct_3d(uv, z, K.to("meta")), ValueError, "K is on meta"),
        (lambda uv, z, K: reconstruct_3d(uv.int(), z, K), TypeError, "uv must be float16"),
    ],
)
def test_invalid_arguments_raise(call, error, message):
    uv, z, K, _ = _scene(2)
    with pytest.raises(error, match=message):
        call(uv, z, K)


def test_nan_is_rejected_naming_the_argument():
    uv, z, K, _ = _scene(2)
    z[1, 3] = math.nan
    with pytest.raises(ValueError, match=r"z contains NaN \(first at index \(1, 3\)\)"):
        reconstruct_3d(uv, z, K)


def test_empty_batch():
    uv = torch.zeros(0, 17, 2, requires_grad=True)
    P, z_root, valid = reconstruct_3d(uv, torch.zeros(0, 17), torch.eye(3))
    assert P.shape == (0, 17, 3) and z_root.shape == valid.shape == (0,)
    P.sum().backward()
    assert uv.grad.shape == uv.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    uv, z, K, _ = _scene(5, seed=2)
    uv, z, K = uv.to(DEVICE).float(), z.to(DEVICE).float(), K.to(DEVICE).float()
    with use_backend(backend):
        torch.library.opcheck(torch.ops.ws3d.reconstruct_3d.default,
                              (uv.requires_grad_(), z.requires_grad_(), K, 8, 0))
        torch.library.opcheck(
            torch.ops.ws3d.reconstruct_3d_backward.default,
            (torch.randn(5, 17, 3, device=DEVICE), torch.randn(5, device=DEVICE), uv.detach(), z.detach(), K, 8, 0),
        )


def test_torch_compile_fullgraph_matches_eager():
    uv, z, K, _ = _scene(6, seed=9)
    uv, z, K = uv.float(), z.float(), K.float()

    def loss(uv, z):
        P, z_root, valid = reconstruct_3d(uv, z, K)
        return (torch.where(valid[:, None, None], P, 0.0) ** 2).sum() + z_root.sum()

    assert_compile_matches_eager(loss, [uv, z], grad_inputs=[0, 1])
