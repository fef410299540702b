"""Training and evaluation on real data sets, through record-set files.

The files are written here in MPII's and learnable-triangulation's Human3.6M formats
(gray images; what is checked is the plumbing: conversion, lazy reading, NaN intrinsics,
images of different sizes, groups), then converted with ``ws3d data records``; and a
rendered video of static people, linked into tracklets by ``ws3d data tracklets``.
"""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from public_formats import multiview_order

from ws3d.camera import project, world_to_camera
from ws3d.checkpoint import save_checkpoint
from ws3d.cli import main
from ws3d.config import load_config
from ws3d.data.poses import make_subject, sample_person
from ws3d.data.records import concat_records, open_records
from ws3d.data.rigs import sample_rig
from ws3d.data.synthetic import SynthConfig, render_group, write_shards
from ws3d.evaluate import predict_dataset
from ws3d.model import PoseNet2p5D, build_model
from ws3d.trainer import build, train

MPII_SIZES = [(120, 160), (100, 90), (150, 150), (120, 160), (90, 130), (110, 100)]  # (H, W) per image
FRAMES, CAMERAS, SIDE = 3, 4, 1000


def _write_mpii(root):
    """annot/train.json (HRNet's MPII form) and images/ of the sizes above."""
    rng = np.random.default_rng(0)
    (root / "annot").mkdir(parents=True)
    (root / "images").mkdir()
    entries = []
    for i, (h, w) in enumerate(MPII_SIZES):
        cv2.imwrite(str(root / "images" / f"{i}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        joints = rng.uniform(10, min(h, w) - 10, (16, 2)).tolist()
        entries.append({"image": f"{i}.jpg", "center": [w / 2, h / 2], "scale": min(h, w) / 250, "joints": joints,
                        "joints_vis": [1] * 16})  # fmt: skip
    (root / "annot" / "train.json").write_text(json.dumps(entries))
    return root / "annot" / "train.json"


def _write_h36m_multiview(root):
    """learnable-triangulation's labels .npy and its image folders: FRAMES groups of
    CAMERAS views, one view missing (an empty box)."""
    rng = np.random.default_rng(1)
    world = np.stack([sample_person(make_subject(i), rng)[0] for i in range(FRAMES)])
    K, R, t = sample_rig("h36m", CAMERAS, world[0], rng)
    names = ["54138969", "55011271", "58860488", "60457274"]
    cameras = np.empty((1, CAMERAS), dtype=[("R", np.float32, (3, 3)), ("t", np.float32, (3, 1)),
                                            ("K", np.float32, (3, 3)), ("dist", np.float32, 5)])  # fmt: skip
    table = np.empty(FRAMES, dtype=[("subject_idx", np.int8), ("action_idx", np.int8), ("frame_idx", np.int16),
                                    ("keypoints", np.float32, (17, 3)),
                                    ("bbox_by_camera_tlbr", np.int16, (CAMERAS, 4))])  # fmt: skip
    for c in range(CAMERAS):
        cameras[0, c] = (R[c], t[c][:, None], K[c], np.zeros(5))
    for f in range(FRAMES):
        boxes = []
        for c in range(CAMERAS):
            uv = project(world_to_camera(world[f], R[c], t[c]), K[c])
            (left, top), (right, bottom) = uv.min(0) - 20, uv.max(0) + 20
            boxes.append([top, left, bottom, right] if (f, c) != (1, 2) else [0, 0, 0, 0])
            # the undistorted frames (learnable-triangulation's undistortion script writes them beside
            # imageSequence), which the labels' pinhole uv match and which ws3d reads by default
            folder = root / "S9" / "Walking-1" / "imageSequence-undistorted" / names[c]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"img_{f + 1:06d}.jpg"), np.full((SIDE, SIDE, 3), 100 + 20 * c, np.uint8))
        table[f] = (0, 0, f, multiview_order(world[f]), np.array(boxes))
    labels = {"subject_names": ["S9"], "camera_names": names, "action_names": ["Walking-1"], "cameras": cameras,
              "table": table}  # fmt: skip
    np.save(root / "labels.npy", labels)
    return root / "labels.npy"


@pytest.fixture(scope="module")
def record_files(tmp_path_factory):
    """(MPII record file, Human3.6M multi-view record file), converted by the CLI."""
    root = tmp_path_factory.mktemp("real")
    mpii_json, labels = _write_mpii(root / "mpii"), _write_h36m_multiview(root / "h36m")
    mpii, h36m = root / "mpii.npz", root / "h36m.npz"
    assert main(["data", "records", "mpii", str(mpii_json), "--out", str(mpii)]) == 0
    assert main(["data", "records", "h36m-multiview", str(labels), "--images", str(root / "h36m"),
                 "--out", str(h36m)]) == 0  # fmt: skip
    return mpii, h36m


