"""Known answers for each metric."""

import math

import pytest
import torch

from ws3d.metrics import PCK_JOINTS, absolute_scale, auc, mpjpe, n_mpjpe, npck, p_mpjpe, pck, pixel_error
from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, standing_pose


@pytest.fixture
def gt():
    return (standing_pose() * 1000.0)[None].repeat(2, 1, 1)  # (2, 17, 3) mm


def test_mpjpe_is_translation_invariant_and_measures_offsets(gt):
    assert mpjpe(gt + 500.0, gt) == 0
    pred = gt.clone()
    pred[:, 5] += torch.tensor([30.0, 40.0, 0.0])  # one joint 50 mm off
    assert mpjpe(pred, gt).item() == pytest.approx(50.0 / 17)


def test_n_mpjpe_forgives_scale_p_mpjpe_forgives_rotation(gt):
    scaled = 1.3 * gt
    assert mpjpe(scaled, gt) > 50 and n_mpjpe(scaled, gt).item() == pytest.approx(0.0, abs=1e-9)
    a = math.radians(40)
    R = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=gt.dtype)
    turned = 0.8 * gt @ R.T + 100.0
    assert n_mpjpe(turned, gt) > 50 and p_mpjpe(turned, gt).item() == pytest.approx(0.0, abs=1e-6)


def test_pck_auc_npck_known_values(gt):
    pred = gt.clone()
    pred[:, PCK_JOINTS[:7]] += torch.tensor([100.0, 0.0, 0.0])  # 7 of 14 joints 100 mm off
    assert pck(pred, gt).item() == pytest.approx(1.0)
    assert pck(pred, gt, threshold=99.0).item() == pytest.approx(0.5)
    # 0 mm .. 95 mm: 7 of 14 correct; 100 .. 150 mm: all 14 -> (20 * 0.5 + 11 * 1) / 31.
    assert auc(pred, gt).item() == pytest.approx((20 * 0.5 + 11) / 31)
    assert npck(2.0 * gt, gt, threshold=1.0).item() == pytest.approx(1.0) and pck(2.0 * gt, gt).item() < 0.5


def test_pixel_error_counts_labelled_joints_only():
    uv = torch.zeros(1, 17, 2)
    pred = uv.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0])
    pred[0, 1] = torch.tensor([100.0, 0.0])
    vis = torch.ones(1, 17)
    vis[0, 1] = 0
    assert pixel_error(pred, uv, vis).item() == pytest.approx(5.0 / 16)


def test_absolute_scale_recovers_the_size_from_mean_bone_lengths():
    mu = torch.tensor(MEAN_BONE_LENGTHS_MM, dtype=torch.float64)
    pose = standing_pose()[None]
    child, parent = zip(*BONES, strict=True)
    lengths = (pose[:, list(child)] - pose[:, list(parent)]).norm(dim=-1)
    s = absolute_scale(pose, mu)
    assert s.item() == pytest.approx(((lengths * mu).sum() / (lengths**2).sum()).item())
    assert absolute_scale(pose * 2, mu).item() == pytest.approx(s.item() / 2)  # half the scale for twice the size
    matching = absolute_scale(pose, lengths[0] * 1000.0)  # bones exactly 1000x the pose's: s = 1000
    assert matching.item() == pytest.approx(1000.0)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        mpjpe(torch.zeros(1, 17, 3), torch.zeros(1, 16, 3))
