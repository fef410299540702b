"""Readers for the 2D detection files of common pose estimators, mapped onto ws3d's 17 joints.

Every reader returns what :func:`ws3d.data.tracklets.load_detections` returns, so
:func:`ws3d.data.tracklets.build_tracklets` takes it as it is: a list
``[(frame, poses (P, 17, 3), image name or "")]`` sorted by frame, poses in the Human3.6M
17-joint order (0 pelvis, 1 RHip, 2 RKnee, 3 RAnkle, 4 LHip, 5 LKnee, 6 LAnkle, 7 spine,
8 thorax/neck, 9 nose/neck-top, 10 head, 11 LShoulder, 12 LElbow, 13 LWrist,
14 RShoulder, 15 RElbow, 16 RWrist) as [u, v, confidence], u = column and v = row in
the image's pixels. A frame the source lists without people is kept, with P = 0.
:func:`as_arrays` turns the list into the ``frame`` / ``keypoints`` / ``image`` arrays
of the npz form that ``load_detections`` reads. :func:`read_detections` picks the reader
from the file's content (``format=`` overrides it).

Formats:

- ``openpose``: OpenPose ``--write_json`` output, one JSON file per frame
  (``{"version": ..., "people": [{"person_id": [-1], "pose_keypoints_2d":
  [x0, y0, c0, x1, ...], ...}]}``), as OpenPose and Pose2Sim write it; a folder of
  such files or one file. The frame number is the last run of digits in the file name
  (OpenPose: ``<video>_000000000012_keypoints.json`` -> 12; Pose2Sim:
  ``<video>_000012.json`` -> 12); a single file without one is frame 0. Coordinates
  must be pixels (OpenPose's default ``--keypoint_scale 0``). Keypoint order BODY_25,
  COCO_18 (OpenPose's COCO, with a neck), COCO_17 (the COCO order that Pose2Sim/RTMPose
  write into OpenPose-style JSON), HALPE_26 or COCO_133 (COCO-WholeBody), told apart by
  the keypoint count.
- ``coco``: COCO keypoint results, as MMPose / RTMPose top-down testing and AlphaPose
  write them: a JSON list of ``{"image_id", "category_id", "keypoints": [x, y, score] *
  K, "score", optionally "bbox"}``, one entry per person. The frame of an entry is,
  in this order: with ``annotations=`` (a COCO annotation file), the number in the file
  name of its image in that file's ``images`` list (``{"id", "file_name"}``), the image
  name being that file name; else, for a string image_id (AlphaPose writes the image's
  file name), the number in that name, the image name being the string; else the
  integer image_id itself. ``keypoints`` scores are the per-joint confidences; the
  instance ``score``, ``category_id`` and ``bbox`` are not used. K = 17 is COCO's order,
  26 HALPE_26, 133 COCO-WholeBody.
- ``mediapipe``: MediaPipe Pose's 33 landmarks. MediaPipe writes no file of its own, so
  ws3d reads an ``.npy`` array of shape (frames, 33, C) (MediaPipe Pose tracks one
  person) or (frames, people, 33, C), row f being frame f. C = 4 holds MediaPipe's
  landmark fields ``x, y, z, visibility`` in that order, C = 3 holds ``x, y,
  visibility``; x and y are normalised to the image width and height (MediaPipe's
  ``pose_landmarks``), so ``width`` and ``height`` in pixels are required (an array
  already in pixels: width = height = 1). ``visibility`` is the confidence; z is not
  used. A person whose landmarks are all NaN (how freemocap marks a frame without a
  detection) is no detection; NaN in only some landmarks is an error.
- ``ws3d``: ws3d's own detections JSON / npz (:mod:`ws3d.data.tracklets`).

Mapping onto ws3d's joints (:data:`JOINT_TABLE`; names as each order's public source
spells them; ``a + b`` = the midpoint of a and b; ``-`` = not in the order, masked)::

    ws3d joint  BODY_25    COCO_18      COCO_17, COCO_133            HALPE_26        MEDIAPIPE_33
    pelvis      MidHip     RHip + LHip  right_hip + left_hip         hip             RIGHT_HIP + LEFT_HIP
    r_hip       RHip       RHip         right_hip                    right_hip       RIGHT_HIP
    r_knee      RKnee      RKnee        right_knee                   right_knee      RIGHT_KNEE
    r_ankle     RAnkle     RAnkle       right_ankle                  right_ankle     RIGHT_ANKLE
    l_hip       LHip       LHip         left_hip                     left_hip        LEFT_HIP
    l_knee      LKnee      LKnee        left_knee                    left_knee       LEFT_KNEE
    l_ankle     LAnkle     LAnkle       left_ankle                   left_ankle      LEFT_ANKLE
    spine       -          -            -                            -               -
    neck        Neck       Neck         right_shoulder+left_shoulder neck            RIGHT_SHOULDER + LEFT_SHOULDER
    nose        Nose       Nose         nose                         nose            NOSE
    head        -          -            -                            head            -
    l_shoulder  LShoulder  LShoulder    left_shoulder                left_shoulder   LEFT_SHOULDER
    l_elbow     LElbow     LElbow       left_elbow                   left_elbow      LEFT_ELBOW
    l_wrist     LWrist     LWrist       left_wrist                   left_wrist      LEFT_WRIST
    r_shoulder  RShoulder  RShoulder    right_shoulder               right_shoulder  RIGHT_SHOULDER
    r_elbow     RElbow     RElbow       right_elbow                  right_elbow     RIGHT_ELBOW
    r_wrist     RWrist     RWrist       right_wrist                  right_wrist     RIGHT_WRIST

A midpoint's confidence is the lower of its two keypoints' (so it passes a confidence
threshold only where both do). A joint with confidence 0 (masked, or undetected:
OpenPose writes 0, 0, 0) is [0, 0, 0]. The spine has no counterpart in any of these
orders and is always masked; the head (top) only exists in HALPE_26. ws3d's
nose/neck-top joint takes the detector's nose.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ws3d.data.records import remap_joints
from ws3d.data.tracklets import load_detections
from ws3d.errors import InputError, MissingFileError, read_input
from ws3d.skeleton import JOINTS, NUM_JOINTS

# OpenPose BODY_25: CMU-Perceptual-Computing-Lab/openpose, src/openpose/pose/poseParameters.cpp
# (POSE_BODY_25_BODY_PARTS, also listed in doc/02_output.md), without "Background".
BODY_25 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
    "RSmallToe", "RHeel",
)  # fmt: skip
# OpenPose COCO (18 keypoints, with a neck): the same file's POSE_COCO_BODY_PARTS, without "Background".
COCO_18 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee", "RAnkle",
    "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip
# COCO's 17 keypoints as MMPose names them: open-mmlab/mmpose configs/_base_/datasets/coco.py (the first 17
# of halpe26.py and coco_wholebody.py are the same); Pose2Sim's COCO_17 (perfanalytics/pose2sim,
# Pose2Sim/skeletons.py) is this order.
COCO_17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
# Halpe's 26 body keypoints: open-mmlab/mmpose configs/_base_/datasets/halpe26.py (Pose2Sim's HALPE_26,
# Pose2Sim/skeletons.py, has the same ids). "head" is the top of the head, "hip" the hips' centre.
HALPE_26 = COCO_17 + (
    "head", "neck", "hip", "left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe", "left_heel",
    "right_heel",
)  # fmt: skip
# COCO-WholeBody's 133 keypoints: open-mmlab/mmpose configs/_base_/datasets/coco_wholebody.py (Pose2Sim's
# COCO_133): COCO's 17, 6 foot points, 68 face points, then the left and the right hand (21 each).
_HAND = ("hand_root",) + tuple(f"{finger}{k}" for finger in ("thumb", "forefinger", "middle_finger", "ring_finger",
                                                             "pinky_finger") for k in range(1, 5))  # fmt: skip
COCO_133 = (
    COCO_17
    + ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
    + tuple(f"face-{k}" for k in range(68))
    + tuple(f"left_{name}" for name in _HAND)
    + tuple(f"right_{name}" for name in _HAND)
)
# MediaPipe Pose's 33 landmarks: google-ai-edge/mediapipe, mediapipe/python/solutions/pose.py (PoseLandmark).
MEDIAPIPE_33 = (
    "NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE", "RIGHT_EYE_OUTER",
    "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW",
    "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY", "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX",
    "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP", "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE",
    "LEFT_HEEL", "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX",
)  # fmt: skip

ORDERS: dict[str, tuple[str, ...]] = {
    "BODY_25": BODY_25, "COCO_18": COCO_18, "COCO_17": COCO_17, "HALPE_26": HALPE_26, "COCO_133": COCO_133,
    "MEDIAPIPE_33": MEDIAPIPE_33,
}  # fmt: skip

# The one mapping table (the module docstring prints it). Per ws3d joint, one entry per column of
# TABLE_COLUMNS: a keypoint name, a pair of names (their midpoint), or None (masked). COCO_133 starts with
# COCO's 17 under the same names, so it reads the COCO_17 column.
TABLE_COLUMNS = ("BODY_25", "COCO_18", "COCO_17", "HALPE_26", "MEDIAPIPE_33")
_HIPS = (("RHip", "LHip"), ("right_hip", "left_hip"), ("RIGHT_HIP", "LEFT_HIP"))
JOINT_TABLE: dict[str, tuple] = {
    "pelvis": ("MidHip", _HIPS[0], _HIPS[1], "hip", _HIPS[2]),
    "r_hip": ("RHip", "RHip", "right_hip", "right_hip", "RIGHT_HIP"),
    "r_knee": ("RKnee", "RKnee", "right_knee", "right_knee", "RIGHT_KNEE"),
    "r_ankle": ("RAnkle", "RAnkle", "right_ankle", "right_ankle", "RIGHT_ANKLE"),
    "l_hip": ("LHip", "LHip", "left_hip", "left_hip", "LEFT_HIP"),
    "l_knee": ("LKnee", "LKnee", "left_knee", "left_knee", "LEFT_KNEE"),
    "l_ankle": ("LAnkle", "LAnkle", "left_ankle", "left_ankle", "LEFT_ANKLE"),
    "spine": (None, None, None, None, None),
    "neck": ("Neck", "Neck", ("right_shoulder", "left_shoulder"), "neck", ("RIGHT_SHOULDER", "LEFT_SHOULDER")),
    "nose": ("Nose", "Nose", "nose", "nose", "NOSE"),
    "head": (None, None, None, "head", None),
    "l_shoulder": ("LShoulder", "LShoulder", "left_shoulder", "left_shoulder", "LEFT_SHOULDER"),
    "l_elbow": ("LElbow", "LElbow", "left_elbow", "left_elbow", "LEFT_ELBOW"),
    "l_wrist": ("LWrist", "LWrist", "left_wrist", "left_wrist", "LEFT_WRIST"),
    "r_shoulder": ("RShoulder", "RShoulder", "right_shoulder", "right_shoulder", "RIGHT_SHOULDER"),
    "r_elbow": ("RElbow", "RElbow", "right_elbow", "right_elbow", "RIGHT_ELBOW"),
    "r_wrist": ("RWrist", "RWrist", "right_wrist", "right_wrist", "RIGHT_WRIST"),
}
_COLUMN_OF = {**{name: name for name in TABLE_COLUMNS}, "COCO_133": "COCO_17"}

FORMATS = ("openpose", "coco", "mediapipe", "ws3d")

Detections = list[tuple[int, np.ndarray, str]]


def _plan(order: str) -> list[tuple[int, ...]]:
    """Per ws3d joint, the source indices it comes from: () masked, (i,) keypoint i, (i, k) their midpoint."""
    names, column = ORDERS[order], TABLE_COLUMNS.index(_COLUMN_OF[order])
    plan = []
    for joint in JOINTS:
        entry = JOINT_TABLE[joint][column]
        sources = () if entry is None else (entry,) if isinstance(entry, str) else entry
        plan.append(tuple(names.index(name) for name in sources))
    return plan


# Built at import, so a misspelt name in the table fails at once rather than on some user's file.
_PLANS = {order: _plan(order) for order in ORDERS}
_BY_COUNT = {len(names): order for order, names in ORDERS.items()}


def canonical_order(order: str) -> str:
    """The ORDERS key for a user's spelling of an order ("body25", "BODY_25", "halpe-26" ...)."""
    key = re.sub(r"[^A-Z0-9]", "", str(order).upper())
    for name in ORDERS:
        if name.replace("_", "") == key:
            return name
    raise InputError(f"unknown keypoint order {order!r}; known: {', '.join(ORDERS)}")


