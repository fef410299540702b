"""MPI-INF-3DHP: the training sequences and the test set, in the files the data set ships.

Training: ``S{s}/Seq{q}/annot.mat`` (MATLAB v5) with cells ``annot2`` (cameras x 1, each
(F, 56): 28 joints x (u, v)) and ``annot3`` (each (F, 84): 28 joints x (x, y, z) mm,
camera coordinates), plus ``S{s}/Seq{q}/camera.calibration``, a text file with one block
per camera (``name``, ``sensor``, ``size``, ``animated``, ``intrinsic`` 4x4,
``extrinsic`` 4x4 world-to-camera in mm, ``radial``). Frames are expected as
``S{s}/Seq{q}/imageFrames/video_{c}/frame_{f+1:06d}.jpg`` (extracted from the data set's
``imageSequence/video_{c}.avi``). The official download script fetches only the 8 cameras
VNect used (0, 1, 2, 4, 5, 6, 7, 8: ``vnect_cameras.zip``) unless the extra wall and
ceiling cameras are asked for; the loader takes the cameras whose frame folder exists.

Test: ``TS{k}/annot_data.mat`` (MATLAB v7.3, i.e. HDF5) with ``annot2`` (F, 1, 17, 2),
``annot3`` (F, 1, 17, 3) mm, ``univ_annot3`` (F, 1, 17, 3) (the same poses rescaled to a
universal skeleton: the ground truth the standard evaluation scores against) and
``valid_frame`` (F, 1), joints in the 17-joint test order; images
``TS{k}/imageSequence/img_{f+1:06d}.jpg``. The test files carry no intrinsics; K is fitted
by least squares to the annot3 -> annot2 projection of each sequence (annot3, not
univ_annot3, is what projects onto the images).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import scipy.io

from ws3d.camera import intrinsics
from ws3d.data.records import box_of, joint_map, remap_joints, require_file
from ws3d.data.schema import require
from ws3d.errors import InputError, MissingFileError, read_input

# The 28 training joints in ws3d names: 3DHP's "spine (H36M)" is "spine", its "neck" the
# thorax ("neck"), its "head" Human3.6M's neck-top/nose joint ("nose"), its "head_top" "head".
TRAIN_JOINTS = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "nose", "head",
    "l_clavicle", "l_shoulder", "l_elbow", "l_wrist", "l_hand", "r_clavicle", "r_shoulder", "r_elbow", "r_wrist",
    "r_hand", "l_hip", "l_knee", "l_ankle", "l_foot", "l_toe", "r_hip", "r_knee", "r_ankle", "r_foot", "r_toe",
)  # fmt: skip
# The 17 test joints, same names.
TEST_JOINTS = (
    "head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "nose",
)  # fmt: skip
TRAIN_TO_WS3D = joint_map(TRAIN_JOINTS)
TEST_TO_WS3D = joint_map(TEST_JOINTS)


def read_calibration(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``camera.calibration``. Returns intrinsics (C, 3, 3) and extrinsics (C, 4, 4) (mm)."""
    path = require_file(Path(path))
    cameras, current = [], None
    for number, line in enumerate(read_input(path, Path.read_text, "text file").splitlines(), 1):
        if not line.strip():  # blank and whitespace-only lines separate nothing
            continue
        key, *values = line.split()
        if key == "name":
            current = {}
            cameras.append(current)
        elif key in ("intrinsic", "extrinsic"):
            if current is None or len(values) != 16:
                raise InputError(f"{path}:{number}: {key} needs 16 numbers inside a 'name' block")
            current[key] = np.array(values, np.float64).reshape(4, 4)
    for c, cam in enumerate(cameras):
        for key in ("intrinsic", "extrinsic"):
            if key not in cam:
                raise InputError(f"{path}: camera {c} has no {key!r} line")
    if not cameras:
        raise InputError(f"{path}: no camera blocks ('name' lines)")
    return np.stack([c["intrinsic"][:3, :3] for c in cameras]), np.stack([c["extrinsic"] for c in cameras])


def frame_path(subject: int, sequence: int, camera: int, frame: int) -> str:
    """The image of 0-based ``frame`` of a training camera, relative to the data set root."""
    return f"S{subject}/Seq{sequence}/imageFrames/video_{camera}/frame_{frame + 1:06d}.jpg"


