"""Tracklets from synthetic detection streams with crossings, drop-outs and bad detections."""

import json

import cv2
import numpy as np
import pytest

from ws3d.data.poses import forward_kinematics, make_subject, sample_angles
from ws3d.data.tracklets import build_tracklets, keep_pose, load_detections, tracklet_records

FRAMES = 20


def _shape(activity, seed):
    angles = sample_angles(activity, np.random.default_rng(seed))
    return forward_kinematics(angles, make_subject(seed).bone_lengths)[:, :2] * 0.1  # px, torso ~ 48 px


def _stream(noise=0.5, seed=0):
    """Detections per frame and the identity behind each (frame, detection)."""
    rng = np.random.default_rng(seed)
    people = {  # identity: (2D shape, start offset, velocity px/frame, frames present)
        "A": (_shape("arms_raised", 1), np.array([50.0, 200.0]), np.array([15.0, 0.0]), range(FRAMES)),
        "B": (_shape("standing", 2), np.array([335.0, 205.0]), np.array([-15.0, 0.0]), range(FRAMES)),
        "C": (_shape("walking", 3), np.array([600.0, 200.0]), np.array([1.0, 0.0]), range(3)),  # too short
        "D": (
            _shape("reaching", 4),
            np.array([200.0, 500.0]),
            np.array([2.0, 1.0]),
            [f for f in range(FRAMES) if f not in (4, 5)],
        ),  # fmt: skip
    }
    frames, truth = [], {}
    for f in range(FRAMES):
        poses = []
        for name, (shape, start, velocity, present) in people.items():
            if f not in present:
                continue
            uv = shape + start + velocity * f + rng.normal(0, noise, shape.shape)
            conf = rng.uniform(0.7, 1.0, len(shape))
            if name == "D" and f == 7:
                conf[8] = 0.2  # neck missed: this detection must be dropped
            poses.append(np.concatenate([uv, conf[:, None]], 1))
            truth[(f, len(poses) - 1)] = name
        junk = np.concatenate([rng.uniform(0, 700, (17, 2)), rng.uniform(0, 0.45, (17, 1))], 1)
        junk[[0, 8], 2] = 0.9  # neck and pelvis fine, but most joints low: dropped
        poses.append(junk)
        order = rng.permutation(len(poses))  # detectors list people in no particular order
        truth.update({(f, int(np.flatnonzero(order == k)[0])): truth.pop((f, k)) for k in range(len(poses) - 1)})
        frames.append((f, np.stack(poses)[order], f"frame_{f:04d}.jpg"))
    return frames, truth


def _identity(tracklet, frames, truth):
    names = set()
    for f, pose in zip(tracklet.frames, tracklet.poses, strict=True):
        k = next(i for i, p in enumerate(frames[f][1]) if np.array_equal(p, pose))
        names.add(truth.get((f, k), "junk"))
    return names


def test_tracklets_follow_people_through_crossings_and_drop_outs():
    frames, truth = _stream()
    tracklets = build_tracklets(frames)
    identities = [_identity(t, frames, truth) for t in tracklets]
    assert sorted(next(iter(i)) for i in identities) == ["A", "B", "D"]  # C too short, junk never kept
    assert all(len(i) == 1 for i in identities)  # A and B swap places at frame ~9 without swapping ids
    by_name = {next(iter(i)): t for i, t in zip(identities, tracklets, strict=True)}
    assert by_name["A"].frames == list(range(FRAMES))
    a, b = (np.array([p[0, 0] for p in by_name[n].poses]) for n in "AB")
    assert a[0] < b[0] - 200 and a[-1] > b[-1] + 200  # the two really crossed
    assert by_name["D"].frames == [f for f in range(FRAMES) if f not in (4, 5, 7)]


def test_a_drop_out_where_people_cross_keeps_their_identities():
    """B is not detected in the frames where it passes A: matched at its last position, A
    (now there) would take B's tracklet; matched where B's velocity carries it, it does not."""
    frames, truth = _stream()
    hidden = {9, 10}  # A and B cross at frame ~9
    for f in hidden:
        keep = [k for k in range(len(frames[f][1])) if truth.get((f, k)) != "B"]
        truth.update({(f, i): truth.pop((f, k)) for i, k in enumerate(keep) if (f, k) in truth})
        frames[f] = (f, frames[f][1][keep], frames[f][2])
    tracklets = build_tracklets(frames)
    identities = [_identity(t, frames, truth) for t in tracklets]
    assert all(len(i) == 1 for i in identities), identities
    by_name = {next(iter(i)): t for i, t in zip(identities, tracklets, strict=True)}
    assert by_name["A"].frames == list(range(FRAMES))
    assert by_name["B"].frames == [f for f in range(FRAMES) if f not in hidden]


def test_tracklets_shorter_than_min_length_are_dropped():
    frames, _ = _stream()
    assert len(build_tracklets(frames, min_length=3)) == 4  # C's 3 frames now count
    assert len(build_tracklets(frames, min_length=21)) == 0


