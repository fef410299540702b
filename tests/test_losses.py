"""Losses: hand-checkable values, the weights doing what they say, gradients where they belong."""

import math

import pytest
import torch

from ws3d.losses import (
    bone_loss,
    depth_loss,
    heatmap_loss,
    multiview_loss,
    normalised_bone_lengths,
    relative_depths,
)
from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, NUM_JOINTS, standing_pose

J = NUM_JOINTS


def _rotation(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm()
    K = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_normalised_bone_lengths_make_the_reference_bone_one():
    mu = normalised_bone_lengths()
    spine, neck = BONES.index((7, 0)), BONES.index((8, 7))
    assert mu[spine] + mu[neck] == pytest.approx(1.0)
    assert mu[BONES.index((2, 1))] == pytest.approx(MEAN_BONE_LENGTHS_MM[1] / 490.0)


def test_heatmap_loss_by_hand():
    pred, target = torch.zeros(2, 2, 3, 3), torch.zeros(2, 2, 3, 3)
    target[0, 0, 1, 1] = 1.0  # one unit pixel off in image 0, joint 0
    target[0, 1, 0, 0] = 3.0  # masked out below
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert heatmap_loss(pred, target, mask) == pytest.approx(1.0 / 2 / 2)  # mean over joints, then images
    assert heatmap_loss(target, target, mask) == 0
    # Per group first: group 0 = image 0 (0.5), group 1 = images 1, 2 (0 and 2 -> 1); mean 0.75.
    pred3, target3 = torch.zeros(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    target3[0, 0, 0, 0], target3[2, 0, 0, 0] = math.sqrt(0.5), math.sqrt(2.0)
    assert heatmap_loss(pred3, target3, torch.ones(3, 1), torch.tensor([0, 1, 1])) == pytest.approx(0.75)


def test_relative_depths_by_hand():
    joints = standing_pose().float()[None] * 1000 + torch.tensor([0.0, 0, 4000])
    z = relative_depths(joints)[0]
    # Neck-pelvis is 480 mm; the nose is 80 mm nearer the camera than the pelvis, the rest level.
    assert z[9] == pytest.approx(-80 / 480, abs=1e-6)
    assert z[[j for j in range(J) if j != 9]].abs().max() < 1e-6


def test_depth_loss_by_hand():
    target = torch.tensor([[0.0, 0.5, -1.0, 2.0]])
    assert depth_loss(target, target, torch.ones(1, 4)) == pytest.approx(0)
    assert depth_loss(target + 0.5, target, torch.ones(1, 4)) == pytest.approx(0.5)
    mask = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # a joint without a target adds nothing, and counts as 0
    assert depth_loss(target + torch.tensor([[1.0, 7.0, 7.0, 1.0]]), target, mask) == pytest.approx(0.5)
    # Views of one group are averaged first: group 0 = image 0 (error 1), group 1 = images 1, 2 (0 and 2).
    z, target3 = torch.tensor([[1.0], [0.0], [2.0]]), torch.zeros(3, 1)
    assert depth_loss(z, target3, torch.ones(3, 1), torch.tensor([0, 1, 1])) == pytest.approx(1.0)


def _two_views(R_cam=None):
    """One pose seen by two cameras: views (2, J, 3), scale-normalised."""
    pose = standing_pose() / 0.48  # neck-pelvis = 0.48 m in standing_pose
    R_cam = (
        R_cam
        if R_cam is not None
        else torch.stack([torch.eye(3, dtype=torch.float64), _rotation(torch.tensor([0.2, 1.0, 0.1]), 1.1)])
    )
    t_cam = torch.tensor([[0.0, 0.3, 9.0], [1.0, -0.2, 11.0]], dtype=torch.float64)
    return pose @ R_cam.mT + t_cam[:, None], R_cam  # x_c = R_c X + t_c


def test_multiview_loss_is_zero_for_consistent_views_with_estimated_rotations():
    views, _ = _two_views()
    pairs, group = torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 0])
    assert multiview_loss(views, torch.ones(2, J, dtype=torch.float64), pairs, group) < 1e-6


