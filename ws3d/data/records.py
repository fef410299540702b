"""The common form every real-data loader returns, and the dataset that reads its images.

A record set is a dict of numpy arrays with N rows, the fields that
:mod:`ws3d.data.schema` lists for ``records``: ``image`` (N,) str paths relative to the
data set root, ``uv``, ``vis`` (0 for joints the data set lacks or does not label), the
person box ``centre`` / ``side``, ``K`` and ``has_K``, ``joints_cam`` (NaN where unknown),
and for multi-view sets ``group``, ``rig``, ``camera``, ``R``, ``t`` and ``extrinsics_known``
(a set without ``rig`` and ``camera`` gets each group as a rig of its own:
:func:`ws3d.data.schema.with_rigs`).

Unknown intrinsics are decided here, once: a loader leaves K NaN where its source has
none (MPII), and :func:`with_cameras` (run on every record set a RecordDataset wraps or
save_records writes) sets ``has_K`` False there and puts a nominal camera in K.

A record-set file (:func:`save_records`, ``ws3d data records``) is an .npz of those
arrays plus ``root``, the folder the image paths are relative to; the trainer and
``ws3d eval`` read it lazily with :func:`open_records` (images stay on disk).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ws3d.camera import intrinsics
from ws3d.data.schema import RECORDS, check_stored, require, with_rigs
from ws3d.data.transforms import person_box
from ws3d.errors import InputError, MissingFileError
from ws3d.skeleton import JOINTS, NUM_JOINTS


def joint_map(source_names: tuple[str, ...]) -> list[int | None]:
    """For each ws3d joint, its index in a data set's joint list (named in ws3d's
    vocabulary, ``ws3d.skeleton.JOINTS``), or None where the data set lacks it."""
    return [source_names.index(name) if name in source_names else None for name in JOINTS]


def remap_joints(values: np.ndarray, source_index: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """Reorder (..., J_src, D) values into the 17-joint order.

    source_index[j] is the source joint for ws3d joint j, or None when the source lacks
    it. Returns (values (..., 17, D) with NaN for missing joints, mask (17,) bool).
    """
    if len(source_index) != NUM_JOINTS:
        raise InputError(f"a joint map needs {NUM_JOINTS} entries, got {len(source_index)}")
    out = np.full(values.shape[:-2] + (NUM_JOINTS, values.shape[-1]), np.nan)
    mask = np.array([s is not None for s in source_index])
    out[..., mask, :] = values[..., [s for s in source_index if s is not None], :]
    return out, mask


def box_of(uv: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes of many poses: uv (N, J, 2), vis (N, J) -> centre (N, 2), side (N,) float32."""
    boxes = [person_box(u, v) for u, v in zip(uv, vis, strict=True)]
    return np.array([c for c, _ in boxes], np.float32).reshape(-1, 2), np.array([s for _, s in boxes], np.float32)


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    return path


class RecordDataset(torch.utils.data.Dataset):
    """Samples of a record set: reads ``root / image`` (RGB) and returns the record's fields.

    Items are dicts like the synthetic ones plus ``centre`` / ``side``, so
    :class:`ws3d.data.transforms.PoseTransform` cuts the person-centred crop. ``arrays``
    holds the record set, as in :class:`ws3d.data.ShardDataset`.
    """

    def __init__(self, records: dict[str, np.ndarray], root: str | os.PathLike,
                 where: str | os.PathLike = "record set"):  # fmt: skip
        self.arrays, self.root = with_rigs(with_cameras(records, where)), Path(root)

    def __len__(self) -> int:
        return len(self.arrays["image"])

    def __getitem__(self, i: int) -> dict:
        path = self.root / str(self.arrays["image"][i])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise MissingFileError(f"{path}: missing or not an image")
        sample = {k: v[i] for k, v in self.arrays.items() if k != "image"}
        sample["image"] = np.ascontiguousarray(image[..., ::-1])
        return sample


def with_cameras(records: dict[str, np.ndarray], where: str | os.PathLike = "record set") -> dict[str, np.ndarray]:
    """The record set with ``has_K`` (False where K is not finite, unless the set says so
    already) and, where has_K is False, a nominal camera for the person box in K: focal
    length = the box side, principal point = the box centre, so that the crop's K is a
    ~53 degree field of view centred on the crop. The ops refuse NaN, and a pose lifted
    with a nominal camera is only ever a stand-in (has_K says so)."""
    require(records, {"image": (), "K": (3, 3), "centre": (2,), "side": ()}, where)
    out = dict(records)
    K = np.asarray(records["K"], np.float32)
    has_K = np.asarray(records["has_K"], bool) if "has_K" in records else np.isfinite(K).all((1, 2))
    if not has_K.all():
        centre, side = np.asarray(records["centre"], np.float64), np.asarray(records["side"], np.float64)
        nominal = np.stack([intrinsics(s, s, cx, cy) for s, (cx, cy) in zip(side, centre, strict=True)])
        K = np.where(has_K[:, None, None], K, nominal.reshape(-1, 3, 3)).astype(np.float32)
    out["K"], out["has_K"] = K, has_K
    return out


def concat_records(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One record set from several with the same fields; ``group`` and ``rig`` ids are
    offset so that groups and rigs of different parts stay apart."""
    keys = set(parts[0])
    if any(set(p) != keys for p in parts):
        raise InputError("record sets with different fields cannot be joined: " + " vs ".join(
            str(sorted(p)) for p in parts))  # fmt: skip
    out = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    for ids in ("group", "rig"):
        if ids in keys:
            offsets = np.cumsum([0] + [int(p[ids].max()) + 1 if len(p[ids]) else 0 for p in parts[:-1]])
            out[ids] = np.concatenate([p[ids] + o for p, o in zip(parts, offsets, strict=True)])
    return out


def require_images(records: dict[str, np.ndarray], root: Path, where: str | os.PathLike) -> None:
    """Every image a record set names must exist under ``root``: a missing one is reported
    here, with a count and the first path, not later inside a DataLoader worker."""
    missing = [str(p) for p in records["image"] if not (root / str(p)).is_file()]
    if missing:
        raise MissingFileError(f"{where}: {len(missing)} of {len(records['image'])} images are missing under {root} "
                               f"(first: {root / missing[0]})")  # fmt: skip


def save_records(path: str | os.PathLike, records: dict[str, np.ndarray], root: str | os.PathLike) -> None:
    """Write a record set and its image root (stored absolute) to an .npz, atomically."""
    path, root = Path(path), Path(root).resolve()
    records = with_rigs(with_cameras(records, path))
    check_stored(records, RECORDS, "group" in records, path)
    if not root.is_dir():
        raise MissingFileError(f"{root}: no such folder (the images' root)")
    require_images(records, root, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, root=np.array(str(root)), **records)
    os.replace(tmp, path)


def open_records(path: str | os.PathLike, multi_view: bool = False) -> RecordDataset:
    """The :class:`RecordDataset` of a file written by :func:`save_records`. Missing or
    misshapen fields (``multi_view``: also group, R, t, extrinsics_known) raise InputError
    naming the file and the field, and images missing under its root raise
    MissingFileError with their count. A file from before ``has_K`` gets it from K."""
    path = require_file(Path(path))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a record-set .npz ({error})") from None
    if "root" not in arrays:
        raise InputError(f"{path}: field 'root' is missing")
    root = str(arrays.pop("root"))
    dataset = RecordDataset(arrays, root, where=path)  # decides the cameras
    check_stored(dataset.arrays, RECORDS, multi_view, path)
    require_images(dataset.arrays, dataset.root, path)
    return dataset
