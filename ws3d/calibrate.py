"""``ws3d calibrate``: a studio rig from its cameras' 2D detection files.

The files go through :func:`ws3d.rig_calibration.calibrate_rig`; the estimate comes back as
the cameras of a Pose2Sim / anipose calibration TOML (:func:`ws3d.data.calibration_files.write_toml`).

Rules, from files to calibrate_rig's arrays:

- One detections path per camera, in camera order, read by
  :func:`ws3d.data.detections.read_detections` (format from the content unless given).
- Time: camera c's frame number f is the moment ``f + offsets[c]`` (``offsets`` default
  0: the streams share their numbering). A moment is a frame in common when at least two
  cameras have a person at it; the rows are every ``every``-th moment from the first
  frame in common to the last (a contiguous grid, so that calibrate_rig's offset search
  shifts streams by whole rows), a camera with no person at a row having weight 0 there.
- People: one person per camera, tracked through the camera's frames in frame order
  (every frame its detections list, before ``every`` picks rows; a person counts when
  one of its joints is at or above ``threshold``). The first frame with a person starts
  the track with the most confident one (highest mean confidence over the 17 joints).
  Each later frame keeps the person nearest the track's last kept pose: the median
  distance over the joints confident in both (at least ``TRACK_MIN_JOINTS``), as a share
  of the last pose's box diagonal (the box of its confident joints: scale-free), at most
  ``TRACK_GATE``; of several people within that gate, the nearest only when it is at
  most ``TRACK_CLEAR`` times as far as the next. A frame with people but none within the
  gate (lost) or no clearly nearest one (ambiguous) keeps no person for that camera and
  is counted (:attr:`Views.lost`, :attr:`Views.ambiguous`); so is a one-person frame
  whose person is outside the gate, so that a false detection elsewhere never replaces
  the tracked person. More than ``TRACK_RESTART`` frames after the last kept pose, the
  track restarts with the frame's most confident person: someone who left and came back
  is picked up again. Each camera tracks on its own, and calibrate_rig wants the same
  person in every view: start the capture with the subject alone in view (or the most
  confident person in every camera); views of another person count as outliers.
- Joints: weight 1 at or above ``threshold`` confidence, 0 below it (detectors' scores
  are no calibrated variances, and the robust loss already discounts joints that do not
  fit).
- Intrinsics: from a calibration file (its extrinsics ignored; its cameras matched to the
  detections by order; its distortion undone on the 2D joints first, and written back
  unchanged), or nominal: ``focal`` (default :func:`ws3d.camera.default_focal` of the
  image size), the principal point at the image centre, no distortion, and every focal
  length refined by calibrate_rig.

The written rig is calibrate_rig's: camera 0's frame is the world (no floor, no up
direction), lengths in mm from the people's bones against the mean skeleton.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ws3d.camera import default_focal, intrinsics
from ws3d.data.calibration_files import CameraCalibration, read_calibration, undistort_points
from ws3d.data.detections import read_detections
from ws3d.errors import InputError
from ws3d.skeleton import NUM_JOINTS

if TYPE_CHECKING:  # torch is imported only once there is something to calibrate
    from ws3d.rig_calibration import RigCalibration

DEFAULT_THRESHOLD = 0.3  # joints below this confidence get weight 0

# Tracking one person per camera (module docstring, "People"). Distances are medians over
# joints, relative to the last kept pose's box diagonal (about the person's height in the
# image), so the rule does not depend on image size or how far the person stands.
TRACK_GATE = 0.5  # a walker (~1.5 m/s at 25-60 fps) moves ~1-4% of their height a frame, so
# the gate holds a track across 10 or more frames of missed detections; a second person more
# than half a body length away is never taken for the tracked one (nearer: TRACK_CLEAR).
TRACK_CLEAR = 0.5  # nearest at most half as far as the runner-up (a ratio test as in
# descriptor matching): the person beside the tracked one (~0.2-0.3 of a height away) loses
# to the tracked one's frame-to-frame motion, two overlapping people are ambiguous.
TRACK_RESTART = 30  # frames (~1 s at 25-30 fps) without a kept pose: the track is lost; the
# next frame with a person restarts it with the most confident one.
TRACK_MIN_JOINTS = 3  # joints confident in both poses for a distance: a median of 3 already
# ignores one swapped or misplaced joint.
LOST, AMBIGUOUS = 1, 2  # Views.untracked's codes


@dataclass(frozen=True)
class Views:
    """Every camera's detections on one time grid (C cameras, F rows).

    Attributes:
        times: (F,) int, each row's moment: camera c's frame ``times - offsets[c]``.
        uv: (F, C, 17, 2) detected joints, pixels (undistorted once intrinsics say so).
        w: (F, C, 17) 1 where the joint's confidence is at or above the threshold, else 0.
        offsets: (C,) int, the given offsets (frame f of camera c is moment f + offsets[c]).
        every: the step between rows, frames.
        last_frames: (C,) int, the last frame number that each camera's detections list
            (with or without a person): how long its footage must be.
        lost, ambiguous: (C,) int, per camera the frames of its detections (every frame,
            on the grid or not) that list people but keep none: none within the tracked
            person's gate, or no clearly nearest one (module docstring, "People").
        untracked: (F, C) int8, per row and camera 1 where the frame was lost, 2 where it
            was ambiguous, else 0 (kept, no person, or no frame).
    """

    times: np.ndarray
    uv: np.ndarray
    w: np.ndarray
    offsets: np.ndarray
    every: int
    last_frames: np.ndarray | None = None
    lost: np.ndarray | None = None
    ambiguous: np.ndarray | None = None
    untracked: np.ndarray | None = None

    def tracking(self) -> str:
        """One line: per camera, the frames where its tracked person was lost or ambiguous."""
        return tracking_line(self.lost, self.ambiguous)


def tracking_line(lost, ambiguous) -> str:
    """``one person tracked per camera: frames lost [0, 3, 0], ambiguous [1, 0, 0]``, what
    both CLIs print; lists of C counts (None: not recorded)."""
    if lost is None or ambiguous is None:
        return "one person tracked per camera: frames lost and ambiguous not recorded"
    lost, ambiguous = ([int(n) for n in counts] for counts in (lost, ambiguous))
    return f"one person tracked per camera: frames lost {lost}, ambiguous {ambiguous} (no person kept there)"


@dataclass(frozen=True)
class FileCalibration:
    """What :func:`calibrate_files` found.

    Attributes:
        cameras: the estimated rig as :func:`ws3d.data.calibration_files.write_toml` takes
            it: K (refined or the file's), distortion (the file's, else none), R, t in mm.
        paths: the detections paths, one per camera.
        rig: calibrate_rig's :class:`ws3d.rig_calibration.RigCalibration` (its offsets in rows).
        views: the :class:`Views` it calibrated from.
        offsets: (C,) int, frames by which each camera runs late against camera 0 (its frame
            f shows camera 0's frame f + offsets[c]): the given offsets plus the estimated
            ones (multiples of ``every``).
    """

    cameras: list[CameraCalibration]
    paths: list[str]
    rig: RigCalibration
    views: Views
    offsets: np.ndarray


def read_views(paths: list[str | os.PathLike], *, format: str | None = None, order: str | None = None,
               offsets: list[int] | None = None, every: int = 1, threshold: float = DEFAULT_THRESHOLD,
               sizes: list[tuple[int, int] | None] | None = None) -> Views:  # fmt: skip
    """Read one detections path per camera and put them on one time grid (module docstring).

    Args:
        paths: C >= 2 detections files or folders, in camera order.
        format, order: passed to :func:`ws3d.data.detections.read_detections`.
        offsets: (C,) ints, camera c's frame f is moment f + offsets[c]; None: all 0.
        every: use every this many frames.
        threshold: the confidence below which a joint gets weight 0.
        sizes: per camera (width, height) in px, for detections normalised to the image
            (MediaPipe); None where unknown.

    Raises:
        InputError: fewer than 2 cameras, a wrong count of offsets, a camera without a
            person or without a frame in common with the others (naming its path).
    """
    C = len(paths)
    if C < 2:
        raise InputError(f"a rig needs at least 2 cameras' detections, got {C} ({' '.join(map(str, paths))})")
    if every < 1:
        raise InputError(f"--every must be at least 1, got {every}")
    if threshold < 0:
        raise InputError(f"--threshold must be >= 0, got {threshold}")
    if offsets is not None and len(offsets) != C:
        raise InputError(f"--offsets: {len(offsets)} values for {C} cameras (one per detections path)")
    offsets = np.zeros(C, np.int64) if offsets is None else np.asarray(offsets, np.int64)
    sizes = sizes or [None] * C
    poses = []  # per camera {moment: (17, 3)}
    dropped = []  # per camera {moment: 1 lost, 2 ambiguous}
    last_frames = np.zeros(C, np.int64)
    for c, path in enumerate(paths):
        width, height = sizes[c] or (None, None)
        frames = [(int(frame), people) for frame, people, _ in
                  read_detections(path, format, order=order, width=width, height=height)]  # fmt: skip
        last_frames[c] = max((frame for frame, _ in frames), default=0)
        kept, untracked = track_person(frames, threshold)
        found = {frame + int(offsets[c]): person for frame, person in kept.items()}
        dropped.append({frame + int(offsets[c]): code for frame, code in untracked.items()})
        if not found:
            raise InputError(f"{path} (camera {c + 1}): no person with a joint of confidence >= {threshold} "
                             "in any frame")  # fmt: skip
        poses.append(found)
    counts: dict[int, int] = {}
    for found in poses:
        for moment in found:
            counts[moment] = counts.get(moment, 0) + 1
    for c, found in enumerate(poses):
        if not any(counts[moment] >= 2 for moment in found):
            shifted = " after --offsets" if offsets.any() else ""
            others = [m for d, f in enumerate(poses) if d != c for m in f]
            raise InputError(f"{paths[c]} (camera {c + 1}): no frame in common with the other cameras' detections"
                             f"{shifted} (its frames {_span(found)}, theirs {_span(others)})")  # fmt: skip
    common = sorted(m for m, n in counts.items() if n >= 2)
    times = np.arange(common[0], common[-1] + 1, every, dtype=np.int64)
    uv = np.zeros((len(times), C, NUM_JOINTS, 2))
    w = np.zeros((len(times), C, NUM_JOINTS))
    untracked = np.zeros((len(times), C), np.int8)
    for c, found in enumerate(poses):
        for row, moment in enumerate(times.tolist()):
            person = found.get(moment)
            if person is not None:
                uv[row, c] = person[:, :2]
                w[row, c] = _confident(person, threshold)
            untracked[row, c] = dropped[c].get(moment, 0)
    lost = np.array([sum(code == LOST for code in d.values()) for d in dropped], np.int64)
    ambiguous = np.array([sum(code == AMBIGUOUS for code in d.values()) for d in dropped], np.int64)
    return Views(times, uv, w, offsets, every, last_frames, lost, ambiguous, untracked)


def _confident(person: np.ndarray, threshold: float) -> np.ndarray:
    """(17,) bool: the joints at or above ``threshold`` (and above 0) confidence."""
    return (person[:, 2] >= threshold) & (person[:, 2] > 0)


def _track_distance(last: np.ndarray, person: np.ndarray, threshold: float) -> float:
    """The median distance (px) of ``person``'s joints from ``last``'s, over the joints
    confident in both, over the diagonal of the box of ``last``'s confident joints; inf
    with fewer than TRACK_MIN_JOINTS such joints or a box of no size."""
    seen = _confident(last, threshold)
    both = seen & _confident(person, threshold)
    if both.sum() < TRACK_MIN_JOINTS:
        return np.inf
    size = float(np.linalg.norm(last[seen, :2].max(0) - last[seen, :2].min(0)))
    if not size > 0:
        return np.inf
    return float(np.median(np.linalg.norm(person[both, :2] - last[both, :2], axis=1))) / size


def track_person(frames, threshold: float = DEFAULT_THRESHOLD) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """One camera's tracked person (module docstring, "People").

    Args:
        frames: [(frame, people (P, 17, 3) [u, v, confidence])] in frame order, one camera's.
        threshold: the confidence at or above which a joint counts.

    Returns:
        ({frame: the kept (17, 3) person}, {frame: LOST or AMBIGUOUS}) over the frames
        that list a person with a joint at or above ``threshold``.
    """
    kept: dict[int, np.ndarray] = {}
    untracked: dict[int, int] = {}
    last, last_frame = None, 0  # the track's last kept pose and its frame; None: no track
    for frame, people in frames:
        people = [p for p in np.asarray(people, np.float64).reshape(-1, NUM_JOINTS, 3)
                  if _confident(p, threshold).any()]  # fmt: skip
        if not people:
            continue
        if last is None or frame - last_frame > TRACK_RESTART:
            person = people[int(np.argmax([p[:, 2].mean() for p in people]))]
            kept[frame] = person
            # A pose too sparse to measure distances from cannot carry the track: the next
            # frame starts it again.
            usable = _confident(person, threshold).sum() >= TRACK_MIN_JOINTS
            last, last_frame = (person if usable else None), frame
            continue
        distances = sorted((_track_distance(last, p, threshold), i) for i, p in enumerate(people))
        within = [(d, i) for d, i in distances if d <= TRACK_GATE]
        if not within:
            untracked[frame] = LOST
        elif len(within) > 1 and within[0][0] > TRACK_CLEAR * within[1][0]:
            untracked[frame] = AMBIGUOUS
        else:
            last, last_frame = people[within[0][1]], frame
            kept[frame] = last
    return kept, untracked


def _span(moments) -> str:
    moments = list(moments)
    return f"{min(moments)}..{max(moments)}" if moments else "none"


def calibrate_files(paths: list[str | os.PathLike], *, intrinsics_file: str | os.PathLike | None = None,
                    focal: float | None = None, size: tuple[int, int] | None = None, format: str | None = None,
                    order: str | None = None, offsets: list[int] | None = None, every: int = 1,
                    threshold: float = DEFAULT_THRESHOLD, max_offset: int = 0) -> FileCalibration:  # fmt: skip
    """Calibrate a rig from one detections path per camera (module docstring's rules).

    Args:
        paths: C >= 2 detections files or folders, in camera order.
        intrinsics_file: a calibration file of the same C cameras in the same order: K,
            distortion, size and names from it, its extrinsics ignored. None: nominal K.
        focal: the nominal focal length in px without ``intrinsics_file`` (default
            :func:`ws3d.camera.default_focal` of ``size``); refined per camera.
        size: (width, height) px of every camera's images; required without
            ``intrinsics_file``, else only fills a size the file lacks.
        format, order, offsets, every, threshold: see :func:`read_views`.
        max_offset: search each camera's offset within +- this many frames beyond
            ``offsets`` (in steps of ``every``); 0: the streams are in step.

    Returns:
        :class:`FileCalibration`.

    Raises:
        InputError: as :func:`read_views`, a camera count that differs from the
            intrinsics file's, no size, or detections that do not determine a rig.
    """
    from ws3d.rig_calibration import calibrate_rig  # torch: only once there is something to calibrate

    C = len(paths)
    if intrinsics_file is not None:
        given = read_calibration(intrinsics_file)
        if len(given) != C:
            raise InputError(f"{intrinsics_file}: {len(given)} cameras, but {C} detections paths were given "
                             "(one per camera, in the file's order)")  # fmt: skip
        for cam in given:
            if cam.size is None and size is None:
                raise InputError(f"{intrinsics_file}: camera {cam.name!r} has no image size; give --size W H")
        names = [cam.name for cam in given]
        sizes = [cam.size or tuple(size) for cam in given]
        K = np.stack([cam.K for cam in given])
        dist = [(cam.dist, cam.fisheye) for cam in given]
    else:
        if size is None:
            raise InputError("without --intrinsics, give the images' --size W H (the principal point is the "
                             "image centre, and the TOML records the size)")  # fmt: skip
        width, height = size
        if not (width > 0 and height > 0):
            raise InputError(f"--size must be two positive numbers, got {width} {height}")
        f = default_focal(width, height) if focal is None else focal
        if not f > 0:
            raise InputError(f"--focal must be positive, got {f}")
        names = [f"cam_{c + 1}" for c in range(C)]
        sizes = [(int(width), int(height))] * C
        # Pixel centres at integers: the image centre is ((W - 1) / 2, (H - 1) / 2).
        K = np.stack([intrinsics(f, f, (width - 1) / 2, (height - 1) / 2)] * C)
        dist = [(np.zeros(5), False)] * C
    if max_offset < 0:
        raise InputError(f"--max-offset must be >= 0, got {max_offset}")
    views = read_views(paths, format=format, order=order, offsets=offsets, every=every, threshold=threshold,
                       sizes=sizes)  # fmt: skip
    uv = views.uv.copy()
    if intrinsics_file is not None:
        # calibrate_rig models pinhole cameras: take the lens distortion out of the joints first.
        for c, cam in enumerate(given):
            seen = views.w[:, c] > 0
            uv[:, c][seen] = undistort_points(uv[:, c][seen], cam)
    rows = -(-max_offset // every)  # the search is in rows of the grid; enough of them to cover max_offset frames
    try:
        rig = calibrate_rig(uv, views.w, K, refine_focal=intrinsics_file is None, max_offset=rows)
    except ValueError as error:  # calibrate_rig's own checks: the detections cannot place the cameras
        raise InputError(f"the detections of {' '.join(map(str, paths))} do not determine a rig: {error}") from error
    cameras = []
    for c in range(C):
        coefficients, fisheye = dist[c]
        K_c, R_c, t_c = (a[c].numpy() for a in (rig.K, rig.R, rig.t))
        cameras.append(
            CameraCalibration(names[c], sizes[c], K_c, np.asarray(coefficients, np.float64), R_c, t_c, fisheye)
        )
    total = views.offsets - views.offsets[0] + rig.offsets.numpy() * every
    return FileCalibration(cameras, [str(p) for p in paths], rig, views, total)


def compare_to_reference(calibration: FileCalibration, reference: list[CameraCalibration],
                         where: str = "the reference") -> dict[str, np.ndarray]:  # fmt: skip
    """The estimated rig against a reference calibration of the same cameras in the same
    order (:func:`ws3d.rig_calibration.compare_rigs`; any world frame, any scale).

    Args:
        calibration: what :func:`calibrate_files` found.
        reference: the reference's cameras (:func:`ws3d.data.calibration_files.read_calibration`).
        where: the reference's name in an error message.

    Returns:
        ``rotation_deg``, ``baseline_deg`` and ``scale``, (C,) each: camera c's rotation
        error relative to camera 0, the angle between its baseline from camera 0 and the
        reference's (degrees), and the ratio of the two baselines' lengths; NaN for camera 0.
    """
    from ws3d.rig_calibration import compare_rigs

    C = len(calibration.cameras)
    if len(reference) != C:
        raise InputError(f"{where}: {len(reference)} cameras, but {C} were calibrated (the reference must list "
                         "the same cameras in the same order)")  # fmt: skip
    R, t = (np.stack([getattr(cam, key) for cam in calibration.cameras]) for key in ("R", "t"))
    R_ref, t_ref = (np.stack([getattr(cam, key) for cam in reference]) for key in ("R", "t"))
    errors = compare_rigs(R, t, R_ref, t_ref)
    keys = ("rotation_deg", "baseline_deg", "scale")
    return {key: np.concatenate([[np.nan], e.numpy()]) for key, e in zip(keys, errors, strict=True)}


def report(calibration: FileCalibration, reference: dict[str, np.ndarray] | None = None) -> str:
    """The table ``ws3d calibrate`` prints: the frames and the tracked person's lost and
    ambiguous frames (:meth:`Views.tracking`), then per camera its name, median reprojection
    error (px), inlier share, frame offset against camera 0, with a reference its rotation
    and baseline-direction errors (degrees) and baseline scale, and its detections path."""
    rig, views = calibration.rig, calibration.views
    seen = int(((views.w > 0).any(-1).sum(1) >= 2).sum())
    lines = [f"{len(calibration.cameras)} cameras, {len(views.times)} frames (moments {views.times[0]}.."
             f"{views.times[-1]}, every {views.every}; {seen} seen by two or more cameras); "
             f"{rig.swapped.double().mean():.1%} of the views found left/right swapped"]  # fmt: skip
    lines.append(views.tracking())
    header = ["camera", "reproj px", "inliers", "offset", "focal px"]
    if reference is not None:
        header += ["rotation err deg", "baseline err deg", "scale"]
    rows = []
    for c, cam in enumerate(calibration.cameras):
        row = [cam.name, f"{float(rig.reprojection_px[c]):.2f}", f"{float(rig.inlier_share[c]):.1%}",
               f"{int(calibration.offsets[c])}", f"{cam.K[0, 0]:.0f}"]  # fmt: skip
        if reference is not None:
            row += ["-" if c == 0 else f"{reference[k][c]:.3f}" for k in ("rotation_deg", "baseline_deg", "scale")]
        rows.append(row + [calibration.paths[c]])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header + ["detections"], *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:], strict=True)]
        lines.append("  ".join(cells + [row[-1]]))
    lines.append(f"inliers: joints within {rig.inlier_px:.1f} px of their fitted projection; offset: frames a camera "
                 "runs late against the first (its frame f shows the first's f + offset)")  # fmt: skip
    if reference is not None:
        lines.append("errors against the reference, relative to the first camera; scale: baseline length over the "
                     "reference's")  # fmt: skip
    return "\n".join(lines)
