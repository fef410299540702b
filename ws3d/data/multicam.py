"""A multi-view record set from a synchronised studio capture (``ws3d data records multicam``).

Input: per camera, in camera order, a folder of frames (images named with a frame number:
the last run of digits in the file name, ``cam1/000012.jpg`` -> 12) or a video file
(anything ``cv2.VideoCapture`` reads: .mp4, .avi, .mov, .mkv, ...; frame number = the
0-based index of the frame in the video, as OpenPose numbers the JSON it writes for a
video, ``cam1_000000000012_keypoints.json`` -> 12), and a detections path in any format of
:mod:`ws3d.data.detections`. Output: a record set (:mod:`ws3d.data.records`) with one
group per moment, the cameras' views of that moment, which ``data.records_mv`` trains on.

Rules:

- Time, people and joints as :func:`ws3d.calibrate.read_views` reads them: camera c's
  frame f is the moment ``f + offsets[c]``; rows every ``every``-th moment from the first
  moment that two cameras share to the last; per camera, one person tracked across its
  frames (started on the most confident person, then the nearest to the last kept pose
  within a gate; frames where the track is lost or ambiguous keep no person, and a track
  lost for long restarts on the most confident person); vis = 1 for joints at or above
  ``threshold`` confidence.
- A view (camera c at a moment) is kept when the camera has the tracked person there
  with at least 2 visible joints (the person box needs them) and its frame's image
  exists; a group is kept when at least 2 of its views are. Every view and group left
  out is counted, by reason, in :attr:`MulticamRecords.dropped`, and every frame of the
  detections where a camera's track was lost or ambiguous in :attr:`MulticamRecords.lost`
  and :attr:`MulticamRecords.ambiguous`.
- Videos: a record set names image files, so the frames of the kept views (and only
  those) are decoded, in one sequential pass that skips the others with ``grab()``, and
  written as full frames, JPEG quality 95, to ``video_frames/<video name>/<frame:06d>.jpg``
  (``<video name>_cam<c>`` when two videos share a name): the same record set as for
  the same frames given as a folder, but for the image paths and JPEG's rounding. A
  video must hold every frame its detections list (else InputError naming it; frames
  written by the failed call are removed); a frame folder may lack some (those views
  are dropped).
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
- Each camera's image size is read from its first frame (a video's first decoded frame);
  a calibration file's size must match it.
- No 3D: ``joints_cam`` NaN.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ws3d.calibrate import AMBIGUOUS, DEFAULT_THRESHOLD, LOST, read_views, tracking_line
from ws3d.camera import default_focal, intrinsics
from ws3d.data.calibration_files import read_calibration, undistort_points
from ws3d.data.detections import _frame_number
from ws3d.data.records import box_of
from ws3d.errors import InputError, MissingFileError
from ws3d.skeleton import NUM_JOINTS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95  # of the frames written from videos (OpenCV's default)


@dataclass
class MulticamRecords:
    """What :func:`multicam_records` made.

    Attributes:
        records: the record set (image paths relative to ``root``).
        root: the folder the image paths are relative to.
        groups: groups kept.
        dropped: {reason: count} of the views and groups left out.
        decoded: the frame files written from videos.
        lost, ambiguous: per camera, the frames of its detections (on the grid of moments
            or not) where the tracked person was lost or ambiguous
            (:attr:`ws3d.calibrate.Views.lost`).
    """

    records: dict[str, np.ndarray]
    root: Path
    groups: int
    dropped: dict[str, int] = field(default_factory=dict)
    decoded: list[Path] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    ambiguous: list[int] = field(default_factory=list)

    def summary(self) -> str:
        """One line: views and groups kept, what was dropped and why, and the frames per
        camera where the tracked person was lost or ambiguous."""
        views = len(self.records["image"])
        cams = np.bincount(self.records["camera"]).tolist()
        dropped = "; ".join(f"{n} {why}" for why, n in self.dropped.items() if n) or "nothing"
        return (f"kept {views} views in {self.groups} groups (views per camera {cams}); dropped: {dropped}; "
                f"{tracking_line(self.lost, self.ambiguous)}")  # fmt: skip


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


def _open_video(path: Path, camera: int) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"{path} (camera {camera + 1}): not a video that OpenCV can read "
                         "(--frames takes a frame folder or a video file per camera)")  # fmt: skip
    return capture


def video_size(path: str | os.PathLike, camera: int) -> tuple[int, int]:
    """(width, height) of a video's first decoded frame; InputError if it has none."""
    capture = _open_video(Path(path), camera)
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None:
        raise InputError(f"{path} (camera {camera + 1}): no frame of the video can be decoded")
    return frame.shape[1], frame.shape[0]


