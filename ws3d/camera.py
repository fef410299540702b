"""Pinhole camera helpers shared by the renderer, the crops and the loaders.

Conventions: camera coordinates x right, y down, z forward (into the scene);
world-to-camera ``x_cam = R @ X_world + t``; pixel coordinates have integer values at
pixel centres (OpenCV), u = column, v = row. Everything is numpy, float64.
"""

from __future__ import annotations

import numpy as np


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Perspective projection. points: (..., J, 3) camera coordinates; K: (..., 3, 3).

    Returns uv (..., J, 2) pixels.
    """
    h = np.einsum("...ab,...jb->...ja", K, points)
    return h[..., :2] / h[..., 2:3]


def world_to_camera(points: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """points: (..., J, 3) world; R: (..., 3, 3); t: (..., 3). Returns (..., J, 3) camera coordinates."""
    return np.einsum("...ab,...jb->...ja", R, points) + t[..., None, :]


def look_at(centre: np.ndarray, target: np.ndarray, down=(0.0, 1.0, 0.0)):
    """World-to-camera (R, t) of a camera at ``centre`` looking at ``target``, rolled so
    that the world ``down`` direction points down in the image. Returns R (3, 3), t (3,)."""
    down = np.asarray(down, np.float64)
    z = target - centre
    z = z / np.linalg.norm(z)
    x = np.cross(down, z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ centre


def default_focal(width: int, height: int) -> float:
    """The focal length (px) assumed for an uncalibrated image or video: 1.2 x its longer
    side, a ~45 degree field of view (ws3d predict, ws3d data tracklets)."""
    return 1.2 * max(width, height)


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """The 3x3 pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def affine_to_3x3(A: np.ndarray) -> np.ndarray:
    """(..., 2, 3) image-plane affine -> (..., 3, 3) homogeneous matrix."""
    bottom = np.broadcast_to(np.array([0.0, 0.0, 1.0]), A.shape[:-2] + (1, 3))
    return np.concatenate([A, bottom], axis=-2)


def transform_points(A: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to uv (..., 2) pixels."""
    return uv @ A[:, :2].T + A[:, 2]
