"""3D poses of multi-view groups from 2D joints alone: known scenes are recovered.

Each test builds its own scene: a person (the standing pose with random limb offsets,
mean bone lengths), cameras around it looking at its centre, and the exact perspective
projections; then checks that rotations, relative depths and the reflection come back.
"""

import math

import numpy as np
import pytest
import torch

from ws3d.losses import depth_loss, relative_depths
from ws3d.multiview import _D, depth_targets, factorise_rotations, rays, solve_groups
from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, standing_pose

J = 17


def _rotation_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)


def _person(generator: torch.Generator) -> torch.Tensor:
    """(J, 3) mm, y down, mean bone lengths: the standing pose with every bone turned at random
    (the spine a little, the rest a lot)."""
    rest = standing_pose()
    joints = torch.zeros(J, 3, dtype=torch.float64)
    for (child, parent), length in zip(BONES, MEAN_BONE_LENGTHS_MM, strict=True):
        turn = 0.1 if child in (7, 8) else 0.5
        direction = rest[child] - rest[parent] + turn * torch.randn(3, dtype=torch.float64, generator=generator)
        joints[child] = joints[parent] + length * direction / direction.norm()
    return joints


def _scene(groups: int, views: int, distance: float = 5000.0, spread: float = math.pi / 2, seed: int = 0):
    """Cameras on a circle around each person, at chest height, looking at its centre.

    Returns uv (G, V, J, 2) pixels, K (G, V, 3, 3), R (G, V, 3, 3) world-to-camera and the
    camera-frame joints (G, V, J, 3) mm.
    """
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[1100.0, 0, 480], [0, 1100, 520], [0, 0, 1]], dtype=torch.float64)
    uv, Ks, Rs, cams = [], [], [], []
    for _ in range(groups):
        person = _person(g)
        start = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * math.pi
        R_v, P_v = [], []
        for v in range(views):
            R = _rotation_y(start + spread * v)  # world -> camera: the person turns in front of it
            P = (person - person.mean(0)) @ R.T + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
            R_v.append(R)
            P_v.append(P)
        P = torch.stack(P_v)
        h = P @ K.T
        uv.append(h[..., :2] / h[..., 2:])
        Ks.append(K.expand(views, 3, 3))
        Rs.append(torch.stack(R_v))
        cams.append(P)
    return torch.stack(uv), torch.stack(Ks), torch.stack(Rs), torch.stack(cams)


