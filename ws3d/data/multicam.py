"""A multi-view record set from a synchronised studio capture (``ws3d data records multicam``).

Input: per camera, in camera order, a folder of frames (images named with a frame number:
the last run of digits in the file name, ``cam1/000012.jpg`` -> 12) and a detections path
in any format of :mod:`ws3d.data.detections`. Output: a record set
(:mod:`ws3d.data.records`) with one group per moment, the cameras' views of that moment,
which ``data.records_mv`` trains on.

Rules:

- Time, people and joints as :func:`ws3d.calibrate.read_views` reads them: camera c's
  frame f is the moment ``f + offsets[c]``; rows every ``every``-th moment from the first
  moment that two cameras share to the last; per frame and camera, the most confident
  person; vis = 1 for joints at or above ``threshold`` confidence.
- A view (camera c at a moment) is kept when the camera has a person there with at least
  2 visible joints (the person box needs them) and its frame's image exists; a group is
  kept when at least 2 of its views are. Every view and group left out is counted, by
  reason, in :attr:`MulticamRecords.dropped`.
- ``rig`` is 0 for the whole set (the cameras stay put), ``camera`` is the camera's index
  (0-based, in the order given).
- Intrinsics: from a calibration file (its cameras matched to the given cameras by
  order): K from it, the 2D joints undistorted with its distortion
  (:func:`ws3d.data.calibration_files.undistort_points`). The images themselves stay
  distorted: uv and K describe an ideal pinhole camera, the pixels the real lens, so a
  crop of a strongly distorted image is only approximately consistent with its uv near
  the image border. Its extrinsics are stored as R and t, with ``extrinsics_known`` True,
  when the file gives any (some camera's R is not I or t not 0); else R = I, t = 0 and
  ``extrinsics_known`` False. Without a file: the nominal camera of
  :func:`ws3d.camera.default_focal` (or ``focal``) with the principal point at the image
  centre, has_K True, R = I, t = 0, ``extrinsics_known`` False.
- Each camera's image size is read from its first frame; a calibration file's size must
  match it.
- No 3D: ``joints_cam`` NaN.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ws3d.calibrate import DEFAULT_THRESHOLD, read_views
from ws3d.camera import default_focal, intrinsics
from ws3d.data.calibration_files import read_calibration, undistort_points
from ws3d.data.detections import _frame_number
from ws3d.data.records import box_of
from ws3d.errors import InputError, MissingFileError
from ws3d.skeleton import NUM_JOINTS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class MulticamRecords:
    """What :func:`multicam_records` made.

    Attributes:
        records: the record set (image paths relative to ``root``).
        root: the folder the image paths are relative to.
        groups: groups kept.
        dropped: {reason: count} of the views and groups left out.
    """

    records: dict[str, np.ndarray]
    root: Path
    groups: int
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: views and groups kept, and what was dropped and why."""
        views = len(self.records["image"])
        cams = np.bincount(self.records["camera"]).tolist()
        dropped = "; ".join(f"{n} {why}" for why, n in self.dropped.items() if n) or "nothing"
        return f"kept {views} views in {self.groups} groups (views per camera {cams}); dropped: {dropped}"


