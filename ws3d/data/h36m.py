"""Human3.6M in its two common preprocessed forms.

1. MMPose (``tools/dataset_converters/preprocess_h36m.py``): ``h36m_{train,test}.npz`` with
   ``imgname`` (N,), ``center`` (N, 2), ``scale`` (N,) (box side / 200 px), ``part``
   (N, 17, 3) pixels + visibility, ``S`` (N, 17, 4) camera coordinates in metres + 1;
   and ``cameras.pkl``: {(subject, camera id): {"R", "T" (metres), "f", "c", "k", "p", ...}}
   with x_cam = R^T (X - T). Joints are already in the 17-joint order. ``part`` includes
   the lens distortion (k, p in cameras.pkl), so K x_cam differs from it by up to ~3 px;
   ws3d keeps ``part`` as uv (what the images show) and does not undistort.
2. The multi-view labels .npy of learnable-triangulation
   (``human36m-multiview-labels-GTbboxes.npy``): a dict with ``subject_names``,
   ``camera_names``, ``action_names``, ``cameras`` (subjects x cameras; R, t (mm), K,
   dist) and ``table`` (subject_idx, action_idx, frame_idx, ``keypoints`` (17, 3) world mm
   in that project's MPII-like order, ``bbox_by_camera_tlbr`` (cameras, 4)).

Both return the record sets of :mod:`ws3d.data.records`.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np

from ws3d.camera import intrinsics, project, world_to_camera
from ws3d.data.records import joint_map, remap_joints, require_file
from ws3d.data.schema import require
from ws3d.errors import InputError, read_input

# learnable-triangulation's joint order (ws3d names: "neck" is the thorax, "head" the head top).
MULTIVIEW_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "neck", "head",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist", "nose",
)  # fmt: skip
MULTIVIEW_TO_WS3D = joint_map(MULTIVIEW_JOINTS)
_CAMERA_IN_NAME = re.compile(r"\.(\w+?)_\d+\.\w+$")  # ".../S1_Directions_1.54138969_000001.jpg"


def load_mmpose(npz_path: str | os.PathLike, cameras_path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read an MMPose ``h36m_{split}.npz`` and its ``cameras.pkl``.

    Args:
        npz_path: the annotation file.
        cameras_path: default: ``cameras.pkl`` next to the file or one directory up
            (MMPose keeps it in ``annotation_body3d/`` and the npz in ``annotation_body3d/fps10/``).

    Views of one frame (same subject, action and frame, different camera) share a
    ``group``; R, t are the calibrated extrinsics (``extrinsics_known`` True). The
    calibration is per subject, so each subject's four cameras are a ``rig``, and
    ``camera`` is the camera id's place among the file's sorted ids.
    """
    npz_path = require_file(Path(npz_path))
    if cameras_path is None:
        near = [npz_path.parent / "cameras.pkl", npz_path.parent.parent / "cameras.pkl"]
        cameras_path = next((p for p in near if p.is_file()), near[0])
    cameras_path = require_file(Path(cameras_path))
    with read_input(npz_path, np.load, "MMPose .npz") as data:
        require(data, {"imgname": (), "center": (2,), "scale": (), "part": (17, 3), "S": (17, 4)}, npz_path)
        ann = {k: data[k] for k in ("imgname", "center", "scale", "part", "S")}
    n = len(ann["imgname"])
    for key in ("center", "scale", "part", "S"):
        if len(ann[key]) != n:
            raise InputError(f"{npz_path}: field {key!r} has {len(ann[key])} rows but 'imgname' has {n}")
    cameras = read_input(cameras_path, lambda p: pickle.loads(p.read_bytes()), "cameras pickle")
    K, R, t, groups = np.zeros((n, 3, 3)), np.zeros((n, 3, 3)), np.zeros((n, 3)), {}
    group, rig, camera = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    subjects = sorted({s for s, _ in cameras})
    camera_ids = sorted({c for _, c in cameras})
    for i, name in enumerate(ann["imgname"].astype(str)):
        match = _CAMERA_IN_NAME.search(name)
        if match is None:
            raise InputError(
                f"{npz_path}: imgname[{i}] = {name!r} does not name a camera ('<seq>.<camera>_<frame>.jpg')"
            )
        key = (name.split("/")[0], match.group(1))
        if key not in cameras:
            raise InputError(f"{cameras_path}: no camera {key} (needed by imgname[{i}] = {name!r})")
        cam = cameras[key]
        f, c = np.asarray(cam["f"], np.float64).ravel(), np.asarray(cam["c"], np.float64).ravel()
        K[i] = intrinsics(f[0], f[1], c[0], c[1])
        R_world = np.asarray(cam["R"], np.float64)
        R[i] = R_world.T
        t[i] = -R_world.T @ (np.asarray(cam["T"], np.float64).ravel() * 1000.0)
        frame_key = name.replace(f".{match.group(1)}", "").rsplit("/", 1)[-1]
        group[i] = groups.setdefault(frame_key, len(groups))
        rig[i], camera[i] = subjects.index(key[0]), camera_ids.index(key[1])  # the calibration is per subject
    return {
        "image": ann["imgname"].astype(str),
        "uv": ann["part"][..., :2].astype(np.float32),
        "vis": (ann["part"][..., 2] > 0).astype(np.uint8),
        "centre": ann["center"].astype(np.float32),
        "side": (ann["scale"] * 200.0).astype(np.float32),
        "K": K.astype(np.float32),
        "joints_cam": (ann["S"][..., :3] * 1000.0).astype(np.float32),
        "group": group,
        "rig": rig,
        "camera": camera,
        "R": R.astype(np.float32),
        "t": t.astype(np.float32),
        "extrinsics_known": np.ones(n, bool),
    }