def to_ws3d(keypoints: np.ndarray, order: str) -> np.ndarray:
    """Map detections in a detector's order onto ws3d's 17 joints by :data:`JOINT_TABLE`.

    Args:
        keypoints: (P, K, 3) [u, v, confidence] in ``order`` (K = len(ORDERS[order])).
        order: a key of :data:`ORDERS`.

    Returns:
        (P, 17, 3) float64 [u, v, confidence]; masked joints and joints of confidence 0
        are [0, 0, 0]; a midpoint joint has the lower confidence of its two keypoints.
    """
    keypoints = np.asarray(keypoints, np.float64)
    plan = _PLANS[order]
    out, _ = remap_joints(keypoints, [s[0] if len(s) == 1 else None for s in plan])
    out = np.nan_to_num(out, nan=0.0)
    for j, source in enumerate(plan):
        if len(source) == 2:
            a, b = keypoints[:, source[0]], keypoints[:, source[1]]
            out[:, j, :2] = (a[:, :2] + b[:, :2]) / 2
            out[:, j, 2] = np.minimum(a[:, 2], b[:, 2])
    # One convention for "no joint" whichever way it arose (masked, undetected, a midpoint
    # missing one end), and no negative confidences downstream.
    out[out[..., 2] <= 0] = 0.0
    return out