def test_multiview_loss_by_hand_with_known_rotations():
    """WS+R with the same camera rotation: a joint moved by d in one view costs 2 d (J - 1) / J^2 per pair."""
    R_cam = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    views, _ = _two_views(R_cam)
    d = 0.3
    views = views.clone()
    views[0, 5, 0] += d
    pairs, group, known = torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 0]), torch.tensor([True, True])
    conf = torch.ones(2, J, dtype=torch.float64)
    loss = multiview_loss(views, conf, pairs, group, R_cam, known)
    assert loss == pytest.approx(2 * d * (J - 1) / J**2)
    # The weights matter: with phi = 0 on the moved joint the views agree exactly.
    conf[0, 5] = 0
    assert multiview_loss(views, conf, pairs, group, R_cam, known) == pytest.approx(0, abs=1e-12)


def test_multiview_loss_gradient_goes_to_the_poses_not_through_the_alignment():
    views, _ = _two_views()
    views = views.clone()
    views[1, 13] += torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)
    views.requires_grad_(True)
    loss = multiview_loss(views, torch.ones(2, J, dtype=torch.float64), torch.tensor([[0, 1], [1, 0]]),
                          torch.tensor([0, 0]))  # fmt: skip
    loss.backward()
    assert loss > 0 and views.grad[1, 13].abs().sum() > 0 and torch.isfinite(views.grad).all()
    # With R, t held constant, d|x|_1/dx is a sign: every coordinate of the target view of
    # pair (0, 1) gets +-1 / (J * 2 pairs) from it, plus R-rotated signs from pair (1, 0).
    assert views.grad.abs().max() <= 2 * math.sqrt(3) / (2 * J) + 1e-12


@pytest.mark.parametrize("known_rotations", [False, True])
def test_multiview_loss_through_the_alignment_is_its_full_gradient(known_rotations):
    """through_alignment: the derivative of the loss with R, t fitted again at every point
    (gradcheck: finite differences); the default holds R, t and gives another gradient."""
    g = torch.Generator().manual_seed(0)
    views, R_cam = _two_views()
    views = views + 0.05 * torch.randn(views.shape, generator=g, dtype=torch.float64)  # off |.|'s kink
    conf = 0.5 + torch.rand(2, J, generator=g, dtype=torch.float64)
    pairs, group = torch.tensor([[0, 1], [1, 0]]), torch.tensor([0, 0])
    cameras = (R_cam, torch.tensor([True, True])) if known_rotations else (None, None)

    def loss(v, through):
        return multiview_loss(v, conf, pairs, group, *cameras, through_alignment=through)

    views.requires_grad_()
    assert torch.autograd.gradcheck(lambda v: loss(v, True), (views,))
    through, held = (torch.autograd.grad(loss(views, flag), views)[0] for flag in (True, False))
    assert (through - held).abs().max() > 0.05 * held.abs().max()


def test_multiview_loss_averages_pairs_within_groups_then_groups():
    a, _ = _two_views()
    b = a.clone()
    b[0, 3, 1] += 0.5  # only group 1 disagrees
    poses = torch.cat([a, b])
    pairs = torch.tensor([[0, 1], [1, 0], [2, 3], [3, 2]])
    group = torch.tensor([0, 0, 1, 1])
    conf = torch.ones(4, J, dtype=torch.float64)
    both = multiview_loss(poses, conf, pairs, group)
    alone = multiview_loss(b, conf[:2], pairs[:2], group[:2])
    assert both == pytest.approx(alone / 2)


def test_bone_loss_by_hand():
    mu = normalised_bone_lengths()
    pose = torch.zeros(1, J, 3, dtype=torch.float64)
    for b, (child, parent) in enumerate(BONES):  # a skeleton whose bones have exactly the mean lengths
        pose[0, child] = pose[0, parent] + mu[b] * torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    conf = torch.ones(1, J, dtype=torch.float64)
    assert bone_loss(pose, conf) == pytest.approx(0, abs=1e-12)
    assert bone_loss(2 * pose, conf) == pytest.approx(float(mu.square().mean()))  # every bone mu too long
    conf[0, 16] = 0  # the right wrist's bone drops out
    wrist = BONES.index((16, 15))
    assert bone_loss(2 * pose, conf) == pytest.approx(float((mu.square().sum() - mu[wrist] ** 2) / len(BONES)))
