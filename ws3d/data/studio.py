"""Synthetic studios: fixed rigs of raised cameras, people moving through the capture
volume over many frames, and the faults of an off-the-shelf 2D detector.

Real multi-view footage comes from cameras that stay put for thousands of frames
(Human3.6M, MPI-INF-3DHP, and every studio that records with Pose2Sim, anipose, freemocap
or caliscope), and its 2D joints from a detector that is noisy, swaps left and right,
misses joints, puts some far off, and marks them a little off where no 3D point explains
it. This module makes such footage as 2D joints with the truth beside it, for
:func:`ws3d.multiview.calibrate_rig`'s tests and accuracy tables.

World frame as in ws3d.data.poses: millimetres, y down, the floor at y = 0. Cameras are
world-to-camera (R, t) with intrinsics K for FRAME_SIZE frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ws3d.camera import intrinsics, look_at, project, world_to_camera
from ws3d.data.poses import ACTIVITIES, forward_kinematics, make_subject, place, sample_angles
from ws3d.skeleton import MIRRORED, NUM_JOINTS

FRAME_SIZE = (1920, 1080)  # (width, height) of a studio camera's frame, pixels
VOLUME_RADIUS_MM = 1500.0  # people stay within this distance of the studio's centre
WALK_MM_PER_S = 1000.0  # at most this far between the motion's key poses, one second apart


def sample_studio(rng: np.random.Generator, cameras: int, height_mm: tuple[float, float] = (2000.0, 2800.0)):
    """A rig of ``cameras`` raised cameras around the capture volume, looking at its centre.

    Cameras stand about evenly around a circle of 3.5-5.5 m radius, ``height_mm`` above
    the floor, aimed at a point about 1 m above the centre (within 0.3 m), with a focal
    length of 1000-1600 px (a 62-88 degree horizontal field of view) and a roll within 3
    degrees.

    Returns:
        K (C, 3, 3), R (C, 3, 3), t (C, 3) world-to-camera, mm (numpy float64).
    """
    if cameras < 2:
        raise ValueError(f"a studio needs at least 2 cameras, got {cameras}")
    start = rng.uniform(0, 2 * np.pi)
    azimuths = start + 2 * np.pi * np.arange(cameras) / cameras + rng.uniform(-0.2, 0.2, cameras)
    Ks, Rs, ts = [], [], []
    for azimuth in azimuths:
        radius, height = rng.uniform(3500, 5500), rng.uniform(*height_mm)
        centre = np.array([radius * np.sin(azimuth), -height, -radius * np.cos(azimuth)])
        target = np.array([0.0, -1000.0, 0.0]) + rng.uniform(-300, 300, 3)
        R, _ = look_at(centre, target)
        roll = np.deg2rad(rng.uniform(-3, 3))
        c, s = np.cos(roll), np.sin(roll)
        R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
        f = rng.uniform(1000, 1600)
        w, h = FRAME_SIZE
        Ks.append(intrinsics(f, f, w / 2 + rng.normal(0, 10), h / 2 + rng.normal(0, 10)))
        Rs.append(R)
        ts.append(-R @ centre)
    return np.stack(Ks), np.stack(Rs), np.stack(ts)


def studio_motion(rng: np.random.Generator, frames: int, fps: float = 30.0, subject_frames: int = 300,
                  first_subject: int = 0, bone_lengths: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """People moving through the capture volume: (frames, 17, 3) world joints, mm.

    Key poses one second apart (an activity's joint angles, a heading, a position within
    ``VOLUME_RADIUS_MM`` of the centre and at most ``WALK_MM_PER_S`` from the previous
    one) are interpolated linearly in between, so the motion is smooth from frame to
    frame. Every ``subject_frames`` frames another person (``make_subject``) takes over;
    ``bone_lengths`` (per entry of ``BONES``), when given, is everybody's instead.
    """
    step = max(int(round(fps)), 1)
    keys = frames // step + 2
    angles, headings, positions = [], [], []
    position = rng.uniform(-0.5, 0.5, 2) * VOLUME_RADIUS_MM
    for _ in range(keys):
        angles.append(sample_angles(ACTIVITIES[rng.integers(len(ACTIVITIES))], rng))
        headings.append(rng.uniform(-np.pi, np.pi))
        while True:  # the next position: a walk's length away, inside the volume
            candidate = position + rng.uniform(-1, 1, 2) * WALK_MM_PER_S / np.sqrt(2)
            if np.linalg.norm(candidate) <= VOLUME_RADIUS_MM:
                position = candidate
                break
        positions.append(position)
    names = list(angles[0])
    table = np.array([[a[n] for n in names] for a in angles])  # (keys, angles)
    joints = np.empty((frames, NUM_JOINTS, 3))
    for f in range(frames):
        k, alpha = divmod(f, step)
        alpha /= step
        mixed = dict(zip(names, (1 - alpha) * table[k] + alpha * table[k + 1], strict=True))
        turn = (headings[k + 1] - headings[k] + np.pi) % (2 * np.pi) - np.pi  # the shorter way round
        heading = headings[k] + alpha * turn
        lengths = bone_lengths
        if lengths is None:
            lengths = make_subject(first_subject + f // subject_frames).bone_lengths
        body = forward_kinematics(mixed, lengths)
        joints[f] = place(body, heading, (1 - alpha) * positions[k] + alpha * positions[k + 1])
    return joints


def observe(joints: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
            offsets: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """What each camera sees: the joints projected into every frame of every camera.

    Args:
        joints: (F + extra, 17, 3) world joints; K, R, t: the rig, (C, 3, 3), (C, 3, 3), (C, 3).
        offsets: (C,) int >= 0, how many frames late each camera's stream starts (camera c's
            frame f shows time f + offsets[c]); ``joints`` must hold F + max(offsets) frames.
            None: all in step.

    Returns:
        uv (F, C, 17, 2) pixels and visible (F, C, 17) bool: in front of the camera and
        inside its frame.
    """
    C = len(K)
    offsets = np.zeros(C, int) if offsets is None else np.asarray(offsets, int)
    if offsets.min() < 0:
        raise ValueError("offsets must be >= 0 (shift them all by their minimum)")
    F = len(joints) - offsets.max()
    uv = np.empty((F, C, NUM_JOINTS, 2))
    visible = np.empty((F, C, NUM_JOINTS), bool)
    w, h = FRAME_SIZE
    for c in range(C):
        P = world_to_camera(joints[offsets[c] : offsets[c] + F], R[c], t[c])
        uv[:, c] = project(P, K[c])
        inside = (uv[:, c, :, 0] >= 0) & (uv[:, c, :, 0] <= w - 1) & (uv[:, c, :, 1] >= 0) & (uv[:, c, :, 1] <= h - 1)
        visible[:, c] = (P[..., 2] > 0) & inside
    return uv, visible


@dataclass(frozen=True)
class DetectorFaults:
    """How an off-the-shelf 2D detector errs, per joint unless said.

    noise_px: Gaussian noise per coordinate. swap_rate: share of views (frame, camera) whose
    left and right are exchanged. outlier_rate: share of joints put anywhere in the
    person's box, enlarged by half. missing_rate: share of joints not detected. bias_px:
    a fixed 2D offset per camera and joint (a random direction, this length): the part of
    a detector's systematic error that no 3D point explains (it marks the surface it sees,
    which differs between views, not the joint centre).
    """

    noise_px: float = 5.0
    swap_rate: float = 0.1
    outlier_rate: float = 0.05
    missing_rate: float = 0.1
    bias_px: float = 0.0


def detect(uv: np.ndarray, visible: np.ndarray, faults: DetectorFaults,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The detections of true 2D joints ``uv`` (F, C, J, 2) that are ``visible`` (F, C, J).

    Returns:
        uv (F, C, J, 2) detected pixels, w (F, C, J) 1 where detected (0: missed or not
        visible), swapped (F, C) bool: the views whose left and right are exchanged.
    """
    F, C, J, _ = uv.shape
    bias = rng.normal(0, 1, (C, J, 2))
    bias *= faults.bias_px / np.linalg.norm(bias, axis=-1, keepdims=True)
    out = uv + bias + rng.normal(0, faults.noise_px, uv.shape)
    low, high = uv.min(2, keepdims=True), uv.max(2, keepdims=True)
    centre, half = (low + high) / 2, 0.75 * (high - low)
    wild = centre + rng.uniform(-1, 1, uv.shape) * half
    out = np.where((rng.random((F, C, J)) < faults.outlier_rate)[..., None], wild, out)
    swapped = rng.random((F, C)) < faults.swap_rate
    out = np.where(swapped[..., None, None], out[:, :, MIRRORED], out)
    seen = visible & (rng.random((F, C, J)) >= faults.missing_rate)
    seen = np.where(swapped[..., None], seen[:, :, MIRRORED], seen)
    return out, seen.astype(np.float64), swapped