def as_arrays(detections: Detections) -> dict[str, np.ndarray]:
    """The detections as the npz form of :func:`ws3d.data.tracklets.load_detections`, one row per
    person: ``frame`` (D,) int64, ``keypoints`` (D, 17, 3) float64, ``image`` (D,) str. Frames
    without people have no row."""
    rows = [(f, pose, image) for f, poses, image in detections for pose in poses]
    return {
        "frame": np.array([f for f, _, _ in rows], np.int64),
        "keypoints": np.array([p for _, p, _ in rows], np.float64).reshape(-1, NUM_JOINTS, 3),
        "image": np.array([im for _, _, im in rows], dtype=str),
    }


def _frame_number(name: str) -> int | None:
    """The last run of digits in a file name's stem (OpenPose's ``_keypoints`` suffix has none)."""
    digits = re.findall(r"\d+", Path(name).stem)
    return int(digits[-1]) if digits else None


def _read_json(path: Path):
    return read_input(path, lambda p: json.loads(Path(p).read_text()), "JSON file")


def _keypoints(values, where: str) -> np.ndarray:
    """A flat [x, y, c, ...] JSON list -> (K, 3), or InputError naming ``where``."""
    if not isinstance(values, list):
        raise InputError(f"{where} is missing or not a list")
    # Checked here because numpy would quietly turn the string "1.5" into a number.
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise InputError(f"{where} has non-numeric values")
    if len(values) % 3:
        raise InputError(f"{where} has {len(values)} values, not a list of [x, y, confidence] triples")
    keypoints = np.asarray(values, np.float64).reshape(-1, 3)
    if not np.isfinite(keypoints).all():
        raise InputError(f"{where} has NaN or infinite values")
    return keypoints


