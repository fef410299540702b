"""`ws3d calibrate`: a known studio rig back from its cameras' OpenPose files.

The footage is ws3d.data.studio's (a rig of raised cameras, people walking, a detector's
faults); each camera's detections are written as OpenPose writes them (one BODY_25 JSON
per frame, keypoints placed by their OpenPose names from tests/public_formats.py, never
with ws3d's reader table), through a lens with distortion, with a less confident second
"person" listed first in every other frame and junk joints of low confidence. The true
rig is a Pose2Sim TOML, used as --intrinsics and as --reference.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.public_formats import OPENPOSE_BODY_25
from ws3d.calibrate import AMBIGUOUS, LOST, TRACK_RESTART, read_views
from ws3d.cli import main
from ws3d.data.calibration_files import CameraCalibration, read_calibration, write_toml
from ws3d.data.studio import FRAME_SIZE, DetectorFaults, detect, observe, sample_studio, studio_motion
from ws3d.rig_calibration import compare_rigs
from ws3d.skeleton import JOINTS

FRAMES = 120
LAG = np.array([0, 0, 2])  # the third camera's frame f shows the first's f + 2
DIST = np.array([-0.2, 0.05, 0.0, 0.0, 0.0])  # a wide lens's barrel distortion, OpenCV's k1 k2 p1 p2 k3
# ws3d's joints under their BODY_25 names; BODY_25 has no spine and no head (top).
BODY_25_IS = {
    "pelvis": "MidHip", "r_hip": "RHip", "r_knee": "RKnee", "r_ankle": "RAnkle", "l_hip": "LHip", "l_knee": "LKnee",
    "l_ankle": "LAnkle", "neck": "Neck", "nose": "Nose", "l_shoulder": "LShoulder", "l_elbow": "LElbow",
    "l_wrist": "LWrist", "r_shoulder": "RShoulder", "r_elbow": "RElbow", "r_wrist": "RWrist",
}  # fmt: skip
SLOT = {name: index for index, name in OPENPOSE_BODY_25.items()}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """calibrate_rig's tensors are small; with the cores shared (a CI run beside the tests),
    OpenMP threads waiting on each other cost more than a second thread gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Footage:
    truth: Path  # the true rig, Pose2Sim TOML (with the lens distortion)
    distorted: list[Path]  # per camera, a folder of OpenPose JSON through the lens
    pinhole: list[Path]  # the same detections without distortion
    R: np.ndarray  # (C, 3, 3)
    t: np.ndarray  # (C, 3) mm
    K: np.ndarray  # (C, 3, 3)


def _body_25(pose):
    """(17, 3) ws3d joints [u, v, confidence] -> (25, 3) BODY_25 keypoints; the keypoints
    that are no ws3d joint (eyes, ears, feet) undetected, as OpenPose writes them (0, 0, 0)."""
    out = np.zeros((25, 3))
    for joint, name in BODY_25_IS.items():
        out[SLOT[name]] = pose[JOINTS.index(joint)]
    return out


