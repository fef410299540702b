"""The synthetic renderer: geometry of the labels, splits, reproducibility, and image cues."""

import json

import numpy as np
import pytest

from ws3d.camera import look_at, project, world_to_camera
from ws3d.data.poses import ACTIVITIES, LIMITS_DEG, forward_kinematics, make_subject, sample_angles, sample_person
from ws3d.data.render import draw_person
from ws3d.data.synthetic import (
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    VAL_SUBJECTS,
    ShardDataset,
    SynthConfig,
    SyntheticDataset,
    group_layout,
    write_shards,
)
from ws3d.skeleton import BONES


def items(split, n=24, **kw):
    ds = SyntheticDataset(SynthConfig(split, n, size=kw.pop("size", 64), **kw))
    return ds, [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("split", ["2d", "mv", "test"])
@pytest.mark.parametrize("rig", ["h36m", "orbit"])
def test_projecting_joints_cam_with_K_reproduces_uv(split, rig):
    _, samples = items(split, rig=rig)
    for s in samples:
        err = np.abs(project(s["joints_cam"].astype(np.float64), s["K"].astype(np.float64)) - s["uv"]).max()
        assert err < 0.01  # the issue asks for 0.5 px; float32 storage alone allows ~1e-5
        assert s["image"].shape == (64, 64, 3) and s["image"].dtype == np.uint8
        assert (s["joints_cam"][:, 2] > 1000).all()  # people stand metres in front of the camera


def test_views_of_a_group_are_one_person_seen_by_cameras_with_consistent_extrinsics():
    ds, samples = items("mv", n=40, rig="mixed")
    assert set(ds.counts.tolist()) <= set(range(2, 9)) and ds.counts.sum() == 40
    by_group = {}
    for s in samples:
        world = (s["joints_cam"].astype(np.float64) - s["t"]) @ s["R"].astype(np.float64)  # R^T (x - t)
        by_group.setdefault(int(s["group"]), []).append((world, bool(s["extrinsics_known"]), int(s["subject"])))
    for views in by_group.values():
        assert len(views) >= 2
        for world, known, subject in views[1:]:
            np.testing.assert_allclose(world, views[0][0], atol=0.5)  # mm; float32 R, t
            assert known == views[0][1] and subject == views[0][2]
    assert {known for v in by_group.values() for _, known, _ in v} == {True, False}  # both rigs appear


def test_h36m_groups_have_four_views_and_orbit_groups_small_baselines():
    ds, samples = items("mv", n=40, rig="orbit")
    for g in np.unique(ds.group):
        views = [s for s in samples if s["group"] == g]
        centres = [-(s["R"].T @ s["t"]) for s in views]
        directions = [c / np.linalg.norm(c[[0, 2]]) for c in centres]
        angle = np.degrees(np.arccos(np.clip(directions[0][[0, 2]] @ directions[-1][[0, 2]], -1, 1)))
        assert angle < 75  # hand-held orbit spans 15-60 degrees (plus the person offset)
    counts, rigs = group_layout(SynthConfig("mv", 41, rig="h36m"))
    assert counts.sum() == 41 and counts.min() >= 2 and counts.max() == 4


@pytest.mark.parametrize("n", [2, 3, 5, 9, 17])
def test_mv_layout_adds_up_to_n_without_single_views(n):
    for rig in ("h36m", "orbit", "mixed"):
        counts, rigs = group_layout(SynthConfig("mv", n, rig=rig))
        assert counts.sum() == n and counts.min() >= 2 and len(rigs) == len(counts)


def test_test_and_validation_subjects_are_disjoint_from_each_other_and_from_training():
    train = {int(s["subject"]) for split in ("2d", "mv") for s in items(split, n=30)[1]}
    test = {int(s["subject"]) for s in items("test", n=30)[1]}
    val = {int(s["subject"]) for s in items("val", n=30, domain="target")[1]}
    assert train <= set(TRAIN_SUBJECTS) and test <= set(TEST_SUBJECTS) and val <= set(VAL_SUBJECTS)
    assert not train & test and not val & (train | test)
    a, b = make_subject(min(test)), make_subject(min(train))
    assert not np.allclose(a.bone_lengths, b.bone_lengths) and not np.allclose(a.shirt, b.shirt)


def test_rendering_is_reproducible_per_image_and_changes_with_the_seed():
    ds = SyntheticDataset(SynthConfig("mv", 12, size=64, seed=3))
    again = SyntheticDataset(SynthConfig("mv", 12, size=64, seed=3))
    other = SyntheticDataset(SynthConfig("mv", 12, size=64, seed=4))
    for i in (0, 5, 11):  # any order, any worker: image i only depends on (seed, split, i)
        np.testing.assert_array_equal(ds[i]["image"], again[i]["image"])
        np.testing.assert_array_equal(ds[i]["uv"], again[i]["uv"])
        assert not np.array_equal(ds[i]["image"], other[i]["image"])


def test_visibility_marks_joints_outside_the_crop_and_under_occluders():
    _, samples = items("2d", n=60, truncation=1.0, occlusion=0.0)
    outside = 0
    for s in samples:
        inside = ((s["uv"] >= 0) & (s["uv"] <= 63)).all(1)
        assert not (s["vis"].astype(bool) & ~inside).any()
        outside += (~inside).sum()
    assert outside > 0  # truncation cut people off
    _, clean = items("2d", n=30, truncation=0.0, occlusion=0.0)
    assert all(s["vis"].all() for s in clean)
    _, occluded = items("2d", n=30, truncation=0.0, occlusion=1.0)
    assert sum((1 - s["vis"]).sum() for s in occluded) > 0


def test_people_fill_about_three_quarters_of_the_crop():
    _, samples = items("test", n=30, truncation=0.0)
    extent = [(s["uv"].max(0) - s["uv"].min(0)).max() / 64 for s in samples]
    np.testing.assert_allclose(extent, 0.75 / 1.1, rtol=1e-3)


def test_poses_respect_bone_lengths_and_joint_limits():
    rng = np.random.default_rng(0)
    subject = make_subject(7)
    for activity in ACTIVITIES:
        angles = sample_angles(activity, rng)
        for key, value in angles.items():
            lo, hi = LIMITS_DEG[key.removesuffix("_L").removesuffix("_R")]
            assert np.deg2rad(lo) - 1e-9 <= value <= np.deg2rad(hi) + 1e-9
        joints = forward_kinematics(angles, subject.bone_lengths)
        lengths = [np.linalg.norm(joints[c] - joints[p]) for c, p in BONES]
        np.testing.assert_allclose(lengths, subject.bone_lengths, rtol=1e-9)
        world, _, _ = sample_person(subject, rng, activity)
        assert world[:, 1].max() == pytest.approx(-80.0)  # the lowest ankle 8 cm above the floor (y = 0)
    ratios = make_subject(11).bone_lengths / make_subject(12).bone_lengths
    assert 0.8 < ratios.min() and ratios.max() < 1.25


def _render_person(heading_deg, distance=4000.0, size=96):
    """One standing subject at the image centre, uniform grey background."""
    subject = make_subject(5)
    angles = {k: 0.0 for k in sample_angles("standing", np.random.default_rng(0))}
    body = forward_kinematics(angles, subject.bone_lengths)
    a = np.deg2rad(heading_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    world = body @ rot.T
    R, t = look_at(np.array([0.0, -300.0, -distance]), np.array([0.0, -300.0, 0.0]))
    K = np.array([[size * 1.5, 0, (size - 1) / 2], [0, size * 1.5, (size - 1) / 2], [0, 0, 1]])
    image = np.full((size, size, 3), 0.5, np.float32)
    draw_person(image, world_to_camera(world, R, t), K, subject, np.array([0.0, 0.0, -1.0]), 0.3)
    return image, subject


def _pixels_of(image, colour, tol=0.02):
    """Pixels whose colour is a shade of ``colour`` (any brightness)."""
    c = np.asarray(colour) / np.linalg.norm(colour)
    norm = np.linalg.norm(image, axis=-1, keepdims=True) + 1e-9
    return (np.linalg.norm(image / norm - c, axis=-1) < tol) & (norm[..., 0] > 0.05)


def test_nearer_people_are_drawn_larger_by_perspective():
    near, _ = _render_person(0, distance=4000)
    far, _ = _render_person(0, distance=8000)
    area = [(np.abs(img - 0.5).sum(-1) > 0.02).sum() for img in (near, far)]
    assert area[0] / area[1] == pytest.approx(4.0, rel=0.15)  # area falls with the square of depth


def test_front_back_and_left_right_are_visible_in_the_image():
    # The person faces -z in the body frame and the camera stands on the -z side: heading 0 shows the front.
    front, subject = _render_person(0)
    back, _ = _render_person(180)
    assert _pixels_of(front, subject.logo, 0.05).sum() >= 3 and _pixels_of(back, subject.logo, 0.05).sum() == 0
    for image, right_of_centre in ((front, True), (back, False)):
        cols = np.nonzero(_pixels_of(image, subject.sleeve))[1]
        assert len(cols) > 5
        assert (cols.mean() > 47.5) == right_of_centre  # the person's left arm wears the coloured sleeve


def test_shards_round_trip_and_match_on_the_fly_rendering(tmp_path):
    cfg = SynthConfig("mv", 70, size=48, seed=1)
    meta = write_shards(cfg, tmp_path, workers=2, shard_size=32, progress=False)
    assert meta["shards"] == ["mv_0000.npz", "mv_0001.npz", "mv_0002.npz"] and meta["images_per_second"] > 0
    loaded = ShardDataset(tmp_path, "mv")
    live = SyntheticDataset(cfg)
    assert len(loaded) == 70
    for i in (0, 33, 69):
        for key, value in live[i].items():
            np.testing.assert_array_equal(loaded[i][key], value, err_msg=key)
    assert json.loads((tmp_path / "mv.json").read_text())["joints"][8] == "neck"


def test_shard_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="2d.json"):
        ShardDataset(tmp_path, "2d")
    write_shards(SynthConfig("2d", 5, size=32), tmp_path, workers=1, progress=False)
    shard = tmp_path / "2d_0000.npz"
    arrays = dict(np.load(shard))
    arrays["uv"] = arrays["uv"][:, :16]
    np.savez(shard, **arrays)
    with pytest.raises(ValueError, match=r"2d_0000.npz: field 'uv' has shape \(5, 16, 2\)"):
        ShardDataset(tmp_path, "2d")
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="2d_0000.npz"):
        ShardDataset(tmp_path, "2d")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "3d"}, "split"),
        ({"rig": "dome"}, "rig"),
        ({"size": 8}, "size"),
        ({"split": "mv", "n": 1}, "at least 2"),
        ({"domain": "studio"}, "domain must be one of .*'target'"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**{"split": "2d", "n": 4, **kwargs})