class _Order:
    """The keypoint order of one reading: given by the caller, or taken from the first person
    read; every later person must have its count."""

    def __init__(self, order: str | None, allowed: tuple[str, ...]):
        self.allowed = allowed
        self.order = canonical_order(order) if order is not None else None
        self.source = "given as order=" if order is not None else ""
        if self.order is not None and self.order not in allowed:
            raise InputError(f"order {self.order} does not occur in this format; it holds {', '.join(allowed)}")

    def of(self, count: int, where: str) -> str:
        if self.order is not None:
            expected = len(ORDERS[self.order])
            if count != expected:
                raise InputError(f"{where} has {count} keypoints, but {self.order} ({self.source}) has {expected}")
            return self.order
        order = _BY_COUNT.get(count)
        if order not in self.allowed:
            known = ", ".join(f"{o} {len(ORDERS[o])}" for o in self.allowed)
            raise InputError(f"{where} has {count} keypoints, which matches no known order ({known})")
        self.order, self.source = order, f"the order of {where}"
        return order


_OPENPOSE_ORDERS = ("BODY_25", "COCO_18", "COCO_17", "HALPE_26", "COCO_133")


def _openpose_file(path: Path, order: _Order) -> np.ndarray:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise InputError(f"{path}: not an OpenPose JSON file (no 'people' list)")
    poses = []
    for k, person in enumerate(data["people"]):
        where = f"{path}: people[{k}].pose_keypoints_2d"
        keypoints = _keypoints(person.get("pose_keypoints_2d") if isinstance(person, dict) else None, where)
        poses.append(to_ws3d(keypoints[None], order.of(len(keypoints), where))[0])
    return np.array(poses, np.float64).reshape(-1, NUM_JOINTS, 3)