def frame_images(folder: str | os.PathLike, camera: int) -> dict[int, Path]:
    """{frame number: image path} of a frame folder (the last run of digits in each image's
    name). InputError for a missing folder, one without images, or two images of one frame."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(f"{folder} (camera {camera + 1}): no such frame folder")
    frames: dict[int, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        number = _frame_number(path.name)
        if number is None:
            raise InputError(f"{path} (camera {camera + 1}): no frame number in the image's name")
        if number in frames:
            raise InputError(f"{folder} (camera {camera + 1}): two images of frame {number}: "
                             f"{frames[number].name} and {path.name}")  # fmt: skip
        frames[number] = path
    if not frames:
        raise InputError(f"{folder} (camera {camera + 1}): no images ({', '.join(IMAGE_SUFFIXES)})")
    return frames


def _image_size(path: Path, camera: int) -> tuple[int, int]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"{path} (camera {camera + 1}): not an image")
    return image.shape[1], image.shape[0]


def multicam_records(detections: list[str | os.PathLike], frames: list[str | os.PathLike], *,
                     root: str | os.PathLike | None = None, intrinsics_file: str | os.PathLike | None = None,
                     focal: float | None = None, format: str | None = None, order: str | None = None,
                     offsets: list[int] | None = None, every: int = 1,
                     threshold: float = DEFAULT_THRESHOLD) -> MulticamRecords:  # fmt: skip
    """A multi-view record set from per-camera frame folders and detections (module docstring).

    Args:
        detections: C >= 2 detections paths, in camera order.
        frames: C frame folders, in the same order.
        root: the folder the image paths are relative to (default: the frame folders'
            common parent); every frame folder must lie under it.
        intrinsics_file: a calibration file of the same C cameras in the same order.
        focal: without ``intrinsics_file``, the nominal focal length in px.
        format, order, offsets, every, threshold: see :func:`ws3d.calibrate.read_views`.

    Raises:
        InputError: a count of frame folders or calibrated cameras that differs from the
            detections', a bad folder or image, an image size that differs from the
            calibration's, no group of 2 views left, or what read_views raises.
    """
    C = len(detections)
    if len(frames) != C:
        raise InputError(f"--frames: {len(frames)} folders for {C} detections paths (one per camera, same order)")
    if intrinsics_file is not None and focal is not None:
        raise InputError("--focal is for nominal intrinsics; --intrinsics gives every camera's K")
    if focal is not None and not focal > 0:
        raise InputError(f"--focal must be positive, got {focal}")
    images = [frame_images(folder, c) for c, folder in enumerate(frames)]
    folders = [Path(f).resolve() for f in frames]
    root = Path(root).resolve() if root is not None else Path(os.path.commonpath([f.parent for f in folders]))
    for c, folder in enumerate(folders):
        if not folder.is_relative_to(root):
            raise InputError(f"{frames[c]} (camera {c + 1}): not under the images' root {root}")
    sizes = [_image_size(im[min(im)], c) for c, im in enumerate(images)]
    given = None
    if intrinsics_file is not None:
        given = read_calibration(intrinsics_file)
        if len(given) != C:
            raise InputError(f"{intrinsics_file}: {len(given)} cameras, but {C} detections paths were given "
                             "(one per camera, in the file's order)")  # fmt: skip
        for c, cam in enumerate(given):
            if cam.size is not None and tuple(cam.size) != sizes[c]:
                raise InputError(f"{intrinsics_file}: camera {cam.name!r} is {cam.size[0]}x{cam.size[1]} px, but "
                                 f"camera {c + 1}'s frames ({frames[c]}) are {sizes[c][0]}x{sizes[c][1]}")  # fmt: skip
        K = np.stack([cam.K for cam in given])
        R = np.stack([cam.R for cam in given])
        t = np.stack([cam.t for cam in given])
        known = not (np.allclose(R, np.eye(3)) and np.allclose(t, 0))
    else:
        K = np.stack([intrinsics(f, f, (w - 1) / 2, (h - 1) / 2)
                      for w, h in sizes for f in [focal or default_focal(w, h)]])  # fmt: skip
        R, t, known = np.broadcast_to(np.eye(3), (C, 3, 3)), np.zeros((C, 3)), False
    views = read_views(detections, format=format, order=order, offsets=offsets, every=every, threshold=threshold,
                       sizes=sizes)  # fmt: skip
    dropped: Counter[str] = Counter()
    rows = []  # (group, camera, image, uv, vis)
    group = 0
    for row, moment in enumerate(views.times.tolist()):
        kept = []
        for c in range(C):
            vis = views.w[row, c] > 0
            if vis.sum() < 2:
                dropped["views without a person with 2 confident joints"] += 1
                continue
            image = images[c].get(moment - int(views.offsets[c]))
            if image is None:
                dropped[f"views without an image (camera {c + 1})"] += 1
                continue
            uv = views.uv[row, c].copy()
            if given is not None:
                uv[vis] = undistort_points(uv[vis], given[c])
            kept.append((c, image, uv, vis))
        if len(kept) < 2:
            dropped["groups with fewer than 2 views"] += 1
            dropped["views in those groups"] += len(kept)
            continue
        rows += [(group, c, image, uv, vis) for c, image, uv, vis in kept]
        group += 1
    if not rows:
        raise InputError(f"no moment with 2 or more cameras' views left ({_reasons(dropped)}): check --frames "
                         f"({' '.join(map(str, frames))}) against the detections and --offsets")  # fmt: skip
    n = len(rows)
    camera = np.array([c for _, c, _, _, _ in rows], np.int64)
    uv = np.stack([u for _, _, _, u, _ in rows])
    vis = np.stack([v for _, _, _, _, v in rows]).astype(np.uint8)
    centre, side = box_of(uv, vis)
    records = {
        "image": np.array([im.resolve().relative_to(root).as_posix() for _, _, im, _, _ in rows], dtype=str),
        "uv": uv.astype(np.float32),
        "vis": vis,
        "centre": centre,
        "side": side,
        "K": K[camera].astype(np.float32),
        "has_K": np.ones(n, bool),
        "joints_cam": np.full((n, NUM_JOINTS, 3), np.nan, np.float32),
        "group": np.array([g for g, _, _, _, _ in rows], np.int64),
        "rig": np.zeros(n, np.int64),
        "camera": camera,
        "R": np.asarray(R)[camera].astype(np.float32),
        "t": np.asarray(t)[camera].astype(np.float32),
        "extrinsics_known": np.full(n, known),
    }
    return MulticamRecords(records, root, group, dict(dropped))


def _reasons(dropped) -> str:
    return "; ".join(f"{n} {why}" for why, n in dropped.items() if n) or "no moments"