def decode_frames(path: str | os.PathLike, camera: int, frames: list[int], folder: str | os.PathLike,
                  length: int = 0, size: tuple[int, int] | None = None) -> list[Path]:  # fmt: skip
    """Write a video's ``frames`` (0-based indices) as ``folder/<frame:06d>.jpg`` full frames.

    One sequential pass: every frame up to the last wanted one is ``grab()``-ed (read and
    decoded as far as the codec needs to go on, not converted to BGR nor copied out), and
    only the wanted ones are ``retrieve()``-d and written.

    Args:
        path: the video; camera: its 0-based index (for messages).
        frames: the frame indices to write.
        folder: where they go (made if missing).
        length: the number of frames the video must hold at least (its detections' last
            frame + 1): checked against the container's frame count, and where that says
            fewer, by reading on to it.
        size: (width, height) every written frame must have.

    Returns:
        The written paths, in the order of sorted ``frames``.

    Raises:
        InputError: the video cannot be opened, ends before a wanted frame or before
            ``length``, or has a frame that cannot be decoded or is of another size; the
            files this call wrote are removed first.
    """
    path, folder = Path(path), Path(folder)
    wanted = sorted(set(int(f) for f in frames))
    if wanted and wanted[0] < 0:
        raise InputError(f"{path} (camera {camera + 1}): frame {wanted[0]} wanted; a video's frames count from 0")
    capture = _open_video(path, camera)
    written: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        counted = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        last = max(wanted[-1] if wanted else -1, length - 1 if not counted >= length else -1)
        todo = iter(wanted)
        target = next(todo, None)
        for index in range(last + 1):
            if not capture.grab():
                has = f"the video ends after {index} frames (0..{index - 1})" if index else "the video has no frames"
                raise InputError(f"{path} (camera {camera + 1}): {has}, but its detections list frames up to "
                                 f"{max(last, length - 1)}: a video shorter than its detections (the wrong video "
                                 "or detections, or a truncated file?)")  # fmt: skip
            if index != target:
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                raise InputError(f"{path} (camera {camera + 1}): frame {index} cannot be decoded")
            if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
                raise InputError(f"{path} (camera {camera + 1}): frame {index} is {image.shape[1]}x{image.shape[0]} "
                                 f"px, frame 0 {size[0]}x{size[1]}")  # fmt: skip
            out = folder / f"{index:06d}.jpg"
            if not cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise InputError(f"{out}: cannot write the frame (camera {camera + 1}, {path})")
            written.append(out)
            target = next(todo, None)
    except BaseException:
        for out in written:
            out.unlink(missing_ok=True)
        raise
    finally:
        capture.release()
    return written


def _footage(frames: list[str | os.PathLike], video_frames: str | os.PathLike | None):
    """Per camera its frame folder's {frame: image} (None for a video), and per video camera
    the folder its frames go to."""
    images: list[dict[int, Path] | None] = []
    videos: dict[int, Path] = {}
    for c, item in enumerate(frames):
        path = Path(item)
        if path.is_dir():
            images.append(frame_images(path, c))
        elif path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"{path} (camera {c + 1}): an image; --frames takes a frame folder or a video "
                                 "file per camera")  # fmt: skip
            images.append(None)
            videos[c] = path
        else:
            raise MissingFileError(f"{path} (camera {c + 1}): no such frame folder or video file")
    if videos and video_frames is None:
        raise InputError(f"{', '.join(str(v) for v in videos.values())}: videos need a folder to write the kept "
                         "frames to (--video-frames)")  # fmt: skip
    stems = Counter(v.stem for v in videos.values())
    folders = {c: Path(video_frames) / (v.stem if stems[v.stem] == 1 else f"{v.stem}_cam{c + 1}")
               for c, v in videos.items()}  # fmt: skip
    given = {Path(f).resolve() for f, im in zip(frames, images, strict=True) if im is not None}
    for c, folder in folders.items():
        if folder.resolve() in given:
            raise InputError(f"--video-frames {video_frames}: {videos[c]}'s frames would go to {folder}, which is "
                             "a frame folder given in --frames")  # fmt: skip
    return images, videos, folders