def read_openpose(path: str | os.PathLike, order: str | None = None) -> Detections:
    """Read OpenPose-style per-frame JSON: a folder of them, or one file.

    Args:
        path: a folder of ``*.json`` files (one per frame; the frame number is the last
            run of digits in each name) or one such file (frame 0 if its name has no number).
        order: the keypoint order (a key of :data:`ORDERS`, any spelling), checked against
            every person; None takes it from the keypoint count of the first person.

    Returns:
        [(frame, poses (P, 17, 3) [u, v, confidence] px, "")], sorted by frame.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        if not files:
            raise InputError(f"{path}: no .json files in this folder (expected OpenPose per-frame JSON)")
        numbered = {}
        for file in files:
            frame = _frame_number(file.name)
            if frame is None:
                raise InputError(f"{file}: no frame number in the name (OpenPose writes <name>_<frame>_keypoints.json)")
            if frame in numbered:
                raise InputError(f"{file}: frame {frame} again (also {numbered[frame].name}); one video per folder")
            numbered[frame] = file
    elif path.is_file():
        numbered = {_frame_number(path.name) or 0: path}
    else:
        raise MissingFileError(f"{path}: no such file or folder")
    known = _Order(order, _OPENPOSE_ORDERS)
    return [(frame, _openpose_file(file, known), "") for frame, file in sorted(numbered.items())]


def _coco_images(annotations: Path) -> dict:
    """{image id: (frame, file name)} from a COCO annotation file's ``images`` list."""
    if not annotations.is_file():
        raise MissingFileError(f"{annotations}: no such file (the COCO annotation file)")
    data = _read_json(annotations)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"{annotations}: not a COCO annotation file (no 'images' list)")
    images, frames = {}, {}
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise InputError(f"{annotations}: images[{k}] has no 'id' and 'file_name'")
        name = image["file_name"]
        frame = _frame_number(name)
        if frame is None:
            raise InputError(f"{annotations}: images[{k}] file name {name!r} has no frame number in it")
        if frame in frames and frames[frame] != name:
            raise InputError(f"{annotations}: images[{k}] {name!r} has frame number {frame}, as {frames[frame]!r} has")
        frames[frame] = name
        images[image["id"]] = (frame, name)
    return images