def load_train_sequence(root: str | os.PathLike, subject: int, sequence: int, cameras: list[int] | None = None,
                        every: int = 10) -> dict[str, np.ndarray]:  # fmt: skip
    """One training sequence as a multi-view record set (one group per frame, one rig whose
    cameras are the data set's camera indices).

    Args:
        root: the data set root (holding ``S1`` ... ``S8``).
        subject, sequence: e.g. 1, 1 for ``S1/Seq1``.
        cameras: camera indices to use (default: those whose frame folder
            ``imageFrames/video_{c}`` exists; a named camera without one is an error).
        every: keep every n-th frame (consecutive frames are nearly identical).

    Annotated frames whose image does not exist (the annotations can outnumber the
    extracted frames) are dropped, with a warning that counts them.
    """
    folder = Path(root) / f"S{subject}" / f"Seq{sequence}"
    annot_path = require_file(folder / "annot.mat")
    K_all, E_all = read_calibration(folder / "camera.calibration")
    mat = read_input(annot_path, scipy.io.loadmat, "MATLAB annotation file")
    require(mat, {"annot2": None, "annot3": None}, annot_path)
    annot2, annot3 = mat["annot2"].ravel(), mat["annot3"].ravel()
    if not len(annot2) == len(annot3) == len(K_all):
        raise InputError(
            f"{annot_path}: inconsistent camera counts: annot2 has {len(annot2)}, annot3 {len(annot3)}, "
            f"and {folder / 'camera.calibration'} {len(K_all)}"
        )
    present = [c for c in range(len(K_all)) if (folder / "imageFrames" / f"video_{c}").is_dir()]
    if cameras is None and not present:
        raise MissingFileError(f"{folder / 'imageFrames'}: no camera's frame folder (video_0, video_1, ...) exists; "
                               "extract the frames of imageSequence/video_*.avi there")  # fmt: skip
    cameras = present if cameras is None else cameras
    rows = {k: [] for k in ("image", "uv", "K", "joints_cam", "R", "t", "frame", "camera")}
    annotated = dropped = 0
    for c in cameras:
        if not 0 <= c < len(K_all):
            raise InputError(f"{annot_path}: camera {c} requested, the sequence has {len(K_all)}")
        if c not in present:
            raise MissingFileError(f"{folder / 'imageFrames' / f'video_{c}'}: camera {c}'s frame folder is missing "
                                   f"(cameras with frames here: {present or 'none'})")  # fmt: skip
        a2, a3 = np.asarray(annot2[c], np.float64), np.asarray(annot3[c], np.float64)
        if a2.ndim != 2 or a2.shape[1] != 56 or a3.shape != (len(a2), 84):
            raise InputError(
                f"{annot_path}: camera {c}: annot2 {a2.shape} / annot3 {a3.shape}, expected (F, 56) / (F, 84)"
            )
        frames = np.arange(0, len(a2), every)
        exists = np.array([(Path(root) / frame_path(subject, sequence, c, f)).is_file() for f in frames], bool)
        annotated, dropped = annotated + len(frames), dropped + int((~exists).sum())
        frames = frames[exists]
        uv, _ = remap_joints(a2[frames].reshape(-1, 28, 2), TRAIN_TO_WS3D)
        joints, _ = remap_joints(a3[frames].reshape(-1, 28, 3), TRAIN_TO_WS3D)
        rows["image"] += [frame_path(subject, sequence, c, f) for f in frames]
        rows["uv"].append(uv)
        rows["joints_cam"].append(joints)
        rows["K"].append(np.broadcast_to(K_all[c], (len(frames), 3, 3)))
        rows["R"].append(np.broadcast_to(E_all[c, :3, :3], (len(frames), 3, 3)))
        rows["t"].append(np.broadcast_to(E_all[c, :3, 3], (len(frames), 3)))
        rows["frame"].append(frames)
        rows["camera"].append(np.full(len(frames), c, np.int64))
    if not rows["image"]:
        raise MissingFileError(f"{folder / 'imageFrames'}: none of the annotated frames has an image")
    if dropped:
        warnings.warn(f"{folder}: dropped {dropped} of {annotated} annotated frames (every {every}th, cameras "
                      f"{cameras}) whose image is missing under imageFrames/", stacklevel=2)  # fmt: skip
    out = {"image": np.array(rows["image"], dtype=str)}
    for key in ("uv", "K", "joints_cam", "R", "t"):
        out[key] = np.concatenate(rows[key]).astype(np.float32)
    frame = np.concatenate(rows["frame"])
    out["group"] = np.unique(frame, return_inverse=True)[1].astype(np.int64)
    out["rig"] = np.zeros(len(frame), np.int64)  # the sequence's cameras stayed put (concat_records keeps rigs apart)
    out["camera"] = np.concatenate(rows["camera"])
    out["vis"] = np.ones(out["uv"].shape[:2], np.uint8)
    out["centre"], out["side"] = box_of(out["uv"], out["vis"])
    out["extrinsics_known"] = np.ones(len(frame), bool)
    return out


