"""Tracklets of static people from per-frame 2D detections (MannequinChallenge-style videos).

A video of people who hold still while the camera moves is a multi-view capture: every
frame in which a person is tracked is another view of the same 3D pose. This module
links detections across frames and turns each tracklet into one multi-view group of a
record set (:func:`tracklet_records`, then ``ws3d.data.records.save_records``), which
``data.records_mv`` trains on.

Detections file (either form; joints in the 17-joint Human3.6M order, pixels):

- JSON: ``{"frames": [{"frame": 0, "image": "optional/path.jpg",
  "people": [[[u, v, confidence] x 17], ...]}, ...]}``
- npz: ``frame`` (D,) int and ``keypoints`` (D, 17, 3), one row per detection
  (optionally ``image`` (D,) str).

A frame listed more than once (JSON entries, npz rows) keeps the detections of every
listing, in file order, in both forms.

Rules (from the paper's MannequinChallenge recipe): a pose is dropped when more than
half of its joints, or its neck or pelvis, have confidence below 0.5; poses are linked
frame to frame by greedy matching on pose similarity; tracklets shorter than 5 frames
are dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ws3d.camera import default_focal, intrinsics
from ws3d.data.records import box_of
from ws3d.data.schema import require
from ws3d.errors import InputError, MissingFileError
from ws3d.skeleton import NECK, NUM_JOINTS, ROOT


@dataclass
class Tracklet:
    """One person followed through a video: frame numbers and (17, 3) [u, v, confidence] poses."""

    frames: list[int] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _check_pose_array(poses: np.ndarray, where: str) -> np.ndarray:
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_JOINTS, 3):
        raise InputError(f"{where}: expected poses of shape (people, {NUM_JOINTS}, 3), got {poses.shape}")
    if not np.isfinite(poses).all():
        raise InputError(f"{where}: keypoints contain NaN or inf")
    return poses


def _add_detections(by_frame: dict[int, list], frame: int, poses, image: str, where: str) -> None:
    """Append ``poses`` (P, 17, 3) to ``frame``'s detections in ``by_frame`` ({frame: [poses, image]}).

    A frame listed again adds to what was read before, never replaces it: a detector that
    writes one listing per person, or a file concatenated from two runs, loses nothing. An
    empty image name means "not given"; two different names for one frame are an error,
    since the detections could not all belong to one image.
    """
    listed = by_frame.setdefault(frame, [[], image])
    if image and listed[1] and image != listed[1]:
        raise InputError(f"{where}: frame {frame} is listed with two images, {listed[1]!r} and {image!r}")
    listed[0].extend(poses)
    listed[1] = listed[1] or image


def load_detections(path: str | os.PathLike) -> list[tuple[int, np.ndarray, str]]:
    """Read a detections file. Returns [(frame, poses (P, 17, 3), image name or "")] sorted by frame;
    a frame listed more than once has the poses of all its listings, in file order."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    by_frame: dict[int, list] = {}
    if path.suffix == ".json":
        try:
            frames = json.loads(path.read_text())["frames"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InputError(f"{path}: not a detections JSON with a 'frames' list ({error})") from None
        for k, entry in enumerate(frames):
            people = entry.get("people") or np.zeros((0, NUM_JOINTS, 3))
            try:
                people = np.asarray(people, np.float64)
            except ValueError:  # ragged lists
                raise InputError(f"{path}: frames[{k}].people is not a list of (17, 3) poses") from None
            poses = _check_pose_array(people, f"{path}: frames[{k}].people")
            _add_detections(by_frame, int(entry["frame"]), poses, str(entry.get("image", "")), f"{path}: frames[{k}]")
    elif path.suffix == ".npz":
        with np.load(path) as data:
            require(data, {"frame": None, "keypoints": None}, path)
            frame = data["frame"].astype(np.int64)
            poses = _check_pose_array(data["keypoints"], f"{path}: field 'keypoints'")
            images = data["image"].astype(str) if "image" in data else np.full(len(frame), "")
        if len(frame) != len(poses):
            raise InputError(f"{path}: field 'frame' has {len(frame)} rows but 'keypoints' has {len(poses)}")
        for k, (f, pose, image) in enumerate(zip(frame.tolist(), poses, images, strict=True)):
            _add_detections(by_frame, f, [pose], str(image), f"{path}: row {k}")
    else:
        raise InputError(f"{path}: expected a .json or .npz detections file")
    return [(f, np.asarray(p).reshape(-1, NUM_JOINTS, 3), image) for f, (p, image) in sorted(by_frame.items())]


def keep_pose(pose: np.ndarray, threshold: float = 0.5) -> bool:
    """False when more than half of the joints, or the neck or the pelvis, are below ``threshold``."""
    conf = pose[:, 2]
    return (conf < threshold).sum() <= NUM_JOINTS / 2 and conf[NECK] >= threshold and conf[ROOT] >= threshold


def pose_distance(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> float:
    """Dissimilarity of two (17, 3) poses in torso lengths: pelvis displacement plus the mean
    distance of the pelvis-centred joints both poses are confident about. The shape term
    keeps two people apart where their paths cross."""
    scale = 0.5 * (np.linalg.norm(a[NECK, :2] - a[ROOT, :2]) + np.linalg.norm(b[NECK, :2] - b[ROOT, :2]))
    scale = max(scale, 1e-6)
    both = (a[:, 2] >= threshold) & (b[:, 2] >= threshold)
    shift = np.linalg.norm(a[ROOT, :2] - b[ROOT, :2]) / scale
    shape = np.linalg.norm((a[both, :2] - a[ROOT, :2]) - (b[both, :2] - b[ROOT, :2]), axis=1).mean() / scale
    return float(shift + shape)


def _predicted(tracklet: Tracklet, frame: int) -> np.ndarray:
    """The tracklet's last pose moved on to ``frame`` at its last pelvis velocity (the
    last pose itself for a tracklet of one frame)."""
    last = tracklet.poses[-1]
    if len(tracklet.frames) < 2:
        return last
    velocity = (last[ROOT, :2] - tracklet.poses[-2][ROOT, :2]) / (tracklet.frames[-1] - tracklet.frames[-2])
    moved = last.copy()
    moved[:, :2] += velocity * (frame - tracklet.frames[-1])
    return moved


def build_tracklets(frames: list[tuple[int, np.ndarray, str]], min_length: int = 5, max_distance: float = 1.0,
                    max_gap: int = 3, threshold: float = 0.5) -> list[Tracklet]:  # fmt: skip
    """Link detections into tracklets.

    Args:
        frames: [(frame, poses (P, 17, 3), image)] in frame order (:func:`load_detections`).
        min_length: tracklets with fewer frames are dropped.
        max_distance: the largest :func:`pose_distance` that still links two poses.
        max_gap: a tracklet survives this many frames without a detection (drop-outs).
        threshold: confidence below which a joint counts as missing.

    Greedy matching: in each frame, the (tracklet, pose) pair with the smallest distance
    is linked first, then the next smallest among the rest, and so on; a pose left over
    starts a new tracklet. A tracklet is compared at the position it would have now,
    moving on at its last pelvis velocity (per frame): across a gap, where two people
    cross, its last seen position is where the other person is.
    """
    if min_length < 1:
        raise InputError(f"min_length must be at least 1, got {min_length}")
    tracklets: list[Tracklet] = []
    for frame, poses, image in frames:
        kept = [p for p in poses if keep_pose(p, threshold)]
        alive = [t for t in tracklets if 0 < frame - t.frames[-1] <= max_gap]
        costs = sorted(
            (pose_distance(_predicted(t, frame), p, threshold), ti, pi)
            for ti, t in enumerate(alive)
            for pi, p in enumerate(kept)
        )
        used_t, used_p = set(), set()
        for cost, ti, pi in costs:
            if cost > max_distance:
                break
            if ti in used_t or pi in used_p:
                continue
            used_t.add(ti)
            used_p.add(pi)
            alive[ti].frames.append(frame)
            alive[ti].poses.append(kept[pi])
            alive[ti].images.append(image)
        for pi, p in enumerate(kept):
            if pi not in used_p:
                tracklets.append(Tracklet([frame], [p], [image]))
    return [t for t in tracklets if len(t.frames) >= min_length]


def tracklet_records(tracklets: list[Tracklet], images: str | os.PathLike, focal: float | None = None,
                     threshold: float = 0.5) -> dict[str, np.ndarray]:  # fmt: skip
    """The tracklets as a multi-view record set (:mod:`ws3d.data.records`): one group per
    tracklet, one view per frame.

    Each view keeps its image path (relative to ``images``), uv, and vis = confidence >=
    ``threshold``; its person box is :func:`ws3d.data.transforms.person_box` of the visible
    joints (they span 75 % of it, 10 % more for skin: the crop rule of every data set);
    K is the video's pinhole camera: principal point at the image centre (the resolution
    is read from the first frame's image) and ``focal`` px (default
    :func:`ws3d.camera.default_focal`, as ws3d predict assumes), has_K True since it models
    the whole image, unlike a per-box stand-in. No 3D: joints_cam NaN, R = I and t = 0
    with extrinsics_known False (the camera moved).
    """
    rows = [(g, im, p) for g, t in enumerate(tracklets) for im, p in zip(t.images, t.poses, strict=True)]
    if not rows:
        raise InputError("no tracklets to convert (every one was shorter than the minimum length?)")
    if not all(im for _, im, _ in rows):
        raise InputError("the detections name no image for some frames: a record set needs each view's image path")
    first = Path(images) / rows[0][1]
    frame = cv2.imread(str(first), cv2.IMREAD_UNCHANGED) if first.is_file() else None
    if frame is None:
        raise MissingFileError(f"{first}: missing or not an image (the video's resolution is read from it)")
    h, w = frame.shape[:2]
    f = focal if focal is not None else default_focal(w, h)
    if not f > 0:
        raise InputError(f"focal must be a positive number of pixels, got {f}")
    poses = np.stack([p for _, _, p in rows])
    uv, vis = poses[..., :2], (poses[..., 2] >= threshold).astype(np.uint8)
    centre, side = box_of(uv, vis)
    n = len(rows)
    return {
        "image": np.array([im for _, im, _ in rows], dtype=str),
        "uv": uv.astype(np.float32),
        "vis": vis,
        "centre": centre,
        "side": side,
        "K": np.broadcast_to(intrinsics(f, f, (w - 1) / 2, (h - 1) / 2), (n, 3, 3)).astype(np.float32),
        "has_K": np.ones(n, bool),
        "joints_cam": np.full((n, NUM_JOINTS, 3), np.nan, np.float32),
        "group": np.array([g for g, _, _ in rows], np.int64),
        "R": np.broadcast_to(np.eye(3), (n, 3, 3)).astype(np.float32),
        "t": np.zeros((n, 3), np.float32),
        "extrinsics_known": np.zeros(n, bool),
    }