def test_record_files_read_their_images_lazily(record_files):
    mpii, h36m = open_records(record_files[0]), open_records(record_files[1], multi_view=True)
    assert len(mpii) == len(MPII_SIZES) and len(h36m) == FRAMES * CAMERAS - 1
    assert [mpii[i]["image"].shape[:2] for i in range(len(mpii))] == MPII_SIZES
    # MPII has no intrinsics: decided when the record set is made, a nominal camera of each
    # person box (focal = the box side, principal point = its centre) and has_K False.
    assert not mpii.arrays["has_K"].any() and h36m.arrays["has_K"].all()
    for K, (cx, cy), side in zip(mpii.arrays["K"], mpii.arrays["centre"], mpii.arrays["side"], strict=True):
        np.testing.assert_allclose(K, [[side, 0, cx], [0, side, cy], [0, 0, 1]], rtol=1e-6)
    assert np.isfinite(h36m.arrays["K"]).all()
    assert h36m.arrays["group"].tolist() == [0] * 4 + [1] * 3 + [2] * 4
    with pytest.raises(ValueError, match="field 'group' is missing"):
        open_records(record_files[0], multi_view=True)


def test_records_cli_errors_are_one_line(record_files, tmp_path, capsys):
    labels = record_files[1].parent / "h36m" / "labels.npy"
    assert main(["data", "records", "h36m-multiview", str(labels), "--out", str(tmp_path / "x.npz")]) == 2
    assert "needs --images" in capsys.readouterr().err
    assert main(["data", "records", "3dhp-train", str(tmp_path), "--sequences", "1-2", "--out", "x.npz"]) == 2
    assert "is not SUBJECT/SEQUENCE" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: not a record-set .npz"):
        open_records(tmp_path / "bad.npz")


def test_concat_records_keeps_groups_apart():
    part = {"image": np.array(["a", "b", "c"]), "group": np.array([0, 0, 1])}
    joined = concat_records([part, part])
    assert joined["group"].tolist() == [0, 0, 1, 2, 2, 3] and joined["image"].tolist() == ["a", "b", "c"] * 2
    with pytest.raises(ValueError, match="different fields"):
        concat_records([part, {"image": np.array(["d"])}])


def test_predict_reports_each_images_size(record_files):
    model = PoseNet2p5D("small", 16).eval()
    pred = predict_dataset(model, open_records(record_files[1]), 64)
    assert pred["image_wh"].tolist() == [[SIDE, SIDE]] * (FRAMES * CAMERAS - 1)
    assert np.isfinite(pred["uv"]).all()


def test_both_stages_train_on_record_files_and_eval_reads_them(record_files, tmp_path, capsys):
    """MPII's NaN intrinsics in the weak stage's 2D half used to stop the lifting (which
    only the paper's objective runs: it needs every image's 3D pose)."""
    mpii, h36m = record_files
    common = ["data.size=64", "data.workers=0", "model.width=16", "train.progress=false", "train.log_every=1",
              f"data.root={tmp_path / 'no-synthetic-data'}", f"data.records_2d={mpii}", "data.images=2",
              "data.eval_images=4", f"data.records_test={h36m}", "train.steps=2"]  # fmt: skip
    first = train(load_config(None, [*common, f"run_dir={tmp_path / 'pre'}"]))
    assert first["step"] == 2 and np.isfinite(first["val"]["mpjpe"])
    weak = [*common, "train.stage=weak", f"train.init={tmp_path / 'pre' / 'last.pt'}", f"data.records_mv={h36m}",
            "data.groups=1", "loss.objective=paper", f"run_dir={tmp_path / 'weak'}"]  # fmt: skip
    before = torch.load(tmp_path / "pre" / "last.pt", weights_only=True)["model"]
    result = train(load_config(None, weak))
    assert result["step"] == 2
    records = [json.loads(line) for line in (tmp_path / "weak" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert len(losses) == 2 and all(np.isfinite(r["loss"]) and np.isfinite(r["l_mc"]) for r in losses)
    after = torch.load(tmp_path / "weak" / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(after[k], before[k]) for k in after)
    with np.load(tmp_path / "weak" / "pseudo_labels.npz") as labels:
        assert labels["vis"].shape == (FRAMES * CAMERAS - 1, 17)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "weak" / "last.pt"), "--data", str(h36m), "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc", "px2d"}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A 2D checkpoint of an untrained small model (64 px crops)."""
    path = tmp_path_factory.mktemp("untrained") / "pre.pt"
    cfg = load_config(None, ["data.size=64", "model.width=16"])
    torch.manual_seed(0)
    save_checkpoint(path, {"model": build_model(cfg).state_dict(), "step": 0, "config": cfg.to_dict()})
    return path


def test_eval_of_a_record_set_without_3d_or_cameras_reports_what_it_can(record_files, untrained, capsys):
    mpii = str(record_files[0])
    assert main(["eval", str(untrained), "--data", mpii, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "no intrinsics: no 3D pose" in printed and "no 3D labels" in printed and "solvable" not in printed
    assert "MPJPE " not in printed and "PCK@150mm" not in printed and "2D error" in printed
    assert f"on {mpii}:" in printed  # no split named for a record file
    assert main(["eval", str(untrained), "--data", mpii, "--json", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert {k for k, v in metrics.items() if v is None} == {"mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc"}
    assert metrics["px2d"] > 0
    assert main(["eval", str(untrained), "--data", mpii, "--split", "mv", "--device", "cpu"]) == 2
    assert "record-set file" in capsys.readouterr().err


def test_pseudo_labels_of_a_rewritten_record_file_are_made_again(record_files, untrained, tmp_path):
    """The cache follows the record file's contents, not its path."""
    h36m = tmp_path / "h36m.npz"
    shutil.copy(record_files[1], h36m)
    args = ["data.size=64", "model.width=16", "data.workers=0", "train.progress=false", "data.images=0",
            "data.groups=1", f"data.records_mv={h36m}", "train.stage=weak", f"train.init={untrained}",
            "data.mv_labels=pseudo"]  # fmt: skip

    def labels(run):
        return build(load_config(None, [*args, f"run_dir={tmp_path / run}"]))[1].multi_view.uv

    first = labels("run")
    with np.load(h36m) as f:
        arrays = dict(f)
    np.savez(h36m, **{**arrays, "centre": arrays["centre"] + 40})  # the crops move: so do the labels
    again = labels("run")
    assert np.array_equal(again, labels("fresh")) and np.abs(again - first).max() > 10