def _read_test_mat(path: Path) -> dict[str, np.ndarray]:
    """annot_data.mat as {name: array}, in h5py's axis order (MATLAB's reversed).

    The official files are MATLAB v7.3 (HDF5 behind a 512-byte MATLAB header); copies
    re-saved with h5py have no header, and scipy then fails with a ValueError rather than
    its v7.3 NotImplementedError. So h5py gets every file scipy cannot read, and a file
    neither reads raises an :class:`InputError` that says why each failed.
    """
    try:
        mat = scipy.io.loadmat(path)
        return {k: np.asarray(v).T for k, v in mat.items() if not k.startswith("__")}  # v5: MATLAB's axis order
    except Exception as error:  # v7.3 (NotImplementedError), a header-less HDF5 file, or not a .mat at all
        scipy_error = error
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]) for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except Exception as error:  # h5py's error types vary (OSError for a non-HDF5 file); the file is the problem
        raise InputError(
            f"{path}: not a readable MATLAB annotation file: scipy.io.loadmat (v5) failed "
            f"({type(scipy_error).__name__}: {scipy_error}) and h5py (v7.3 / HDF5) failed "
            f"({type(error).__name__}: {error})"
        ) from error


def fit_intrinsics(points: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Least-squares pinhole K (fx, fy, cx, cy) from camera points (N, 3) and their pixels (N, 2)."""
    x, y = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
    (fx, cx), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), uv[:, 0], rcond=None)
    (fy, cy), *_ = np.linalg.lstsq(np.stack([y, np.ones_like(y)], 1), uv[:, 1], rcond=None)
    return intrinsics(fx, fy, cx, cy)


def load_test_sequence(root: str | os.PathLike, sequence: int) -> dict[str, np.ndarray]:
    """Test sequence ``TS{sequence}``: its valid frames as a single-view record set, with
    ``joints_cam`` from ``univ_annot3`` (what published PCK, AUC and MPJPE are scored on)."""
    path = require_file(Path(root) / f"TS{sequence}" / "annot_data.mat")
    mat = _read_test_mat(path)
    require(mat, {"annot2": None, "annot3": None, "univ_annot3": None, "valid_frame": None}, path)
    annot2, annot3 = mat["annot2"].reshape(-1, 17, 2), mat["annot3"].reshape(-1, 17, 3)
    univ = mat["univ_annot3"].reshape(-1, 17, 3)
    valid = mat["valid_frame"].ravel().astype(bool)
    if not len(annot2) == len(annot3) == len(univ) == len(valid):
        raise InputError(f"{path}: annot2, annot3, univ_annot3 and valid_frame list {len(annot2)}, {len(annot3)}, "
                         f"{len(univ)}, {len(valid)} frames")  # fmt: skip
    frames = np.flatnonzero(valid)
    uv, _ = remap_joints(annot2[frames].astype(np.float64), TEST_TO_WS3D)
    metric, _ = remap_joints(annot3[frames].astype(np.float64), TEST_TO_WS3D)
    joints, _ = remap_joints(univ[frames].astype(np.float64), TEST_TO_WS3D)
    K = fit_intrinsics(metric.reshape(-1, 3), uv.reshape(-1, 2))
    vis = np.ones(uv.shape[:2], np.uint8)
    centre, side = box_of(uv, vis)
    return {
        "image": np.array([f"TS{sequence}/imageSequence/img_{f + 1:06d}.jpg" for f in frames], dtype=str),
        "uv": uv.astype(np.float32),
        "vis": vis,
        "centre": centre,
        "side": side,
        "K": np.broadcast_to(K, (len(frames), 3, 3)).astype(np.float32),
        "joints_cam": joints.astype(np.float32),
    }