def _camera_elevations_deg(samples):
    """Degrees below the horizon at which each camera looks at the person's chest (y down)."""
    out = []
    for s in samples:
        centre = -(s["R"].T @ s["t"]).astype(np.float64)
        chest = ((s["joints_cam"].mean(0) - s["t"]) @ s["R"]).astype(np.float64)  # world
        drop = chest[1] - centre[1]  # y points down: positive when the camera is above
        out.append(np.degrees(np.arctan2(drop, np.linalg.norm((chest - centre)[[0, 2]]))))
    return np.array(out)


def test_target_cameras_look_down_from_high_up_where_the_source_looks_level():
    for rig in ("h36m", "orbit"):
        source = _camera_elevations_deg(items("mv", n=40, rig=rig)[1])
        target = _camera_elevations_deg(items("mv", n=40, rig=rig, domain="target-camera")[1])
        assert np.median(source) < 15 and source.max() < 26  # near level; up to 25 onto a crouching person
        assert target.min() > 18 and np.median(target) > 28 and target.max() < 60


@pytest.mark.parametrize("factor", ["room", "kit", "camera_noise"])
def test_appearance_factors_change_the_pixels_and_not_the_geometry(factor):
    source, target = items("test", n=6)[1], items("test", n=6, domain=f"target-{factor}")[1]
    for a, b in zip(source, target, strict=True):
        # The room replaces the source's background, whose draws also placed the occluder.
        for key in set(a) - {"image"} - ({"vis"} if factor == "room" else set()):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        changed = (np.abs(a["image"].astype(int) - b["image"].astype(int)) > 8).any(-1)
        assert changed.mean() > 0.04  # the kit changes only the clothes: 5-12 % of the crop