def test_tracklets_of_a_rendered_video_train_the_weak_stage(tmp_path, capsys):
    """A camera orbits two static people (the synthetic orbit rig); in the frames the two
    rendered people cross (each slides 64 px towards the other's side), and the
    "detections" are the true 2D plus noise, one person missing from one frame.
    Tracklets -> a multi-view record set -> 2 weak-stage steps beside synthetic 2D images."""
    video, views = tmp_path / "video", 8
    video.mkdir()
    # No truncated crops: in a video the person drifts slowly through the frame, while a
    # truncated render jumps by a third of the crop between views.
    cfg = SynthConfig("mv", 2 * views, size=64, rig="orbit", truncation=0.0)
    people = [render_group(cfg, g, views, "orbit") for g in (0, 1)]
    rng, frames = np.random.default_rng(0), []
    for f in range(views):
        image = np.zeros((64, 128, 3), np.uint8)
        detected = []
        for p, offset in ((0, round(64 * f / (views - 1))), (1, 64 - round(64 * f / (views - 1)))):
            image[:, offset : offset + 64] = np.maximum(image[:, offset : offset + 64], people[p][f]["image"])
            if (p, f) == (1, 6):
                continue  # a drop-out
            uv = people[p][f]["uv"] + [offset, 0.0] + rng.normal(0, 0.5, (17, 2))
            detected.append(np.concatenate([uv, np.full((17, 1), 0.9)], 1).tolist())
        cv2.imwrite(str(video / f"frame_{f:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        frames.append({"frame": f, "image": f"frame_{f:03d}.png", "people": detected})
    (video / "detections.json").write_text(json.dumps({"frames": frames}))
    out = tmp_path / "tracklets.npz"
    assert main(["data", "tracklets", str(video / "detections.json"), "--out", str(out), "--focal", "150"]) == 0
    records = open_records(out, multi_view=True)
    group, pelvis_u = records.arrays["group"], records.arrays["uv"][:, 0, 0]
    assert sorted(np.bincount(group).tolist()) == [views - 1, views]  # B's tracklet bridges its drop-out
    for g in (0, 1):  # each tracklet is one person: it keeps moving one way through the crossing
        steps = np.diff(pelvis_u[group == g])
        assert (steps > 0).all() or (steps < 0).all(), pelvis_u[group == g]
    a, b = sorted((pelvis_u[group == g] for g in (0, 1)), key=len, reverse=True)  # frames 0-7; 0-5 and 7
    assert a[0] < b[0] - 40 and a[5] > b[5] + 20  # they really crossed
    assert records[0]["image"].shape == (64, 128, 3) and records.arrays["K"][0, 0, 0] == 150

    synthetic = tmp_path / "synthetic"
    for split, n in (("2d", 8), ("test", 4)):
        write_shards(SynthConfig(split, n, size=64), synthetic, workers=1, progress=False)
    common = ["data.size=64", "data.workers=0", "model.width=16", "train.progress=false", "train.log_every=1",
              f"data.root={synthetic}", "data.images=2", "data.eval_images=4", "train.steps=2"]  # fmt: skip
    train(load_config(None, [*common, f"run_dir={tmp_path / 'pre'}"]))
    weak = [*common, "train.stage=weak", f"train.init={tmp_path / 'pre' / 'last.pt'}", f"data.records_mv={out}",
            "data.groups=1", f"run_dir={tmp_path / 'weak'}"]  # fmt: skip
    assert train(load_config(None, weak))["step"] == 2
    logged = [json.loads(line) for line in (tmp_path / "weak" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in logged if "loss" in r]
    assert len(losses) == 2 and all(np.isfinite(r["loss"]) and np.isfinite(r["l_h_mv"]) for r in losses)
