"""A user's studio in miniature (issue 32's worked example), through the commands users run.

Footage: a synthetic studio (ws3d.data.studio's rig of 3 raised cameras, a person walking
through the capture volume) rendered at a fifth of its 1920x1080 frames by ws3d's person
renderer, before a fixed backdrop per camera. Camera 1 is a video (MJPG .avi), cameras 2
and 3 are folders of JPEG frames; each camera's detections are what OpenPose writes for it
(one BODY_25 JSON per frame, `<video>_<frame:012d>_keypoints.json`, keypoints placed by
their OpenPose names through tests/test_calibrate_cli.py's helper): the true joints with
half a pixel of noise, undetected where out of the frame.

Path: `ws3d calibrate` (nominal intrinsics, refined) -> the rig as a TOML, checked against
the true rig -> `ws3d data records multicam --intrinsics` that TOML (K, R, t into the
record set) -> `ws3d train` of the weak stage on the record set, 2 steps of a tiny model,
its losses finite.
"""

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.test_calibrate_cli import _body_25
from ws3d.camera import project, world_to_camera
from ws3d.checkpoint import save_checkpoint
from ws3d.cli import main
from ws3d.config import load_config
from ws3d.data.calibration_files import read_calibration
from ws3d.data.poses import make_subject
from ws3d.data.records import open_records
from ws3d.data.render import background, draw_person
from ws3d.data.studio import FRAME_SIZE, sample_studio, studio_motion
from ws3d.model import build_model
from ws3d.rig_calibration import compare_rigs

SCALE = 0.2  # of the studio's 1920x1080 frames: 384x216
W, H = (round(SCALE * side) for side in FRAME_SIZE)
CAMERAS, FRAMES, EVERY = 3, 60, 4


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors, shared cores: OpenMP threads waiting on each other cost more than they gain."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _film(root: Path):
    """Render the studio; write camera 1 as a video, the others as frame folders, and every
    camera's OpenPose JSON. Returns (frames per camera, detections per camera, true R, t)."""
    rng = np.random.default_rng(3)
    K, R, t = sample_studio(rng, CAMERAS)
    K = np.diag([SCALE, SCALE, 1.0]) @ K
    joints = studio_motion(rng, FRAMES, subject_frames=FRAMES)
    subject = make_subject(0)
    light = np.array([0.3, -1.0, 0.2]) / np.linalg.norm([0.3, -1.0, 0.2])
    frames, detections = [], []
    for c in range(CAMERAS):
        backdrop = background(W, np.random.default_rng([7, c]))[:H]  # the studio as this camera sees it
        json_dir = root / "openpose" / f"cam{c + 1}_json"
        json_dir.mkdir(parents=True)
        if c == 0:
            path = root / "videos" / f"cam{c + 1}.avi"
            path.parent.mkdir()
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H))
            assert writer.isOpened()
        else:
            path = root / "frames" / f"cam{c + 1}"
            path.mkdir(parents=True)
        for f in range(FRAMES):
            camera_joints = world_to_camera(joints[f], R[c], t[c])
            image = backdrop.copy()
            draw_person(image, camera_joints, K[c], subject, R[c] @ light, 0.35)
            bgr = cv2.cvtColor(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
            if c == 0:
                writer.write(bgr)
            else:
                cv2.imwrite(str(path / f"{f:06d}.jpg"), bgr)
            uv = project(camera_joints, K[c]) + rng.normal(0, 0.5, (17, 2))
            seen = (uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)
            person = np.concatenate([np.where(seen[:, None], uv, 0.0), np.where(seen, 0.9, 0.0)[:, None]], 1)
            keypoints = {"person_id": [-1], "pose_keypoints_2d": _body_25(person).ravel().tolist(),
                         **{f"{part}_keypoints_2d": [] for part in ("face", "hand_left", "hand_right")}}  # fmt: skip
            text = json.dumps({"version": 1.3, "people": [keypoints]})
            (json_dir / f"cam{c + 1}_{f:012d}_keypoints.json").write_text(text)
        if c == 0:
            writer.release()
        frames.append(str(path))
        detections.append(str(json_dir))
    return frames, detections, R, t


def _table(printed: str) -> dict[str, list[str]]:
    """`ws3d calibrate`'s table: each camera's row, split into cells, by the camera's name."""
    rows = [line.split() for line in printed.splitlines()]
    return {row[0]: row for row in rows if row and row[0].startswith("cam_")}


def test_videos_and_openpose_json_to_a_calibrated_rig_a_record_set_and_two_weak_steps(tmp_path, capsys):
    started = time.perf_counter()
    frames, detections, R, t = _film(tmp_path)

    rig = tmp_path / "rig.toml"
    assert main(["calibrate", *detections, "--out", str(rig), "--size", str(W), str(H)]) == 0
    table = _table(capsys.readouterr().out)
    assert sorted(table) == ["cam_1", "cam_2", "cam_3"]
    assert all(float(row[1]) < 2.0 for row in table.values()), table  # reprojection error, px
    cameras = read_calibration(rig)
    rotation, baseline, _ = (e.numpy() for e in compare_rigs(np.stack([cam.R for cam in cameras]),
                                                             np.stack([cam.t for cam in cameras]), R, t))  # fmt: skip
    assert rotation.max() < 3.0 and baseline.max() < 5.0, (rotation, baseline)  # degrees

    records = tmp_path / "records" / "studio.npz"
    assert main(["data", "records", "multicam", *detections, "--frames", *frames, "--out", str(records),
                 "--intrinsics", str(rig), "--every", str(EVERY)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"kept {CAMERAS * FRAMES // EVERY} views in {FRAMES // EVERY} groups" in printed, printed
    assert f"decoded {FRAMES // EVERY} frames of the videos into {tmp_path / 'records' / 'studio_frames'}" in printed
    data = open_records(records, multi_view=True)
    assert data.arrays["extrinsics_known"].all()
    assert {Path(p).parts[0] for p in data.arrays["image"]} == {"records", "frames"}  # cam1's frames beside it
    assert len(list((tmp_path / "records" / "studio_frames" / "cam1").iterdir())) == FRAMES // EVERY
    assert data[0]["image"].shape == (H, W, 3)

    # The 2D model to start from: a user's is a 2D-pretrained checkpoint; here an untrained one stands in.
    tiny = ["data.size=64", "model.width=16", "data.groups=2", "data.workers=0", "data.eval_images=0",
            "train.steps=2", "train.log_every=1", "train.progress=false"]  # fmt: skip
    init = tmp_path / "pretrain2d.pt"
    torch.manual_seed(0)
    two_d = load_config(None, tiny)
    save_checkpoint(init, {"model": build_model(two_d).state_dict(), "step": 0, "config": two_d.to_dict()})
    config = tmp_path / "studio_weak.yaml"
    config.write_text(f"run_dir: {tmp_path / 'runs' / 'weak'}\n"
                      f"data: {{records_mv: {records}, images: 0, mv_labels: given, rotations: known}}\n"
                      f"train: {{stage: weak, init: {init}}}\n")  # fmt: skip
    assert main(["train", str(config), *tiny]) == 0
    logged = [json.loads(line) for line in (tmp_path / "runs" / "weak" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in logged if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["l_h_mv"]) and np.isfinite(r["l_z_mv"]) for r in losses)
    assert (tmp_path / "runs" / "weak" / "last.pt").is_file()
    print(f"studio miniature: {time.perf_counter() - started:.1f} s")