def multicam_records(detections: list[str | os.PathLike], frames: list[str | os.PathLike], *,
                     root: str | os.PathLike | None = None, intrinsics_file: str | os.PathLike | None = None,
                     focal: float | None = None, format: str | None = None, order: str | None = None,
                     offsets: list[int] | None = None, every: int = 1, threshold: float = DEFAULT_THRESHOLD,
                     video_frames: str | os.PathLike | None = None) -> MulticamRecords:  # fmt: skip
    """A multi-view record set from per-camera frame folders or videos and detections
    (module docstring).

    Args:
        detections: C >= 2 detections paths, in camera order.
        frames: C frame folders or video files, in the same order.
        root: the folder the image paths are relative to (default: the common parent of
            the frame folders and of the folders the videos' frames are written to);
            every one of them must lie under it.
        intrinsics_file: a calibration file of the same C cameras in the same order.
        focal: without ``intrinsics_file``, the nominal focal length in px.
        format, order, offsets, every, threshold: see :func:`ws3d.calibrate.read_views`.
        video_frames: where the frames decoded from videos go, one folder per video
            (required when ``frames`` holds a video).

    Raises:
        InputError: a count of frame folders or calibrated cameras that differs from the
            detections', a bad folder, image or video (one shorter than its detections),
            an image size that differs from the calibration's, no group of 2 views left,
            or what read_views raises.
    """
    C = len(detections)
    if len(frames) != C:
        raise InputError(f"--frames: {len(frames)} folders or videos for {C} detections paths (one per camera, "
                         "same order)")  # fmt: skip
    if intrinsics_file is not None and focal is not None:
        raise InputError("--focal is for nominal intrinsics; --intrinsics gives every camera's K")
    if focal is not None and not focal > 0:
        raise InputError(f"--focal must be positive, got {focal}")
    images, videos, video_folders = _footage(frames, video_frames)
    folders = [(video_folders[c] if im is None else Path(frames[c])).resolve() for c, im in enumerate(images)]
    root = Path(root).resolve() if root is not None else Path(os.path.commonpath([f.parent for f in folders]))
    for c, folder in enumerate(folders):
        if not folder.is_relative_to(root):
            if c in videos:
                raise InputError(f"--video-frames {video_frames}: camera {c + 1}'s frames ({videos[c]}) would not "
                                 f"be under the images' root {root}")  # fmt: skip
            raise InputError(f"{frames[c]} (camera {c + 1}): not under the images' root {root}")
    sizes = [video_size(videos[c], c) if im is None else _image_size(im[min(im)], c) for c, im in enumerate(images)]
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
            if views.untracked[row, c] == LOST:
                dropped[f"views where the tracked person was lost (camera {c + 1})"] += 1
                continue
            if views.untracked[row, c] == AMBIGUOUS:
                dropped[f"views where the tracked person was ambiguous (camera {c + 1})"] += 1
                continue
            if vis.sum() < 2:
                dropped["views without a person with 2 confident joints"] += 1
                continue
            frame = moment - int(views.offsets[c])
            # A video's frame: written below, once the groups are known; the video holds it
            # (it is a frame of the detections, and decode_frames checks the video's length).
            image = images[c].get(frame) if images[c] is not None else video_folders[c] / f"{frame:06d}.jpg"
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
    written: list[Path] = []
    try:
        for c, video in videos.items():
            wanted = [int(image.stem) for _, d, image, _, _ in rows if d == c]
            length = int(views.last_frames[c]) + 1
            written += decode_frames(video, c, wanted, video_folders[c], length=length, size=sizes[c])
    except BaseException:  # a later video failed: the earlier ones' frames go too
        for path in written:
            path.unlink(missing_ok=True)
        raise
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
    return MulticamRecords(records, root, group, dict(dropped), written, views.lost.tolist(),
                           views.ambiguous.tolist())  # fmt: skip


def _reasons(dropped) -> str:
    return "; ".join(f"{n} {why}" for why, n in dropped.items() if n) or "no moments"