def _write_camera(folder: Path, uv, w, rng, prefix="cam"):
    """One OpenPose --write_json file per frame: uv (F, 17, 2), w (F, 17) detected or not."""
    folder.mkdir()
    for f in range(len(uv)):
        confidence = np.where(w[f] > 0, rng.uniform(0.5, 0.95, 17), 0.0)
        person = np.concatenate([np.where(w[f][:, None] > 0, uv[f], 0.0), confidence[:, None]], 1)
        junk = rng.random(17) < 0.05  # joints far off at a confidence below --threshold
        person[junk, :2] = rng.uniform(0, 1, (junk.sum(), 2)) * FRAME_SIZE
        person[junk, 2] = 0.1
        people = [_body_25(person)]
        if f % 2 == 0:  # somebody else, less sure, listed first
            decoy = person.copy()
            decoy[:, 0] += 400.0
            decoy[:, 2] = np.where(w[f] > 0, 0.4, 0.0)
            people.insert(0, _body_25(decoy))
        (folder / f"{prefix}_{f:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": [
            {"person_id": [-1], "pose_keypoints_2d": p.reshape(-1).tolist(), "face_keypoints_2d": [],
             "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []} for p in people]}))  # fmt: skip


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Footage:
    root = tmp_path_factory.mktemp("studio")
    rng = np.random.default_rng(11)
    K, R, t = sample_studio(rng, 3)
    joints = studio_motion(rng, FRAMES + LAG.max(), subject_frames=30)
    uv, visible = observe(joints, K, R, t, LAG)
    faults = DetectorFaults(noise_px=2.0, swap_rate=0.05, outlier_rate=0.02, missing_rate=0.1)
    detected, w, _ = detect(uv, visible, faults, rng)
    distorted = np.empty_like(detected)
    for c in range(len(K)):  # the same detections seen through the lens
        rays = np.concatenate([detected[:, c], np.ones_like(detected[:, c, :, :1])], -1) @ np.linalg.inv(K[c]).T
        points, _ = cv2.projectPoints(rays.reshape(-1, 3), np.zeros(3), np.zeros(3), K[c], DIST)
        distorted[:, c] = points.reshape(detected[:, c].shape)
    folders = {}
    for kind, pixels in (("distorted", distorted), ("pinhole", detected)):
        folders[kind] = []
        for c in range(len(K)):
            folder = root / kind / f"cam{c + 1}"
            folder.parent.mkdir(exist_ok=True)
            _write_camera(folder, pixels[:, c], w[:, c], np.random.default_rng(c))
            folders[kind].append(folder)
    truth = root / "Calib_truth.toml"
    write_toml(truth, [CameraCalibration(f"studio_{c}", FRAME_SIZE, K[c], DIST, R[c], t[c]) for c in range(len(K))])
    return Footage(truth, folders["distorted"], folders["pinhole"], R, t, K)


def _rows(printed: str, names) -> dict[str, list[str]]:
    """The table's row of each camera, split into cells, by the camera's name."""
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()}
    assert set(names) <= set(rows), printed
    return {name: rows[name] for name in names}


def _errors(path: Path, footage: Footage):
    cameras = read_calibration(path)
    R, t = np.stack([cam.R for cam in cameras]), np.stack([cam.t for cam in cameras])
    return cameras, [e.numpy() for e in compare_rigs(R, t, footage.R, footage.t)]


def test_calibrates_a_known_rig_with_its_intrinsics(footage, tmp_path, capsys):
    out = tmp_path / "rig.toml"
    assert main(["calibrate", *map(str, footage.distorted), "--out", str(out), "--intrinsics", str(footage.truth),
                 "--reference", str(footage.truth), "--offsets", "0", "0", str(LAG[2])]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    cameras, (rotation, baseline, scale) = _errors(out, footage)
    assert [cam.name for cam in cameras] == ["studio_0", "studio_1", "studio_2"]
    assert all(cam.size == FRAME_SIZE for cam in cameras)
    np.testing.assert_allclose(np.stack([cam.K for cam in cameras]), footage.K)  # given, not refined
    np.testing.assert_allclose(cameras[1].dist, DIST)
    np.testing.assert_allclose(cameras[0].R, np.eye(3), atol=1e-9)  # the world is the first camera's frame
    # Left in, the lens's distortion costs several times these bounds: the joints must be undistorted.
    assert rotation.max() < 0.3 and baseline.max() < 0.3
    assert np.abs(scale - 1).max() < 0.1  # metres from the people's bones
    rows = _rows(printed, [cam.name for cam in cameras])
    header = next(line.split() for line in printed.splitlines() if line.startswith("camera"))
    assert header[:4] == ["camera", "reproj", "px", "inliers"]
    for c, row in enumerate(rows.values()):
        assert row[-1] == str(footage.distorted[c])  # the camera's detections, last
        assert float(row[1]) < 5.0 and float(row[2].rstrip("%")) > 90.0  # reprojection px, inliers
        if c:  # rotation and baseline-direction errors against the reference, as compare_rigs gives them
            assert float(row[5]) == pytest.approx(rotation[c - 1], abs=1e-3) and float(row[5]) < 1.0
            assert float(row[6]) == pytest.approx(baseline[c - 1], abs=1e-3) and float(row[6]) < 1.0
    assert [row[3] for row in rows.values()] == ["0", "0", str(LAG[2])]
    assert f"wrote {out}" in printed


def test_nominal_intrinsics_are_refined_and_a_lagging_stream_is_found(footage, tmp_path, capsys):
    out = tmp_path / "rig.toml"
    assert main(["calibrate", *map(str, footage.pinhole), "--out", str(out), "--size", *map(str, FRAME_SIZE),
                 "--max-offset", "3", "--reference", str(footage.truth)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    cameras, (rotation, baseline, scale) = _errors(out, footage)
    assert [cam.name for cam in cameras] == ["cam_1", "cam_2", "cam_3"]
    focal = np.array([cam.K[0, 0] for cam in cameras]) / footage.K[:, 0, 0]
    assert np.abs(focal - 1).max() < 0.05  # from 1.2 x 1920 px
    assert rotation.max() < 2.0 and baseline.max() < 2.0
    rows = _rows(printed, ["cam_1", "cam_2", "cam_3"])
    assert [row[3] for row in rows.values()] == ["0", "0", str(LAG[2])]


def test_swapped_cameras_are_far_from_the_reference(footage, tmp_path, capsys):
    """The check that can fail: two cameras' files exchanged calibrate a rig that is not the
    reference's, and the printed errors say so."""
    paths = [footage.pinhole[1], footage.pinhole[0], footage.pinhole[2]]
    out = tmp_path / "rig.toml"
    assert main(["calibrate", *map(str, paths), "--out", str(out), "--size", *map(str, FRAME_SIZE), "--offsets",
                 "0", "0", str(LAG[2]), "--every", "2", "--reference", str(footage.truth)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "60 frames (moments 0..118, every 2" in printed
    rows = _rows(printed, ["cam_2", "cam_3"])
    assert max(float(row[5]) for row in rows.values()) > 20.0  # rotation errors, degrees
    _, (rotation, _, _) = _errors(out, footage)
    assert rotation.max() > 20.0


def test_bad_input_prints_one_line_and_writes_nothing(footage, tmp_path, capsys):
    late = tmp_path / "late"  # the third camera's first frames, numbered from 5000: no frame in common
    late.mkdir()
    for file in sorted(footage.pinhole[2].iterdir())[:5]:
        number = int(file.name.split("_")[1])
        (late / f"cam_{number + 5000:012d}_keypoints.json").write_text(file.read_text())
    out = tmp_path / "rig.toml"
    size = ["--size", *map(str, FRAME_SIZE)]
    pinhole = list(map(str, footage.pinhole))
    for args, needle in (
        ([*pinhole[:2], "--intrinsics", str(footage.truth)], "3 cameras, but 2 detections paths"),
        ([pinhole[0], *size], "at least 2 cameras"),
        ([*pinhole[:2], str(late), *size], f"{late} (camera 3): no frame in common"),
        ([*pinhole, *size, "--offsets", "0", "1"], "--offsets: 2 values for 3 cameras"),
        (pinhole, "--size W H"),
        ([*pinhole, *size, "--reference", str(tmp_path / "missing.toml")], "missing.toml: no such file"),
    ):
        # --every 20: should a check slip through, the calibration it reaches is short.
        assert main(["calibrate", *args, "--out", str(out), "--every", "20"]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ws3d: error:") and needle in lines[0], (args, lines)
        assert not out.exists()


# One person tracked per camera (ws3d.calibrate's "People" rule). Camera 1 films the scenes
# below; camera 2 one person throughout, so that every frame is a row of the grid (row = frame).
HEIGHT = 300.0  # px, the figures' height; their confident joints' box diagonal is ~280 px
# A standing person's joints relative to the pelvis, in heights (ws3d order, image v down).
FIGURE = np.array([
    [0, 0], [-0.06, 0], [-0.06, 0.25], [-0.06, 0.5], [0.06, 0], [0.06, 0.25], [0.06, 0.5], [0, -0.15], [0, -0.3],
    [0, -0.38], [0, -0.45], [0.1, -0.28], [0.15, -0.15], [0.17, -0.02], [-0.1, -0.28], [-0.15, -0.15], [-0.17, -0.02],
])  # fmt: skip


def _figure(x: float, confidence: float, rng, jitter: float = 1.0) -> np.ndarray:
    """(17, 3) [u, v, confidence] of a person standing with the pelvis at (x, 600) px, each joint
    off by up to ``jitter`` px (a detector's noise)."""
    uv = np.array([x, 600.0]) + HEIGHT * FIGURE + rng.uniform(-jitter, jitter, (17, 2))
    return np.concatenate([uv, np.full((17, 1), confidence)], 1)


def _track(tmp_path: Path, scene: list[list[np.ndarray]]):
    """read_views of camera 1 filming ``scene`` (per frame its people, as listed in the JSON)
    and camera 2 one person in every frame."""
    rng = np.random.default_rng(0)
    for c, frames in enumerate([scene, [[_figure(800 + f, 0.9, rng)] for f in range(len(scene))]]):
        folder = tmp_path / f"cam{c + 1}"
        folder.mkdir()
        for f, people in enumerate(frames):
            listed = [{"person_id": [-1], "pose_keypoints_2d": _body_25(p).ravel().tolist()} for p in people]
            (folder / f"cam{c + 1}_{f:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": listed}))
    views = read_views([tmp_path / "cam1", tmp_path / "cam2"])
    assert views.times.tolist() == list(range(len(scene)))
    return views


def _is(views, row: int, person: np.ndarray) -> bool:
    """Whether camera 1 kept ``person`` (its BODY_25 joints) at ``row``."""
    kept = views.w[row, 0] > 0
    return kept[BODY_25_JOINTS].all() and np.allclose(views.uv[row, 0][BODY_25_JOINTS], person[BODY_25_JOINTS, :2])


BODY_25_JOINTS = [JOINTS.index(joint) for joint in BODY_25_IS]


def test_two_people_walking_the_tracked_one_is_kept_when_the_other_is_more_confident(tmp_path):
    """The other person walks up to within the gate (130 px beside, ~0.46 of the diagonal)
    and is the more confident one in every third frame, listed first in every other."""
    rng = np.random.default_rng(1)
    scene, truth = [], []
    for f in range(40):
        x = 300.0 + 4 * f
        person = _figure(x, 0.8, rng)
        other = _figure(max(x + 900 - 20 * f, x + 130), 0.95 if f % 3 == 1 else 0.5, rng)
        scene.append([other, person] if f % 2 else [person, other])
        truth.append(person)
    views = _track(tmp_path, scene)
    assert views.lost.tolist() == [0, 0] and views.ambiguous.tolist() == [0, 0]
    assert not views.untracked.any()
    assert all(_is(views, f, truth[f]) for f in range(40))  # every frame, the same person


def test_a_lone_detection_elsewhere_is_not_kept_while_the_track_is_recent(tmp_path):
    """The tracked person walks out after frame 9; somebody else is detected alone, far off,
    in frames 10-19; the person comes back elsewhere at frame 9 + TRACK_RESTART - 4: lost
    for 5 frames (the track is recent), picked up again by the restart."""
    rng = np.random.default_rng(2)
    back = 9 + TRACK_RESTART - 4
    scene, truth = [], {}
    for f in range(back + 15):
        if f < 10:
            truth[f] = _figure(300.0 + 4 * f, 0.8, rng)
        elif f >= back:
            truth[f] = _figure(1000.0 + 4 * (f - back), 0.8, rng)
        scene.append([truth[f]] if f in truth else [_figure(1500.0, 0.9, rng)] if f < 20 else [])
    views = _track(tmp_path, scene)
    assert views.lost.tolist() == [10 + 5, 0] and views.ambiguous.tolist() == [0, 0]
    assert all(_is(views, f, truth[f]) for f in range(10))
    assert not views.w[10:20, 0].any() and (views.untracked[10:20, 0] == LOST).all()  # the other one: not kept
    assert not views.w[back : back + 5, 0].any() and (views.untracked[back : back + 5, 0] == LOST).all()
    assert all(_is(views, f, truth[f]) for f in range(back + 5, back + 15))  # restarted on the person


def test_people_crossing_in_the_same_pose_are_ambiguous_and_dropped(tmp_path):
    """One stands (jittering by a px), the other walks past at 1 px a frame in the same pose,
    more confident from frame 1 on: where the two overlap, neither is clearly the tracked one."""
    rng = np.random.default_rng(3)
    scene, truth = [], []
    for f in range(60):
        person = _figure(800.0, 0.8, rng)
        other = _figure(830.0 - f, 0.95 if f else 0.5, rng)
        scene.append([other, person])
        truth.append(person)
    views = _track(tmp_path, scene)
    ambiguous = np.flatnonzero(views.untracked[:, 0] == AMBIGUOUS)
    assert views.ambiguous.tolist() == [len(ambiguous), 0] and len(ambiguous) >= 3
    assert views.lost.tolist() == [0, 0]
    assert (np.abs(830.0 - ambiguous - 800.0) <= 5).all()  # where the two are within a few px of each other
    assert not views.w[ambiguous, 0].any()  # dropped
    kept = [f for f in range(60) if f not in ambiguous]
    assert all(_is(views, f, truth[f]) for f in kept)  # before and after the crossing, the standing one


def test_calibrate_prints_the_frames_where_the_tracked_person_was_lost(footage, tmp_path, capsys):
    """Camera 2's person is missing from frames 40-44, where a false detection far off is the
    only person: those frames keep nobody, and the line says so."""
    moved = tmp_path / "cam2"
    moved.mkdir()
    for file in sorted(footage.pinhole[1].iterdir()):
        data = json.loads(file.read_text())
        if 40 <= int(file.name.split("_")[1]) < 45:
            keypoints = np.array(data["people"][-1]["pose_keypoints_2d"]).reshape(25, 3)
            keypoints[:, 0] = np.where(keypoints[:, 2] > 0, 1900.0 - keypoints[:, 0] / 10, 0.0)  # far right, thin
            data["people"] = [{"person_id": [-1], "pose_keypoints_2d": keypoints.ravel().tolist()}]
        (moved / file.name).write_text(json.dumps(data))
    paths = [footage.pinhole[0], moved, footage.pinhole[2]]
    out = tmp_path / "rig.toml"
    assert main(["calibrate", *map(str, paths), "--out", str(out), "--size", *map(str, FRAME_SIZE), "--offsets",
                 "0", "0", str(LAG[2]), "--every", "2"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "one person tracked per camera: frames lost [0, 5, 0], ambiguous [0, 0, 0]" in printed
