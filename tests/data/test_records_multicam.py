"""`ws3d data records multicam`: a synchronised studio capture (frame folders or videos +
OpenPose files per camera) as a multi-view record set that `open_records(..., multi_view=True)`
reads.

The studio is hand-made: 3 cameras x 8 frames of 64x48 dummy JPEGs, each camera's
detections one BODY_25 JSON per frame (keypoints placed by their OpenPose names, through
tests/test_calibrate_cli.py's helper), known joints with a few below the threshold, one
person per camera moving a pixel or so a frame (each camera tracks one person). For
videos, the same detections with frames that show their number (a grey level and a
printed digit per frame), written once as MJPG .avi videos (OpenCV's own encoder: no
codec needed) and once as JPEG frame folders.
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
from ws3d.data.multicam import decode_frames
from ws3d.data.records import open_records
from ws3d.skeleton import JOINTS

CAMERAS, FRAMES, W, H = 3, 8, 64, 48
BODY_25_JOINTS = [j for j, name in enumerate(JOINTS) if name not in ("spine", "head")]  # BODY_25 has neither
LOW = [JOINTS.index("l_wrist"), JOINTS.index("r_knee")]  # detected below the 0.3 threshold in odd frames
DIST = np.array([-0.4, 0.1, 0.0, 0.0, 0.0])  # barrel distortion, OpenCV k1 k2 p1 p2 k3


def _pose(c: int, f: int) -> np.ndarray:
    """(17, 3) ws3d joints [u, v, confidence] of camera c at frame f: distinct per view, inside the
    image, moving by a pixel or so from frame to frame (a person walking, whom each camera tracks)."""
    base, rng = np.random.default_rng(100 * c), np.random.default_rng(100 * c + f)
    pose = np.zeros((17, 3))
    pose[:, 0] = base.uniform(8, W - 8 - FRAMES, 17) + f + rng.uniform(-0.5, 0.5, 17)  # ~1 px a frame to the right
    pose[:, 1] = base.uniform(6, H - 6, 17) + rng.uniform(-0.5, 0.5, 17)
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


def test_views_where_the_tracked_person_is_lost_or_ambiguous_are_dropped_and_counted(studio, capsys):
    """Camera 2's frame 5 lists only somebody else, far off (and more confident); camera 3's
    frame 3 two people 3 px to either side of where the tracked one was in frame 2: neither
    is kept, and the counts say why."""
    tmp_path, frames, detections = studio
    elsewhere = _pose(1, 5)
    elsewhere[:, 0] += 40.0  # farther than half the pose's box diagonal
    elsewhere[:, 2] = np.where(elsewhere[:, 2] > 0, 0.99, 0.0)
    twins = [_pose(2, 2) + [dx, 0.0, 0.0] for dx in (-3.0, 3.0)]
    for c, f, people in ((1, 5, [elsewhere]), (2, 3, twins)):
        listed = [{"person_id": [-1], "pose_keypoints_2d": _body_25(p).ravel().tolist()} for p in people]
        (Path(detections[c]) / f"cam{c + 1}_{f:012d}_keypoints.json").write_text(json.dumps({"people": listed}))
    code, out = _run(tmp_path, frames, detections)
    assert code == 0
    views = _views(open_records(out, multi_view=True))
    assert len(views) == CAMERAS * FRAMES - 2 and (5, 1) not in views and (3, 2) not in views
    printed = capsys.readouterr().out
    assert "kept 22 views in 8 groups" in printed
    assert "1 views where the tracked person was lost (camera 2)" in printed
    assert "1 views where the tracked person was ambiguous (camera 3)" in printed
    assert "one person tracked per camera: frames lost [0, 1, 0], ambiguous [0, 0, 1]" in printed


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
        ("one_folder", "--frames: 2 folders or videos for 3 detections paths"),
        ("two_cameras_calib", "cameras, but 3 detections paths"),
        ("no_folder", "(camera 2): no such frame folder or video file"),
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


LEVEL = 24  # a numbered frame's grey level is 20 + LEVEL * frame: frames differ by far more than JPEG's error


def _numbered(c: int, f: int) -> np.ndarray:
    """Camera c's frame f (H, W, 3) BGR: its grey level and digit say which frame it is."""
    image = np.full((H, W, 3), 20 + LEVEL * f, np.uint8)
    image[:, :, c] = 128  # and which camera
    cv2.putText(image, str(f), (20, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return image


def _write_video(path: Path, images) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    assert writer.isOpened(), f"OpenCV cannot write MJPG to {path}"
    for image in images:
        writer.write(image)
    writer.release()


@pytest.fixture()
def filmed(studio):
    """The studio's detections with numbered frames: per camera a video (cam<c>.avi) and the
    same frames as a JPEG folder."""
    tmp_path, _, detections = studio
    videos, folders = [], []
    for c in range(CAMERAS):
        images = [_numbered(c, f) for f in range(FRAMES)]
        video = tmp_path / "videos" / f"cam{c + 1}.avi"
        video.parent.mkdir(exist_ok=True)
        _write_video(video, images)
        folder = tmp_path / "jpeg" / f"cam{c + 1}"
        folder.mkdir(parents=True)
        for f, image in enumerate(images):
            cv2.imwrite(str(folder / f"{f:06d}.jpg"), image)
        videos.append(str(video))
        folders.append(str(folder))
    return tmp_path, videos, folders, detections


def _frame_of(image: np.ndarray, c: int) -> int:
    """The frame a numbered image (RGB, as a RecordDataset returns it) shows, from its grey level."""
    grey = np.median(image[..., [k for k in range(3) if k != 2 - c]])  # RGB: BGR channel c is 2 - c
    return int(round((grey - 20) / LEVEL))


ARRAYS = ("group", "camera", "rig", "uv", "vis", "centre", "side", "K", "has_K", "R", "t", "extrinsics_known")


@pytest.mark.parametrize("extra", [[], ["--every", "2"], ["--offsets", "0", "0", "1"],
                                   ["--offsets", "0", "2", "0", "--every", "3"]], ids=str)  # fmt: skip
@pytest.mark.parametrize("as_video", [(0, 1, 2), (1,)], ids=["all videos", "camera 2 a video"])
def test_a_video_gives_the_record_set_of_its_frames_as_a_folder(filmed, extra, as_video, capsys):
    tmp_path, videos, folders, detections = filmed
    from_folders = tmp_path / "folders.npz"
    assert main(["data", "records", "multicam", *detections, "--frames", *folders, "--out", str(from_folders),
                 *extra]) == 0  # fmt: skip
    mixed = [videos[c] if c in as_video else folders[c] for c in range(CAMERAS)]
    from_videos = tmp_path / "videos.npz"
    assert main(["data", "records", "multicam", *detections, "--frames", *mixed, "--out", str(from_videos),
                 *extra]) == 0  # fmt: skip
    a, b = open_records(from_folders, multi_view=True), open_records(from_videos, multi_view=True)
    for key in ARRAYS:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key], err_msg=key)
    written = tmp_path / "videos_frames"  # the default: beside --out, named after it
    for i, (path, camera) in enumerate(zip(b.arrays["image"], b.arrays["camera"], strict=True)):
        frame = int(Path(a.arrays["image"][i]).stem)
        if camera in as_video:
            assert (b.root / path) == written / f"cam{camera + 1}" / f"{frame:06d}.jpg"
        else:
            assert b.root / path == a.root / a.arrays["image"][i]
        image, reference = b[i]["image"], a[i]["image"]
        assert image.shape == reference.shape == (H, W, 3)
        assert np.abs(image.astype(int) - reference).mean() < 4.0  # MJPG + JPEG against JPEG
        assert _frame_of(image, int(camera)) == frame  # the video's frame f is frame f
    for c in as_video:  # only the kept views' frames were decoded
        names = {Path(p).name for p, cam in zip(b.arrays["image"], b.arrays["camera"], strict=True) if cam == c}
        assert {p.name for p in (written / f"cam{c + 1}").iterdir()} == names
    kept = [line for line in capsys.readouterr().out.splitlines() if line.startswith("kept ")]
    assert len(kept) == 2 and kept[0] == kept[1]  # the same views kept and dropped, for the same reasons


