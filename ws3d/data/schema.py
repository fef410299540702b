"""The one description of a sample: every field, its shape and dtype, what it is for, and
which stored form carries it. Adding a field means adding a row to :data:`FIELDS`.

Shapes are per sample (J = 17, Human3.6M order; None = any size). Two stored forms:

- ``shards``: the synthetic splits (``ws3d data synth``), every field an array;
- ``records``: the real-data record sets (``ws3d data records``), images stay on disk and
  ``image`` holds their paths.

Roles say who reads a field: ``input`` (the network's), ``2d`` and ``3d`` labels (weak
training never sees a ``3d`` one), ``box`` (the person box the crop consumes),
``group`` and ``extrinsics`` (multi-view), ``meta``, and ``training`` (made on the way
to a batch: by the transform, the trainer or the collate function; never stored).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ws3d.errors import InputError
from ws3d.skeleton import NUM_JOINTS

J = NUM_JOINTS
SHARDS, RECORDS = "shards", "records"


@dataclass(frozen=True)
class Field:
    shape: tuple[int | None, ...]
    dtype: type  # as stored in shards (a record set stores image paths as str)
    role: str
    stored_in: frozenset[str]  # SHARDS, RECORDS: the stored forms that hold it
    multi_view: bool  # only multi-view sets carry it
    doc: str


def _f(shape, dtype, role, stored_in=(SHARDS, RECORDS), multi_view=False, doc=""):
    return Field(tuple(shape), dtype, role, frozenset(stored_in), multi_view, doc)


FIELDS: dict[str, Field] = {
    "image": _f((None, None, 3), np.uint8, "input", doc="RGB pixels (a record set stores the path, under its root)"),
    "K": _f((3, 3), np.float32, "input", doc="intrinsics of the image's pixels; a nominal camera where has_K is False"),
    "has_K": _f((), np.bool_, "input", (RECORDS,),
                doc="False where the source has no intrinsics (MPII); synthetic samples always have them"),
    "uv": _f((J, 2), np.float32, "2d", doc="joints in the image's pixels"),
    "vis": _f((J,), np.uint8, "2d", doc="1 where the joint is labelled (inside the crop, not occluded)"),
    "joints_cam": _f((J, 3), np.float32, "3d", doc="mm, camera coordinates; NaN where unknown"),
    "centre": _f((2,), np.float32, "box", (RECORDS,), doc="centre of the square person box, pixels"),
    "side": _f((), np.float32, "box", (RECORDS,), doc="side of the square person box, pixels"),
    "subject": _f((), np.int32, "meta", (SHARDS,), doc="synthetic subject id"),
    "activity": _f((), np.int8, "meta", (SHARDS,), doc="index into ws3d.data.poses.ACTIVITIES"),
    "group": _f((), np.int64, "group", multi_view=True, doc="id of the group of views of one person"),
    "view": _f((), np.int8, "group", (SHARDS,), True, doc="index of the view within its group"),
    "rig": _f((), np.int64, "group", multi_view=True,
              doc="id of the rig that filmed the view: cameras that stay put from group to group (where they "
                  "move, every group is a rig of its own)"),
    "camera": _f((), np.int64, "group", multi_view=True, doc="which camera of its rig took the view"),
    "R": _f((3, 3), np.float32, "extrinsics", multi_view=True, doc="world-to-camera rotation"),
    "t": _f((3,), np.float32, "3d", multi_view=True, doc="world-to-camera translation, mm (carries the true scale)"),
    "extrinsics_known": _f((), np.bool_, "extrinsics", multi_view=True, doc="whether training may use R (WS+R)"),
    "heatmaps": _f((J, None, None), np.float32, "training", (), doc="target heatmaps (PoseTransform)"),
    "crop": _f((2, 3), np.float64, "training", (), doc="source pixels -> crop pixels affine (PoseTransform)"),
    "depth": _f((J,), np.float32, "training", (), True, doc="triangulated relative depths (weak stage)"),
    "depth_weight": _f((J,), np.float32, "training", (), True, doc="where depth is determined (weak stage)"),
    "source": _f((), np.int64, "training", (), doc="0: a 2D-labelled image, 1: a multi-view view (MixedDataset)"),
}


def names(role: str) -> tuple[str, ...]:
    """The fields with ``role``."""
    return tuple(k for k, f in FIELDS.items() if f.role == role)


def stored_fields(form: str, multi_view: bool) -> dict[str, Field]:
    """The fields that a stored ``form`` (SHARDS or RECORDS) holds, multi-view ones included
    where ``multi_view``."""
    return {k: f for k, f in FIELDS.items() if form in f.stored_in and (multi_view or not f.multi_view)}


def require(arrays, fields: dict[str, tuple | None], where: str | os.PathLike) -> None:
    """Check that ``arrays`` (dict, npz or loaded .mat) has each field, with the given trailing
    shape after the first axis (None in a slot matches any size; a None shape only checks that
    the field exists), and that the checked fields agree on the first axis. The one
    validator: of stored samples (:func:`check_stored`) and of the raw annotation files the
    real-data loaders read. Raises InputError naming the file and the field."""
    rows = None
    for name, tail in fields.items():
        if name not in arrays:
            raise InputError(f"{where}: field {name!r} is missing")
        if tail is None:
            continue
        shape = np.shape(arrays[name])
        ok = len(shape) == len(tail) + 1 and all(t is None or s == t for s, t in zip(shape[1:], tail, strict=True))
        if not ok:
            want = "(N" + "".join(f", {'*' if t is None else t}" for t in tail) + ")"
            raise InputError(f"{where}: field {name!r} has shape {shape}, expected {want}")
        if rows is not None and shape[0] != rows[1]:
            raise InputError(f"{where}: field {name!r} has {shape[0]} rows but {rows[0]!r} has {rows[1]}")
        rows = rows or (name, shape[0])


def check_stored(arrays, form: str, multi_view: bool, where: str | os.PathLike, image_size: int | None = None) -> None:
    """Check stored samples against :data:`FIELDS`: every field of ``form`` present with its
    shape (shards: images image_size x image_size; records: one path per row)."""
    shapes = {k: f.shape for k, f in stored_fields(form, multi_view).items()}
    shapes["image"] = (image_size, image_size, 3) if form == SHARDS else ()
    require(arrays, shapes, where)


def with_rigs(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A multi-view set with ``rig`` and ``camera``. A set from before they existed gets what
    it always meant: each group a rig of its own, each view (its ``view``, else its place in
    the group) a camera of its own. Anything else passes through unchanged."""
    out = dict(arrays)
    if "group" not in arrays or ("rig" in arrays and "camera" in arrays):
        return out
    group = np.asarray(arrays["group"]).astype(np.int64)
    if "view" in arrays:
        camera = np.asarray(arrays["view"]).astype(np.int64)
    else:  # the row's place among its group's rows
        order = np.argsort(group, kind="stable")
        starts = np.r_[0, np.flatnonzero(np.diff(group[order])) + 1]
        place = np.arange(len(group)) - np.repeat(starts, np.diff(np.r_[starts, len(group)]))
        camera = np.empty(len(group), np.int64)
        camera[order] = place
    out["rig"], out["camera"] = group, camera
    return out


def digest_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of a data set's stored fields (name, dtype, shape and bytes of each, in name
    order): what identifies a split or a record set, wherever its files lie. A record set
    is identified by its records (image paths, labels, boxes, cameras), not by its images'
    pixels, which stay on disk."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name} {a.dtype.str} {a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