def _angle_deg(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    cos = ((A.mT @ B).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


def test_factorisation_recovers_relative_rotations_of_distant_cameras_up_to_the_reflection():
    # 40 m away the projection is nearly orthographic, which the factorisation assumes.
    uv, K, R, _ = _scene(8, 4, distance=40000.0, spread=0.6)
    observed = torch.ones(8, 4, J, dtype=torch.bool)
    observed[:, 1, 3] = observed[:, 2, 13] = False  # missing joints are allowed
    R_est, ok = factorise_rotations(rays(uv, K), observed)
    truth = R @ R[:, :1].mT
    error = torch.minimum(_angle_deg(R_est, truth), _angle_deg(_D @ R_est @ _D, truth))
    assert ok.all()
    assert error.max() < 1.0, error


def test_factorisation_needs_three_views():
    uv, K, _, _ = _scene(2, 2)
    _, ok = factorise_rotations(rays(uv, K), torch.ones(2, 2, J, dtype=torch.bool))
    assert not ok.any()


@pytest.mark.parametrize("known", [True, False])
def test_exact_2d_gives_the_true_relative_depths_and_reflection(known):
    uv, K, R, cams = _scene(6, 4, spread=1.4)
    w = torch.ones(6, 4, J, dtype=torch.float64)
    views = torch.ones(6, 4, dtype=torch.bool)
    out = solve_groups(uv, K, w, views, R, torch.full((6,), known))
    assert out["ok"].all()
    z, z_true = relative_depths(out["P"].flatten(0, 1)), relative_depths(cams.flatten(0, 1))
    torch.testing.assert_close(z, z_true, atol=1e-4, rtol=0)  # the reflection would flip their signs
    torch.testing.assert_close(out["R"], R @ R[:, :1].mT, atol=1e-5, rtol=0)


def test_a_wrong_2d_joint_is_outvoted_and_loses_its_target():
    uv, K, R, cams = _scene(1, 4, spread=1.4, seed=3)
    true = uv.reshape(4, J, 2).numpy().copy()
    uv[0, 2, 13] += torch.tensor([40.0, -25.0], dtype=torch.float64)  # e.g. the wrong wrist in one view
    N = 4
    out = depth_targets(uv.reshape(N, J, 2).numpy(), np.ones((N, J)), K.reshape(N, 3, 3).numpy(), np.zeros(N, int))
    # The fitted pose, projected back, puts the wrist where the other views say it is.
    assert np.abs(out["uv"][2, 13] - true[2, 13]).max() < 1.0 and out["reprojection"][2, 13] > 40
    np.testing.assert_allclose(out["uv"], true, atol=1.0)
    z_true = relative_depths(cams[0]).numpy()
    assert out["weight"][2, 13] == 0 and out["weight"].sum() == N * J - 1
    good = out["weight"] > 0
    assert np.abs(out["z"] - z_true)[good].max() < 0.02  # 1 % of the neck-pelvis length ~ 5 mm


def test_targets_exist_only_where_depth_is_determined():
    uv, K, R, _ = _scene(3, 3, spread=1.0, seed=5)
    N = 9
    w = np.ones((N, J))
    w[0:3, 10] = 0  # group 0: nobody sees the head
    w[3:5, 16] = 0  # group 1: one view sees the right wrist
    w[6:9, 8] = 0  # group 2: nobody sees the neck, so no view has its scale
    out = depth_targets(uv.reshape(N, J, 2).numpy(), w, K.reshape(N, 3, 3).numpy(), np.repeat(np.arange(3), 3))
    weight = out["weight"].reshape(3, 3, J)
    assert (weight[0, :, 10] == 0).all() and weight[0, :, :10].all() and weight[0, :, 11:].all()
    assert (weight[1, :, 16] == 0).all() and weight[1, :, :16].all()
    assert (weight[2] == 0).all()


def test_two_views_need_known_rotations():
    uv, K, R, cams = _scene(1, 2, spread=1.2)
    args = (uv.reshape(2, J, 2).numpy(), np.ones((2, J)), K.reshape(2, 3, 3).numpy(), np.zeros(2, int))
    unsolved = depth_targets(*args)
    assert (unsolved["weight"] == 0).all() and np.isnan(unsolved["uv"]).all()
    out = depth_targets(*args, R=R.reshape(2, 3, 3).numpy(), known=np.ones(2, bool))
    assert out["weight"].all()
    np.testing.assert_allclose(out["z"], relative_depths(cams[0]).numpy(), atol=1e-4)


def test_groups_without_joints_stay_finite_and_unsolved():
    uv, K, R, _ = _scene(2, 4, spread=1.4)
    w = torch.ones(2, 4, J, dtype=torch.float64)
    w[1] = 0
    out = solve_groups(uv, K, w, torch.ones(2, 4, dtype=torch.bool))
    assert out["ok"].tolist() == [True, False]
    assert all(torch.isfinite(v).all() for k, v in out.items() if k != "cost")


def _descend(z: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, steps: int = 400) -> torch.Tensor:
    z = z.clone().requires_grad_()
    optimizer = torch.optim.Adam([z], lr=0.02)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        loss = depth_loss(z, target, weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return z.detach()


def test_the_default_objective_finds_the_true_depths_from_flat_poses():
    # ws3d's weak objective on free depths, exact 2D and known rotations, from z = 0 (the
    # start of the weak stage): it must end at the truth, within 1 % of the neck-pelvis length.
    uv, K, R, cams = _scene(4, 4, spread=1.3, seed=11)
    N = 16
    out = depth_targets(uv.reshape(N, J, 2).numpy(), np.ones((N, J)), K.reshape(N, 3, 3).numpy(),
                        np.repeat(np.arange(4), 4), R.reshape(N, 3, 3).numpy(), np.ones(N, bool))  # fmt: skip
    target, weight = torch.as_tensor(out["z"]).double(), torch.as_tensor(out["weight"]).double()
    z = _descend(torch.zeros(N, J, dtype=torch.float64), target, weight)
    assert (z - relative_depths(cams.flatten(0, 1))).abs().max() < 0.01


def test_a_view_pushed_towards_its_viewing_ray_is_pulled_back():
    # The collapse of the paper's objective: a view's pose becomes a needle along its
    # viewing ray, |z_neck - z_pelvis| -> 1. The triangulated targets do not move with the
    # network's depths, so the loss pulls such a view back to the triangulated shape.
    uv, K, R, cams = _scene(1, 4, spread=1.3, seed=12)
    out = depth_targets(uv.reshape(4, J, 2).numpy(), np.ones((4, J)), K.reshape(4, 3, 3).numpy(), np.zeros(4, int))
    target, weight = torch.as_tensor(out["z"]).double(), torch.as_tensor(out["weight"]).double()
    needle = target.clone()
    needle[0] = torch.linspace(0, 1, J, dtype=torch.float64)
    needle[0, 8] = 1.0  # the neck straight behind the pelvis
    assert depth_loss(needle, target, weight) > depth_loss(target, target, weight)
    z = _descend(needle, target, weight)
    assert abs(float(z[0, 8] - z[0, 0])) == pytest.approx(abs(float(target[0, 8] - target[0, 0])), abs=0.01)
    assert (z - relative_depths(cams[0])).abs().max() < 0.02