def read_coco_results(path: str | os.PathLike, annotations: str | os.PathLike | None = None,
                      order: str | None = None) -> Detections:  # fmt: skip
    """Read COCO keypoint results (MMPose / RTMPose top-down, AlphaPose).

    Args:
        path: a JSON list of ``{"image_id", "keypoints": [x, y, score] * K, ...}``.
        annotations: optional COCO annotation file whose ``images`` (``id``, ``file_name``)
            give each image id its frame (the number in the file name) and image name;
            its images without results are frames without people.
        order: the keypoint order (COCO_17, HALPE_26, COCO_133); None takes it from the count.

    Returns:
        [(frame, poses (P, 17, 3) [u, v, confidence] px, image name or "")], sorted by
        frame, people in file order. Without ``annotations`` the frame is the integer
        image_id, or the number in a string image_id (which is also the image name).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    images = _coco_images(Path(annotations)) if annotations is not None else None
    data = _read_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: not a COCO keypoint-results file (expected a JSON list of results)")
    by_frame: dict[int, list] = {frame: [[], name] for frame, name in (images or {}).values()}
    known = _Order(order, ("COCO_17", "HALPE_26", "COCO_133"))
    for k, entry in enumerate(data):
        where = f"{path}: [{k}]"
        if not isinstance(entry, dict) or "image_id" not in entry or "keypoints" not in entry:
            raise InputError(f"{where} has no 'image_id' and 'keypoints' (not a COCO keypoint result)")
        image_id = entry["image_id"]
        if images is not None:
            if image_id not in images:
                raise InputError(f"{where}: image_id {image_id!r} is not among the images of {annotations}")
            frame, name = images[image_id]
        elif isinstance(image_id, str):
            frame, name = _frame_number(image_id), image_id
            if frame is None:
                raise InputError(f"{where}: image_id {image_id!r} has no frame number in it (give annotations=)")
        elif isinstance(image_id, int) and not isinstance(image_id, bool):
            frame, name = image_id, ""
        else:
            raise InputError(f"{where}: image_id {image_id!r} is neither an integer nor a file name")
        listed = by_frame.setdefault(frame, [[], name])
        if listed[1] != name:
            raise InputError(f"{where}: image {name!r} has frame number {frame}, as {listed[1]!r} has")
        keypoints = _keypoints(entry["keypoints"], f"{where}.keypoints")
        listed[0].append(to_ws3d(keypoints[None], known.of(len(keypoints), f"{where}.keypoints"))[0])
    return [(f, np.array(p, np.float64).reshape(-1, NUM_JOINTS, 3), name) for f, (p, name) in sorted(by_frame.items())]


def read_mediapipe(path: str | os.PathLike, width: float | None, height: float | None) -> Detections:
    """Read MediaPipe Pose landmarks saved as an ``.npy`` array (the module docstring's ``mediapipe``).

    Args:
        path: (frames, 33, C) or (frames, people, 33, C) array, C = 4: x, y, z,
            visibility; C = 3: x, y, visibility; x, y normalised to the image.
        width, height: the image size in pixels (u = x * width, v = y * height).

    Returns:
        [(frame = row, poses (P, 17, 3) [u, v, visibility] px, "")] for every row; a
        person whose landmarks are all NaN is left out of its frame.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    if width is None or height is None:
        raise InputError(f"{path}: MediaPipe landmarks are normalised to the image; give its width and height in px")
    if not (width > 0 and height > 0):
        raise InputError(f"{path}: image width and height must be positive, got {width} x {height}")
    landmarks = read_input(path, lambda p: np.load(p, allow_pickle=False), "numpy .npy array")
    if landmarks.dtype.kind not in "fiu":
        raise InputError(f"{path}: non-numeric values (dtype {landmarks.dtype}); expected MediaPipe landmarks")
    if landmarks.ndim == 3:
        landmarks = landmarks[:, None]
    count = len(MEDIAPIPE_33)
    if landmarks.ndim != 4 or landmarks.shape[2] != count or landmarks.shape[3] not in (3, 4):
        raise InputError(f"{path}: expected MediaPipe landmarks of shape (frames, {count}, 3 or 4) or "
                         f"(frames, people, {count}, 3 or 4), got {landmarks.shape}")  # fmt: skip
    landmarks = landmarks.astype(np.float64)
    absent = np.isnan(landmarks).all(axis=(2, 3))
    broken = ~np.isfinite(landmarks).all(axis=(2, 3)) & ~absent
    if broken.any():
        f, p = np.argwhere(broken)[0]
        raise InputError(f"{path}: frame {f}, person {p} has NaN or infinite values in some of its landmarks")
    visibility = landmarks[..., -1]
    if landmarks.shape[3] == 3 and ((visibility[~absent] < 0) | (visibility[~absent] > 1)).any():
        raise InputError(f"{path}: the third column is not a visibility in [0, 1] "
                         "(an x, y, z array? save x, y, z, visibility)")  # fmt: skip
    pixels = np.stack([landmarks[..., 0] * width, landmarks[..., 1] * height, visibility], -1)
    return [(f, to_ws3d(pixels[f][~absent[f]], "MEDIAPIPE_33"), "") for f in range(len(pixels))]


def _sniff(path: Path) -> str:
    """The format of ``path`` from its content (a folder is OpenPose's one-file-per-frame)."""
    if path.is_dir():
        return "openpose"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "mediapipe"
    if suffix == ".npz":
        return "ws3d"
    if suffix == ".json":
        data = _read_json(path)
        if isinstance(data, dict) and "people" in data:
            return "openpose"
        if isinstance(data, dict) and "frames" in data:
            return "ws3d"
        if isinstance(data, list) and all(isinstance(e, dict) and "keypoints" in e for e in data[:1]):
            return "coco"
    raise InputError(f"{path}: unknown detections format (expected an OpenPose JSON or folder of them, COCO "
                     "keypoint results, a MediaPipe .npy, or ws3d's detections JSON / npz)")  # fmt: skip


def read_detections(path: str | os.PathLike, format: str | None = None, *, order: str | None = None,
                    annotations: str | os.PathLike | None = None, width: float | None = None,
                    height: float | None = None) -> Detections:  # fmt: skip
    """Read 2D detections in any format of the module docstring, mapped onto ws3d's 17 joints.

    Args:
        path: the file, or the folder of OpenPose per-frame JSON files.
        format: one of :data:`FORMATS`; None picks it from the content (a folder or a JSON
            with ``people``: openpose; a JSON list of results: coco; .npy: mediapipe;
            a JSON with ``frames`` or an .npz: ws3d).
        order: keypoint order for openpose / coco (see :func:`read_openpose`).
        annotations: COCO annotation file for coco (see :func:`read_coco_results`).
        width, height: image size in pixels, required for mediapipe.

    Returns:
        [(frame, poses (P, 17, 3) [u, v, confidence] px, image name or "")], sorted by
        frame: what :func:`ws3d.data.tracklets.build_tracklets` takes.
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file or folder")
    if path.is_dir() and format not in (None, "openpose"):
        raise InputError(f"{path}: a folder, but {format} detections are one file")
    if format is not None and format not in FORMATS:
        raise InputError(f"unknown detections format {format!r}; known: {', '.join(FORMATS)}")
    format = format or _sniff(path)
    if format == "openpose":
        return read_openpose(path, order)
    if format == "coco":
        return read_coco_results(path, annotations, order)
    if format == "mediapipe":
        return read_mediapipe(path, width, height)
    return load_detections(path)
