"""data.augment=public: the augmentation of public 2D models (RTMPose's COCO recipe) keeps
image, labels and camera consistent, mirrors left and right, and draws within its ranges."""

import numpy as np
import pytest
import torch
from scipy import stats

from ws3d.camera import project
from ws3d.data import augment
from ws3d.data.synthetic import SynthConfig, SyntheticDataset
from ws3d.data.transforms import PoseTransform, crop_affine
from ws3d.skeleton import LEFT_JOINTS, RIGHT_JOINTS

SIZE = 64


@pytest.fixture(scope="module")
def samples():
    ds = SyntheticDataset(SynthConfig("test", 6, size=96, seed=5, truncation=0.0, occlusion=0.0))
    return [ds[i] for i in range(len(ds))]


@pytest.fixture
def only(monkeypatch):
    """Turn every step of the recipe off but the ones named (module constants)."""

    def keep(*steps):
        off = {"half_body": ("HALF_BODY_P", 0.0), "shift": ("SHIFT_P", 0.0), "scale": ("SCALE", (1.0, 1.0)),
               "rotate": ("ROTATE_P", 0.0), "flip": ("FLIP_P", 0.0), "hsv": ("HSV_DELTA", (0, 0, 0)),
               "blur": ("BLUR_P", 0.0), "median": ("MEDIAN_BLUR_P", 0.0), "hole": ("HOLE", (0.0, 0.0))}  # fmt: skip
        for step, (name, value) in off.items():
            if step not in steps:
                monkeypatch.setattr(augment, name, value)

    return keep


def _crop(sample, seed):
    return PoseTransform(SIZE, augment="public")(sample, generator=torch.Generator().manual_seed(seed))


def test_truncated_normal_is_scipys_truncnorm_on_minus_one_to_one():
    x = augment.truncated_normal(torch.Generator().manual_seed(0), 20000)
    assert np.abs(x).max() <= 1
    assert stats.kstest(x, stats.truncnorm(-1, 1).cdf).pvalue > 1e-3


def test_a_flip_mirrors_the_crop_and_swaps_left_and_right(samples, only, monkeypatch):
    only("flip")
    for seed, s in enumerate(samples):
        monkeypatch.setattr(augment, "FLIP_P", 0.0)
        plain = _crop(s, seed)
        monkeypatch.setattr(augment, "FLIP_P", 1.0)
        flipped = _crop(s, seed)
        image = flipped["image"].numpy()
        np.testing.assert_allclose(image, plain["image"].numpy()[..., ::-1], atol=1e-6)
        uv, uv0 = flipped["uv"].numpy(), plain["uv"].numpy()
        for left, right in zip(LEFT_JOINTS, RIGHT_JOINTS, strict=True):  # the left joint is now labelled right
            np.testing.assert_allclose(uv[right], [SIZE - 1 - uv0[left, 0], uv0[left, 1]], atol=1e-4)
            np.testing.assert_allclose(uv[left], [SIZE - 1 - uv0[right, 0], uv0[right, 1]], atol=1e-4)
        # The camera stays a proper one that projects the relabelled 3D joints onto the new uv.
        K = flipped["K"].numpy().astype(np.float64)
        assert K[0, 0] > 0 and K[1, 1] > 0
        np.testing.assert_allclose(project(flipped["joints_cam"].numpy().astype(np.float64), K), uv, atol=0.01)
        assert torch.equal(flipped["vis"][list(RIGHT_JOINTS)], plain["vis"][list(LEFT_JOINTS)])


def test_the_half_body_box_frames_one_half_of_the_body(samples, only, monkeypatch):
    only("half_body")
    monkeypatch.setattr(augment, "HALF_BODY_P", 1.0)
    for upper in (1.0, 0.0):
        monkeypatch.setattr(augment, "HALF_BODY_UPPER_P", upper)
        kept = list(augment.UPPER_BODY if upper else augment.LOWER_BODY)
        for seed, s in enumerate(samples):
            out = _crop(s, seed)
            pts = s["uv"][kept].astype(np.float64)
            side = 1.5 * np.ptp(pts, axis=0).max()  # MMPose: the half's extent, padded by 1.5
            np.testing.assert_allclose(out["crop"].numpy(), crop_affine(pts.mean(0), side, SIZE), rtol=1e-6, atol=1e-6)
            assert out["vis"][kept].all()


def test_too_few_labelled_joints_keep_the_whole_box(samples, monkeypatch):
    monkeypatch.setattr(augment, "HALF_BODY_P", 1.0)
    vis = np.zeros(17, np.uint8)
    vis[:8] = 1  # 8 < 9 labelled joints
    assert augment.half_body_box(samples[0]["uv"], vis, torch.Generator().manual_seed(0)) is None


def test_box_jitter_draws_within_its_ranges_at_its_rates():
    g = torch.Generator().manual_seed(1)
    draws = [augment.box_jitter(np.array([50.0, 40.0]), 100.0, g) for _ in range(4000)]
    centres = np.array([c for c, _, _ in draws])
    sides = np.array([s for _, s, _ in draws])
    angles = np.array([a for _, _, a in draws])
    assert 60.0 <= sides.min() and sides.max() <= 140.0 and sides.std() > 15.0
    assert np.abs(angles).max() <= 80.0 and np.mean(angles != 0) == pytest.approx(0.6, abs=0.03)
    moved = np.any(centres != [50.0, 40.0], axis=1)
    assert moved.mean() == pytest.approx(0.3, abs=0.03) and np.abs(centres - [50.0, 40.0]).max() <= 16.0


def test_the_dropout_hole_is_one_black_rectangle_of_its_size(only):
    only("hole")
    for seed in range(20):
        image = augment.photometric(np.full((SIZE, SIZE, 3), 200, np.uint8), torch.Generator().manual_seed(seed))
        rows, cols = np.nonzero((image == 0).all(-1))
        h, w = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert len(rows) == h * w and (image > 0).all(-1).sum() == SIZE * SIZE - h * w
        assert 0.2 * SIZE - 1 <= h <= 0.4 * SIZE + 1 and 0.2 * SIZE - 1 <= w <= 0.4 * SIZE + 1


def test_a_value_shift_keeps_grey_grey_and_moves_its_brightness_by_at_most_30(only, monkeypatch):
    only("hsv")
    monkeypatch.setattr(augment, "HSV_DELTA", (0, 0, 30))
    grey = np.full((8, 8, 3), 120, np.uint8)
    values = set()
    for seed in range(40):
        out = augment.photometric(grey, torch.Generator().manual_seed(seed))
        assert (out == out[:1, :1]).all()
        values.add(int(out[0, 0, 0]))
    assert min(values) >= 120 - 30 and max(values) <= 120 + 30 and len(values) > 5 and 120 in values


def test_public_augmentation_is_a_function_of_the_generator(samples):
    a, b, c = _crop(samples[0], 7), _crop(samples[0], 7), _crop(samples[0], 8)
    assert all(torch.equal(a[k], b[k]) for k in ("image", "uv", "vis", "K"))
    assert not torch.equal(a["image"], c["image"])


def test_evaluation_crops_ignore_the_augmentation(samples):
    s = samples[0]
    plain = PoseTransform(SIZE, train=False)(s)
    public = PoseTransform(SIZE, train=False, augment="public")(s, generator=torch.Generator().manual_seed(3))
    assert torch.equal(plain["image"], public["image"]) and torch.equal(plain["uv"], public["uv"])
    np.testing.assert_allclose(plain["crop"].numpy(), crop_affine((47.5, 47.5), 96.0, SIZE))