MULTIVIEW_IMAGE_FOLDER = "imageSequence-undistorted"  # that project's undistorted frames
# The factor the labelled (tight) box is enlarged by. learnable-triangulation's dataset class
# defaults to scale_bbox = 1.5, but its shipped Human3.6M configs set 1.0; ws3d keeps 1.5
# because it fits ws3d's own crops, in which the synthetic people span ~68 % of the crop.
MULTIVIEW_BOX_MARGIN = 1.5


def load_multiview_labels(path: str | os.PathLike, image_folder: str = MULTIVIEW_IMAGE_FOLDER,
                          box_margin: float = MULTIVIEW_BOX_MARGIN) -> dict[str, np.ndarray]:  # fmt: skip
    """Read learnable-triangulation's Human3.6M multi-view labels (.npy).

    One group per table row; one view per camera with a non-empty box; each subject's
    cameras a rig (the calibration is per subject). Image paths follow
    that project's layout ``S1/Directions-1/{image_folder}/54138969/img_000001.jpg``. uv is
    the pinhole projection of the labels' 3D joints, which matches the *undistorted*
    frames (``imageSequence-undistorted``, made by that project's undistortion script), so
    that is the default folder; ``imageSequence`` holds the distorted originals, off by a
    few pixels. The labels' boxes are tight person boxes: the square around each is
    enlarged ``box_margin`` times, so that a crop (with the +-20 % scale augmentation)
    does not cut limbs off.

    Args:
        path: the labels .npy.
        image_folder: the frames' folder in each action.
        box_margin: the side of the square box / the longer side of the labelled box
            (default :data:`MULTIVIEW_BOX_MARGIN`, 1.5, which says why; that project's
            shipped configs crop with 1.0).

    Raises:
        InputError: ``box_margin`` is not a positive number, or the file is malformed.
    """
    if not (np.isfinite(box_margin) and box_margin > 0):
        raise InputError(
            f"box_margin must be a positive factor (square box side / labelled box's longer side), got {box_margin}"
        )
    path = require_file(Path(path))
    labels = read_input(path, lambda p: np.load(p, allow_pickle=True).item(), "multi-view labels .npy dict")
    require(labels, dict.fromkeys(("subject_names", "camera_names", "action_names", "cameras", "table")), path)
    subjects, camera_names, actions = labels["subject_names"], labels["camera_names"], labels["action_names"]
    cameras, table = labels["cameras"], labels["table"]
    if cameras.shape != (len(subjects), len(camera_names)):
        raise InputError(
            f"{path}: field 'cameras' has shape {cameras.shape}, expected (subjects, cameras) = "
            f"({len(subjects)}, {len(camera_names)})"
        )
    require({n: table[n] for n in table.dtype.names}, {"keypoints": (17, 3), "bbox_by_camera_tlbr": (None, 4)}, path)
    if table["bbox_by_camera_tlbr"].shape[1] != len(camera_names):
        raise InputError(
            f"{path}: field 'table.bbox_by_camera_tlbr' has {table['bbox_by_camera_tlbr'].shape[1]} cameras "
            f"but 'camera_names' lists {len(camera_names)}"
        )
    rows = {k: [] for k in ("image", "uv", "centre", "side", "K", "joints_cam", "group", "rig", "camera", "R", "t")}
    for g, shot in enumerate(table):
        world, _ = remap_joints(shot["keypoints"].astype(np.float64), MULTIVIEW_TO_WS3D)
        for c, camera in enumerate(camera_names):
            top, left, bottom, right = shot["bbox_by_camera_tlbr"][c].astype(np.float64)
            if bottom - top <= 0:  # that project's convention for a missing view
                continue
            cam = cameras[shot["subject_idx"], c]
            R, t, K = cam["R"].astype(np.float64), cam["t"].astype(np.float64).ravel(), cam["K"].astype(np.float64)
            joints_cam = world_to_camera(world, R, t)
            subject, action = subjects[shot["subject_idx"]], actions[shot["action_idx"]]
            frame = int(shot["frame_idx"]) + 1
            rows["image"].append(f"{subject}/{action}/{image_folder}/{camera}/img_{frame:06d}.jpg")
            rows["uv"].append(project(joints_cam, K))
            rows["centre"].append([(left + right) / 2, (top + bottom) / 2])
            rows["side"].append(box_margin * max(right - left, bottom - top))
            rows["K"].append(K)
            rows["joints_cam"].append(joints_cam)
            rows["group"].append(g)
            rows["rig"].append(int(shot["subject_idx"]))  # the calibration is per subject
            rows["camera"].append(c)
            rows["R"].append(R)
            rows["t"].append(t)
    n = len(rows["image"])
    out = {k: np.asarray(v) for k, v in rows.items()}
    for key in ("uv", "centre", "side", "K", "joints_cam", "R", "t"):
        out[key] = out[key].astype(np.float32).reshape((n,) + out[key].shape[1:])
    out["vis"] = np.ones((n, 17), np.uint8)
    out["extrinsics_known"] = np.ones(n, bool)
    return out