def test_target_motion_shows_mostly_the_poses_the_source_shows_least():
    rare = [ACTIVITIES.index(a) for a in ("crouching", "bending", "reaching")]
    share = {d: np.isin([int(s["activity"]) for s in items("test", n=200, size=32, domain=d)[1]], rare).mean()
             for d in ("source", "target-motion")}  # fmt: skip
    assert share["source"] < 0.55 and share["target-motion"] > 0.6


def test_the_target_room_is_one_room_and_the_source_background_is_any():
    # The same wall colour at the top of every target crop that shows wall; the source's
    # top rows vary wildly. Measured on crops where the person is not at the very top.
    source = np.stack([s["image"][0, :4].mean(0) for s in items("test", n=40, size=64)[1]])
    target = np.stack([s["image"][0, :4].mean(0) for s in items("test", n=40, size=64, domain="target-room")[1]])
    assert source.std(0).mean() > 40 and target.std(0).mean() < source.std(0).mean() / 2


def test_the_domain_is_recorded_with_the_split(tmp_path):
    write_shards(SynthConfig("val", 3, size=32, domain="target"), tmp_path, workers=1, progress=False)
    assert json.loads((tmp_path / "val.json").read_text())["domain"] == "target"
    assert len(ShardDataset(tmp_path, "val")) == 3
