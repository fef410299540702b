"""Crops and augmentation keep image, uv and K consistent; heatmap targets peak at the joints."""

import numpy as np
import pytest
import torch

from ws3d.camera import project
from ws3d.data.synthetic import SynthConfig, SyntheticDataset
from ws3d.data.transforms import PoseTransform, crop_affine, heatmap_targets, person_box, warp_sample
from ws3d.ops import reconstruct_3d


@pytest.fixture(scope="module")
def samples():
    ds = SyntheticDataset(SynthConfig("test", 8, size=128, seed=2, truncation=0.0, occlusion=0.0))
    return [ds[i] for i in range(len(ds))]


def test_crop_affine_known_values():
    A = crop_affine((100.0, 50.0), 200.0, 64)  # box [0, 200] x [-50, 150] -> 64 px, centre -> 31.5
    np.testing.assert_allclose(A @ [100.0, 50.0, 1.0], [31.5, 31.5])
    np.testing.assert_allclose(A[:, :2], np.eye(2) * 0.32)
    turned = crop_affine((0.0, 0.0), 64.0, 64, rotation_deg=90)
    np.testing.assert_allclose(turned @ [1.0, 0.0, 1.0], [31.5, 30.5], atol=1e-12)  # right -> up on screen


@pytest.mark.parametrize("rotation", [0.0, 17.0, -30.0])
@pytest.mark.parametrize("side_scale", [0.8, 1.0, 1.2])
def test_cropped_K_projects_joints_onto_cropped_uv(samples, rotation, side_scale):
    for s in samples:
        A = crop_affine((63.5 + 5, 63.5 - 3), 128 * side_scale, 96, rotation)
        out = warp_sample(s, A, 96)
        uv = project(s["joints_cam"].astype(np.float64), out["K"].astype(np.float64))
        assert np.abs(uv - out["uv"]).max() < 0.01


def test_the_warped_image_moves_with_the_labels(samples):
    # Paint a bright dot at one joint; after any crop the dot must sit at the new uv.
    s = dict(samples[0])
    image = np.zeros_like(s["image"])
    u, v = np.round(s["uv"][13]).astype(int)
    image[v - 1 : v + 2, u - 1 : u + 2] = 255
    s["image"] = image
    out = warp_sample(s, crop_affine((60.0, 70.0), 110.0, 128, 25.0), 128)
    gray = out["image"][..., 0].astype(np.float64)
    ys, xs = np.mgrid[:128, :128]
    centroid = np.array([(gray * xs).sum(), (gray * ys).sum()]) / gray.sum()
    np.testing.assert_allclose(centroid, out["uv"][13] + (np.array([u, v]) - s["uv"][13]) * 110 / 128, atol=0.6)


def test_reconstruct_3d_works_on_rotated_crops(samples):
    s = samples[1]
    out = warp_sample(s, crop_affine((63.5, 63.5), 140.0, 128, 30.0), 128)
    P_cam = torch.from_numpy(s["joints_cam"].astype(np.float64))
    scale = (P_cam[8] - P_cam[0]).norm()
    z = (P_cam[:, 2] - P_cam[0, 2]) / scale
    P, _, valid = reconstruct_3d(torch.from_numpy(out["uv"]).double()[None], z[None],
                                 torch.from_numpy(out["K"]).double()[None])  # fmt: skip
    assert valid.all()
    torch.testing.assert_close(P[0], P_cam / scale, atol=2e-4, rtol=0)


def test_joints_leaving_the_crop_lose_their_label(samples):
    s = samples[2]
    out = warp_sample(s, crop_affine(s["uv"][10], 60.0, 64), 64)  # zoom onto the head
    inside = ((out["uv"] >= 0) & (out["uv"] <= 63)).all(1)
    np.testing.assert_array_equal(out["vis"].astype(bool), inside)
    assert 0 < inside.sum() < 17


def test_heatmap_targets_peak_at_the_joint_in_heatmap_pixels():
    uv = np.array([[4 * 10 + 1.5, 4 * 7 + 1.5], [0.0, 0.0]])  # image px -> heatmap (u + .5) / 4 - .5
    maps = heatmap_targets(uv, np.array([1, 0]), size=16, stride=4, sigma=1.5)
    assert maps.shape == (2, 16, 16) and maps.dtype == np.float32
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (7, 10) and maps[0].max() == pytest.approx(1.0)
    assert maps[0, 7, 11] == pytest.approx(np.exp(-1 / (2 * 1.5**2)), rel=1e-6)
    assert not maps[1].any()  # unlabelled joint: no target


def test_person_box_spans_three_quarters():
    uv = np.array([[10.0, 20.0], [50.0, 120.0], [500.0, 500.0]])
    centre, side = person_box(uv, np.array([1, 1, 0]))
    np.testing.assert_allclose(centre, [30.0, 70.0])
    assert side == pytest.approx(1.1 * 100 / 0.75)
    with pytest.raises(ValueError, match="at least 2"):
        person_box(uv, np.array([1, 0, 0]))


def test_pose_transform_augments_within_the_ranges(samples):
    torch.manual_seed(0)
    transform = PoseTransform(out_size=64, stride=4, scale=0.2, rotation=30.0)
    for s in samples:
        out = transform(s)
        assert out["image"].shape == (3, 64, 64) and out["heatmaps"].shape == (17, 16, 16)
        uv = project(s["joints_cam"].astype(np.float64), out["K"].double().numpy())
        assert np.abs(uv - out["uv"].numpy()).max() < 0.01
        # The crop's linear part is a rotation by <= 30 degrees times a scale within +-20 %.
        M = out["K"].double().numpy() @ np.linalg.inv(s["K"].astype(np.float64))
        scale = np.sqrt(abs(np.linalg.det(M[:2, :2]))) * 128 / 64
        angle = np.degrees(np.arctan2(M[0, 1], M[0, 0]))
        assert 1 / 1.2 - 1e-6 <= scale <= 1 / 0.8 + 1e-6 and abs(angle) <= 30 + 1e-6
    plain = PoseTransform(out_size=64, train=False)(samples[0])
    np.testing.assert_allclose(plain["uv"].numpy(), (samples[0]["uv"] + 0.5) / 2 - 0.5, atol=1e-4)


def test_pose_transform_argument_errors():
    with pytest.raises(ValueError, match="64..256"):
        PoseTransform(out_size=32)
    with pytest.raises(ValueError, match="multiple of the stride"):
        PoseTransform(out_size=66, stride=4)
