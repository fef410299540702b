"""`ws3d data records multicam`: a synchronised studio capture (frame folders + OpenPose
files per camera) as a multi-view record set that `open_records(..., multi_view=True)` reads.

The studio is hand-made: 3 cameras x 8 frames of 64x48 dummy JPEGs, each camera's
detections one BODY_25 JSON per frame (keypoints placed by their OpenPose names, through
tests/test_calibrate_cli.py's helper), known joints with a few below the threshold.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.test_calibrate_cli import _body_25
from ws3d.camera import default_focal
from ws3d.cli import main
from ws3d.data.calibration_files import CameraCalibration, write_toml
from ws3d.data.records import open_records
from ws3d.skeleton import JOINTS

CAMERAS, FRAMES, W, H = 3, 8, 64, 48
BODY_25_JOINTS = [j for j, name in enumerate(JOINTS) if name not in ("spine", "head")]  # BODY_25 has neither
LOW = [JOINTS.index("l_wrist"), JOINTS.index("r_knee")]  # detected below the 0.3 threshold in odd frames
DIST = np.array([-0.4, 0.1, 0.0, 0.0, 0.0])  # barrel distortion, OpenCV k1 k2 p1 p2 k3


def _pose(c: int, f: int) -> np.ndarray:
    """(17, 3) ws3d joints [u, v, confidence] of camera c at frame f: distinct per view, inside the image."""
    rng = np.random.default_rng(100 * c + f)
    pose = np.zeros((17, 3))
    pose[:, 0] = rng.uniform(8, W - 8, 17)
    pose[:, 1] = rng.uniform(6, H - 6, 17)
    pose[:, 2] = rng.uniform(0.6, 0.95, 17)
    if f % 2:
        pose[LOW, 2] = 0.1
    pose[[JOINTS.index("spine"), JOINTS.index("head")]] = 0.0
    return pose


@pytest.fixture()
def studio(tmp_path):
    """Per camera a frame folder of JPEGs and a folder of OpenPose JSON; the true poses."""
    frames, detections = [], []
    for c in range(CAMERAS):
        images, jsons = tmp_path / "frames" / f"cam{c + 1}", tmp_path / "openpose" / f"cam{c + 1}"
        images.mkdir(parents=True)
        jsons.mkdir(parents=True)
        for f in range(FRAMES):
            cv2.imwrite(str(images / f"{f:06d}.jpg"), np.full((H, W, 3), 40 * c, np.uint8))
            person = {"person_id": [-1], "pose_keypoints_2d": _body_25(_pose(c, f)).ravel().tolist()}
            text = json.dumps({"version": 1.3, "people": [person]})
            (jsons / f"cam{c + 1}_{f:012d}_keypoints.json").write_text(text)
        frames.append(str(images))
        detections.append(str(jsons))
    return tmp_path, frames, detections


def _run(tmp_path, frames, detections, *extra) -> tuple[int, Path]:
    out = tmp_path / "mc.npz"
    code = main(["data", "records", "multicam", *detections, "--frames", *frames, "--out", str(out), *extra])
    return code, out


def _views(data):
    a = data.arrays
    return {(int(g), int(c)): i for i, (g, c) in enumerate(zip(a["group"], a["camera"], strict=True))}


def test_groups_cameras_uv_vis_and_nominal_K(studio, capsys):
    tmp_path, frames, detections = studio
    code, out = _run(tmp_path, frames, detections)
    assert code == 0
    data = open_records(out, multi_view=True)
    a = data.arrays
    assert len(a["image"]) == CAMERAS * FRAMES
    assert sorted(set(a["group"].tolist())) == list(range(FRAMES))
    assert (a["rig"] == 0).all()
    assert not a["extrinsics_known"].any() and a["has_K"].all()
    views = _views(data)
    focal = default_focal(W, H)
    for g in range(FRAMES):
        assert sorted(c for gg, c in views if gg == g) == [0, 1, 2]
        for c in range(CAMERAS):
            i = views[g, c]
            assert a["image"][i] == f"cam{c + 1}/{g:06d}.jpg"
            pose = _pose(c, g)
            np.testing.assert_allclose(a["uv"][i][BODY_25_JOINTS], pose[BODY_25_JOINTS, :2], atol=1e-3)
            expected_vis = (pose[:, 2] >= 0.3).astype(np.uint8)
            np.testing.assert_array_equal(a["vis"][i], expected_vis)
            np.testing.assert_allclose(a["K"][i], [[focal, 0, (W - 1) / 2], [0, focal, (H - 1) / 2], [0, 0, 1]])
    assert (a["vis"][:, LOW][a["group"] % 2 == 1] == 0).all()  # below the threshold: masked
    assert (a["vis"][:, LOW][a["group"] % 2 == 0] == 1).all()
    assert np.isnan(a["joints_cam"]).all()
    sample = data[0]  # the image is read back from the root
    assert sample["image"].shape == (H, W, 3)
    printed = capsys.readouterr().out
    assert "kept 24 views in 8 groups" in printed and "dropped: nothing" in printed


def test_missing_images_drop_views_and_small_groups(studio, capsys):
    tmp_path, frames, detections = studio
    (Path(frames[1]) / "000005.jpg").unlink()  # group 5 keeps cameras 1 and 3
    (Path(frames[0]) / "000006.jpg").unlink()  # group 6: only camera 3 is left -> dropped
    (Path(frames[1]) / "000006.jpg").unlink()
    code, out = _run(tmp_path, frames, detections)
    assert code == 0
    a = open_records(out, multi_view=True).arrays
    assert len(set(a["group"].tolist())) == FRAMES - 1
    assert len(a["image"]) == CAMERAS * FRAMES - 1 - 3
    assert not any("000006" in str(p) for p in a["image"])
    five = [p for p in a["image"] if p.endswith("000005.jpg")]
    assert sorted(five) == ["cam1/000005.jpg", "cam3/000005.jpg"]
    printed = capsys.readouterr().out
    assert "kept 20 views in 7 groups" in printed
    assert "1 views without an image (camera 1)" in printed
    assert "2 views without an image (camera 2)" in printed
    assert "1 groups with fewer than 2 views" in printed and "1 views in those groups" in printed


def test_every_halves_the_groups(studio):
    tmp_path, frames, detections = studio
    code, out = _run(tmp_path, frames, detections, "--every", "2")
    assert code == 0
    a = open_records(out, multi_view=True).arrays
    assert len(set(a["group"].tolist())) == FRAMES // 2
    assert sorted({p.split("/")[1] for p in a["image"]}) == [f"{f:06d}.jpg" for f in range(0, FRAMES, 2)]


def test_offsets_shift_a_camera(studio):
    tmp_path, frames, detections = studio
    code, out = _run(tmp_path, frames, detections, "--offsets", "0", "0", "1")
    assert code == 0
    data = open_records(out, multi_view=True)
    a, views = data.arrays, _views(data)
    # camera 3's frame f is moment f + 1: it pairs with the others' frame f + 1
    for (g, c), i in views.items():
        if c == 2:
            other = a["image"][views[g, 0]]
            frame = int(Path(a["image"][i]).stem)
            assert int(Path(other).stem) == frame + 1


def test_intrinsics_file_undistorts_the_joints(studio):
    tmp_path, frames, detections = studio
    rng = np.random.default_rng(0)
    cameras = []
    for c in range(CAMERAS):
        K = np.array([[70.0 + 5 * c, 0, 30.0 + c], [0, 71.0 + 5 * c, 24.0 - c], [0, 0, 1]])
        R = cv2.Rodrigues(rng.normal(0, 0.3, 3))[0]
        cameras.append(CameraCalibration(f"cam_{c + 1}", (W, H), K, DIST, R, np.array([100.0 * c, 0, 3000.0])))
    calib = tmp_path / "calib.toml"
    write_toml(calib, cameras)
    code, out = _run(tmp_path, frames, detections, "--intrinsics", str(calib))
    assert code == 0
    data = open_records(out, multi_view=True)
    a = data.arrays
    assert a["extrinsics_known"].all()
    moved = 0
    for (g, c), i in _views(data).items():
        cam = cameras[c]
        np.testing.assert_allclose(a["K"][i], cam.K, atol=1e-4)
        np.testing.assert_allclose(a["R"][i], cam.R, atol=1e-5)
        np.testing.assert_allclose(a["t"][i], cam.t, atol=1e-2)
        pose = _pose(c, g)
        seen = pose[:, 2] >= 0.3
        reference = cv2.undistortPoints(pose[seen, None, :2], cam.K, cam.dist, P=cam.K).reshape(-1, 2)
        np.testing.assert_allclose(a["uv"][i][seen], reference, atol=0.02)
        moved = max(moved, np.abs(reference - pose[seen, :2]).max())
    assert moved > 1.0  # the distortion is large enough for the comparison to mean something


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("one_folder", "--frames: 2 folders for 3 detections paths"),
        ("two_cameras_calib", "cameras, but 3 detections paths"),
        ("no_folder", "(camera 2): no such frame folder"),
        ("wrong_size", "camera 'cam_1' is 640x480 px"),
    ],
)
def test_bad_input_is_one_line_naming_it(studio, capsys, change, message):
    tmp_path, frames, detections = studio
    extra = []
    if change == "one_folder":
        frames = frames[:2]
    elif change == "no_folder":
        frames = [frames[0], str(tmp_path / "nowhere"), frames[2]]
    else:
        K = np.array([[70.0, 0, 30], [0, 70, 24], [0, 0, 1]])
        size = (640, 480) if change == "wrong_size" else (W, H)
        n = 2 if change == "two_cameras_calib" else CAMERAS
        cams = [CameraCalibration(f"cam_{c + 1}", size, K, np.zeros(5), np.eye(3), np.zeros(3)) for c in range(n)]
        write_toml(tmp_path / "c.toml", cams)
        extra = ["--intrinsics", str(tmp_path / "c.toml")]
    code, out = _run(tmp_path, frames, detections, *extra)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()