def test_video_frames_are_skipped_with_grab_not_decoded(filmed, monkeypatch):
    """One sequential pass: every frame up to the last wanted one grabbed once, only the
    wanted ones retrieved (colour-converted and copied)."""
    _, videos, _, _ = filmed
    calls = []

    class Counting:
        def __init__(self, path):
            self.capture = real(path)

        def __getattr__(self, name):
            method = getattr(self.capture, name)
            return lambda *args: (calls.append(name), method(*args))[1]

    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    written = decode_frames(videos[0], 0, [5, 2, 2], Path(videos[0]).parent / "out", length=FRAMES)
    assert [p.name for p in written] == ["000002.jpg", "000005.jpg"]
    assert calls.count("grab") == 6 and calls.count("retrieve") == 2 and "read" not in calls
    assert _frame_of(cv2.imread(str(written[1]))[..., ::-1], 0) == 5


def test_video_frames_go_where_asked_and_the_root_covers_them(filmed):
    tmp_path, videos, folders, detections = filmed
    out = tmp_path / "rs.npz"
    frames = tmp_path / "decoded"
    code = main(["data", "records", "multicam", *detections, "--frames", videos[0], *folders[1:], "--out", str(out),
                 "--video-frames", str(frames), "--images", str(tmp_path)])  # fmt: skip
    assert code == 0
    data = open_records(out, multi_view=True)
    assert data.root == tmp_path
    assert sorted({Path(p).parent.as_posix() for p in data.arrays["image"]}) == ["decoded/cam1", "jpeg/cam2",
                                                                                  "jpeg/cam3"]  # fmt: skip
    assert not (tmp_path / "rs_frames").exists()


@pytest.mark.parametrize("change", ["short", "unreadable", "image", "outside_root"])
def test_a_bad_video_is_one_line_naming_it(filmed, capsys, change):
    tmp_path, videos, folders, detections = filmed
    bad, extra = Path(videos[1]), []
    if change == "short":  # two frames fewer than its detections
        _write_video(bad, [_numbered(1, f) for f in range(FRAMES - 2)])
        message = f"{bad} (camera 2): the video ends after 6 frames (0..5), but its detections list frames up to 7"
    elif change == "unreadable":
        bad = bad.with_suffix(".mp4")
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
        message = f"{bad} (camera 2): not a video that OpenCV can read"
    elif change == "image":
        bad = Path(folders[1]) / "000000.jpg"
        message = f"{bad} (camera 2): an image; --frames takes a frame folder or a video"
    else:
        extra = ["--images", str(tmp_path / "jpeg")]
        message = (f"--video-frames {tmp_path / 'out_frames'}: camera 1's frames ({videos[0]}) would not be under "
                   f"the images' root {tmp_path / 'jpeg'}")  # fmt: skip
    out = tmp_path / "out.npz"
    code = main(["data", "records", "multicam", *detections, "--frames", videos[0], str(bad), folders[2],
                 "--out", str(out), *extra])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    written = tmp_path / "out_frames"  # nothing decoded is left behind
    assert not written.exists() or not any(p.is_file() for p in written.rglob("*"))