def test_pose_filter_rules():
    pose = np.ones((17, 3))
    assert keep_pose(pose)
    low = pose.copy()
    low[:8, 2] = 0.4
    low[[0, 8], 2] = 1.0
    assert keep_pose(low)  # 6 of 17 low
    low[9:12, 2] = 0.4
    assert not keep_pose(low)  # 9 of 17 low: more than half
    for joint in (0, 8):
        missing = pose.copy()
        missing[joint, 2] = 0.49
        assert not keep_pose(missing)


@pytest.mark.parametrize("fmt", ["json", "npz"])
def test_detection_files_round_trip(tmp_path, fmt):
    frames, _ = _stream()
    path = tmp_path / f"det.{fmt}"
    if fmt == "json":
        path.write_text(
            json.dumps({"frames": [{"frame": f, "image": im, "people": p.tolist()} for f, p, im in frames]})
        )
    else:
        rows = [(f, p, im) for f, poses, im in frames for p in poses]
        np.savez(path, frame=[r[0] for r in rows], keypoints=np.stack([r[1] for r in rows]), image=[r[2] for r in rows])
    loaded = load_detections(path)
    assert [f for f, _, _ in loaded] == list(range(FRAMES))
    for (_, p, im), (_, q, im2) in zip(frames, loaded, strict=True):
        np.testing.assert_allclose(p, q)
        assert im == im2
    cv2.imwrite(str(tmp_path / frames[0][2]), np.zeros((480, 720, 3), np.uint8))  # the video's resolution
    arrays = tracklet_records(build_tracklets(loaded), tmp_path, focal=900.0)
    assert arrays["uv"].shape == (len(arrays["group"]), 17, 2) and set(arrays["group"].tolist()) == {0, 1, 2}
    assert arrays["image"][0].startswith("frame_")
    # The video's camera: the given focal, the principal point at the centre of 720 x 480 px.
    np.testing.assert_array_equal(arrays["K"][0], [[900, 0, 359.5], [0, 900, 239.5], [0, 0, 1]])
    assert arrays["has_K"].all() and not arrays["extrinsics_known"].any() and np.isnan(arrays["joints_cam"]).all()
    # The box holds the visible joints, which span 75 % of its side (the crop rule everywhere).
    uv, vis = arrays["uv"][0], arrays["vis"][0].astype(bool)
    extent = (uv[vis].max(0) - uv[vis].min(0)).max()
    assert arrays["side"][0] == pytest.approx(1.1 * extent / 0.75, rel=1e-5)
    assert arrays["centre"][0] == pytest.approx((uv[vis].max(0) + uv[vis].min(0)) / 2, rel=1e-5)


def _write_detections(path, listings):
    """listings: [(frame, poses (P, 17, 3), image or "")], written in this order (a frame may repeat)."""
    if path.suffix == ".json":
        entries = [{"frame": f, "people": p.tolist()} | ({"image": im} if im else {}) for f, p, im in listings]
        path.write_text(json.dumps({"frames": entries}))
    else:
        rows = [(f, pose, im) for f, poses, im in listings for pose in poses]
        np.savez(path, frame=[r[0] for r in rows], keypoints=np.stack([r[1] for r in rows]), image=[r[2] for r in rows])


def test_a_frame_listed_twice_keeps_all_its_detections_in_both_formats(tmp_path):
    """Frame 3's people come in two listings, the second at the end of the file and the
    first without the image name: both are merged, in file order, in JSON as in npz."""
    frames, _ = _stream()
    f, poses, image = frames[3]
    listings = [x for x in frames if x[0] != 3] + [(3, poses[:2], ""), (3, poses[2:], image)]
    loaded = {}
    for fmt in ("json", "npz"):
        _write_detections(tmp_path / f"det.{fmt}", listings)
        loaded[fmt] = load_detections(tmp_path / f"det.{fmt}")
        assert [g for g, _, _ in loaded[fmt]] == list(range(FRAMES))
        assert loaded[fmt][3][2] == image
        np.testing.assert_array_equal(loaded[fmt][3][1], poses)  # all of them, in file order
    for (f1, p1, im1), (f2, p2, im2) in zip(loaded["json"], loaded["npz"], strict=True):
        assert (f1, im1) == (f2, im2)
        np.testing.assert_array_equal(p1, p2)
    # Two different images for one frame: the detections cannot all belong to it.
    for fmt, where in (("json", r"frames\[1\]"), ("npz", "row 1")):
        _write_detections(tmp_path / f"two.{fmt}", [(0, poses[:1], "a.jpg"), (0, poses[1:2], "b.jpg")])
        with pytest.raises(ValueError, match=f"{where}: frame 0 is listed with two images, 'a.jpg' and 'b.jpg'"):
            load_detections(tmp_path / f"two.{fmt}")


def test_detection_file_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, frame=[0], keypoints=np.zeros((1, 16, 3)))
    with pytest.raises(ValueError, match=r"bad.npz: field 'keypoints': expected poses of shape \(people, 17, 3\)"):
        load_detections(bad)
    np.savez(bad, keypoints=np.zeros((1, 17, 3)))
    with pytest.raises(ValueError, match="field 'frame' is missing"):
        load_detections(bad)
    text = tmp_path / "bad.json"
    text.write_text('{"frames": [{"frame": 0, "people": [[[1, 2, 0.5]]]}]}')
    with pytest.raises(ValueError, match=r"frames\[0\].people"):
        load_detections(text)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_detections(tmp_path / "nope.json")
