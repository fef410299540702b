"""Synthetic studios: raised cameras that see the whole capture volume, smooth motion, and
detector faults at the rates asked for."""

import numpy as np
import pytest

from ws3d.camera import world_to_camera
from ws3d.data.studio import (
    FRAME_SIZE,
    VOLUME_RADIUS_MM,
    DetectorFaults,
    detect,
    observe,
    sample_studio,
    studio_motion,
)
from ws3d.skeleton import BONES, MIRRORED


def test_cameras_are_raised_around_the_volume_and_look_into_it():
    rng = np.random.default_rng(0)
    K, R, t = sample_studio(rng, 6)
    centres = -np.einsum("cba,cb->ca", R, t)
    assert (-centres[:, 1] > 1900).all() and (-centres[:, 1] < 2900).all()  # y is down: raised 2.0-2.8 m
    assert (np.hypot(centres[:, 0], centres[:, 2]) > 3400).all()
    azimuths = np.sort(np.arctan2(centres[:, 0], -centres[:, 2]))
    assert np.diff(np.r_[azimuths, azimuths[0] + 2 * np.pi]).max() < np.deg2rad(60 + 2 * 12)  # spread around
    # The volume's centre at chest height is in front of every camera, near the image centre.
    chest = world_to_camera(np.array([[0.0, -1000.0, 0.0]]), R, t)
    assert (chest[..., 2] > 3000).all()
    uv = np.einsum("cab,cjb->cja", K, chest)
    uv = uv[..., :2] / uv[..., 2:]
    assert (np.abs(uv - np.array(FRAME_SIZE) / 2) < 400).all()
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
    with pytest.raises(ValueError, match="at least 2 cameras"):
        sample_studio(rng, 1)


def test_people_move_smoothly_inside_the_volume_and_keep_their_bones():
    joints = studio_motion(np.random.default_rng(1), 400, subject_frames=200)
    assert joints.shape == (400, 17, 3)
    assert (np.hypot(joints[:, 0, 0], joints[:, 0, 2]) < VOLUME_RADIUS_MM + 300).all()
    assert np.abs(joints[..., 1].max(1) + 80).max() < 1e-9  # the lowest ankle joint 80 mm above the floor
    step = np.linalg.norm(np.diff(joints, axis=0), axis=-1)  # mm per frame at 30 fps
    assert step[:, 0].max() < 100 and step.max() < 300
    child, parent = zip(*BONES, strict=True)
    lengths = np.linalg.norm(joints[:, list(child)] - joints[:, list(parent)], axis=-1)
    np.testing.assert_allclose(lengths[:200], np.broadcast_to(lengths[0], (200, len(BONES))))
    assert not np.allclose(lengths[200], lengths[0])  # another person from frame 200


def test_detector_faults_come_at_their_rates():
    rng = np.random.default_rng(2)
    K, R, t = sample_studio(rng, 4)
    uv, visible = observe(studio_motion(rng, 500), K, R, t)
    assert visible.mean() > 0.95
    faults = DetectorFaults(noise_px=5.0, swap_rate=0.2, outlier_rate=0.1, missing_rate=0.3, bias_px=8.0)
    detected, w, swapped = detect(uv, visible, faults, rng)
    assert abs(swapped.mean() - 0.2) < 0.03
    assert abs((w[visible] == 0).mean() - 0.3) < 0.03
    # Swapped views hold the mirrored joints.
    unswapped = np.where(swapped[..., None, None], detected[:, :, MIRRORED], detected)
    error = np.linalg.norm(unswapped - uv, axis=-1)
    far = error > 60  # outliers; noise and bias stay within ~30 px
    assert 0.05 < far.mean() < 0.1  # 10 % outliers, some of which land near their true place
    inliers = unswapped[~far] - uv[~far]
    assert abs(np.linalg.norm(inliers, axis=-1).mean() - np.hypot(8.0, 5.0 * 1.25)) < 2.0  # bias and noise
