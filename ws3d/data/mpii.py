"""MPII Human Pose in the HRNet JSON form (``annot/{train,valid}.json``).

Each entry: ``image`` (file name under ``images/``), ``center`` [x, y], ``scale`` (box
height / 200 px), ``joints`` (16, 2) and ``joints_vis`` (16,), in MATLAB's 1-based pixels.
Like HRNet's loader (``lib/dataset/mpii.py``), ws3d converts to 0-based pixels, moves the
centre 15 * scale px down and enlarges the box by 1.25 so limbs are not cut off, except
for an entry whose ``center[0]`` is -1 (the JSON's marker for a person without an
annotated position): HRNet leaves its centre and scale unadjusted, and so does ws3d, so
that both crop the same box (one that does not locate the person). MPII has no spine
joint (masked), no 3D and no intrinsics (NaN).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ws3d.data.records import joint_map, remap_joints, require_file
from ws3d.errors import InputError, read_input
from ws3d.skeleton import NUM_JOINTS

# MPII's joint order in ws3d names: thorax is "neck", the upper neck stands in for
# Human3.6M's neck-top/nose joint ("nose"), the head top is "head"; there is no spine.
MPII_JOINTS = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "neck", "nose", "head",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
)  # fmt: skip
MPII_TO_WS3D = joint_map(MPII_JOINTS)


def load_mpii(json_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an HRNet-style MPII annotation JSON into a record set (images under ``images/``)."""
    path = require_file(Path(json_path))
    entries = read_input(path, lambda p: json.loads(p.read_text()), "JSON file")
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a list of annotations")
    n = len(entries)
    uv, vis = np.zeros((n, NUM_JOINTS, 2)), np.zeros((n, NUM_JOINTS), np.uint8)
    centre, side, images = np.zeros((n, 2)), np.zeros(n), []
    for i, entry in enumerate(entries):
        for key in ("image", "center", "scale", "joints", "joints_vis"):
            if key not in entry:
                raise InputError(f"{path}: entry {i}: field {key!r} is missing")
        joints, joints_vis = np.asarray(entry["joints"], np.float64), np.asarray(entry["joints_vis"], np.float64)
        if joints.shape != (16, 2) or joints_vis.shape != (16,):
            raise InputError(
                f"{path}: entry {i}: joints {joints.shape} / joints_vis {joints_vis.shape}, expected (16, 2) / (16,)"
            )
        mapped, mask = remap_joints(joints - 1.0, MPII_TO_WS3D)
        mapped_vis, _ = remap_joints(joints_vis[:, None], MPII_TO_WS3D)
        uv[i] = np.nan_to_num(mapped, nan=0.0)
        vis[i] = (mask & (np.nan_to_num(mapped_vis[:, 0]) > 0)).astype(np.uint8)
        c, scale = np.asarray(entry["center"], np.float64), float(entry["scale"])
        if c.shape != (2,):
            raise InputError(f"{path}: entry {i}: center {c.shape}, expected (2,)")
        side[i] = 200.0 * scale
        if c[0] != -1:  # HRNet adjusts only real centres, tested in 1-based pixels as here
            c[1] += 15.0 * scale
            side[i] *= 1.25
        centre[i] = c - 1.0
        images.append(f"images/{entry['image']}")
    return {
        "image": np.array(images, dtype=str),
        "uv": uv.astype(np.float32),
        "vis": vis,
        "centre": centre.astype(np.float32),
        "side": side.astype(np.float32),
        "K": np.full((n, 3, 3), np.nan, np.float32),
        "joints_cam": np.full((n, NUM_JOINTS, 3), np.nan, np.float32),
    }
