"""Contact sheets: a grid of samples with their 2D skeletons drawn on, for people to look at."""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from ws3d.data.transforms import tensor_to_image
from ws3d.errors import InputError
from ws3d.skeleton import BONES, LEFT_JOINTS, RIGHT_JOINTS

_LEFT, _RIGHT, _CENTRE = (40, 120, 255), (255, 60, 40), (60, 220, 60)  # RGB


def _bone_colour(child: int) -> tuple[int, int, int]:
    return _LEFT if child in LEFT_JOINTS else _RIGHT if child in RIGHT_JOINTS else _CENTRE


def draw_skeleton(image: np.ndarray, uv: np.ndarray, vis: np.ndarray, zoom: int = 1) -> np.ndarray:
    """A copy of ``image`` (S, S, 3) uint8 RGB, enlarged ``zoom`` times, with the skeleton drawn.

    uv: (J, 2) pixels of ``image``; vis: (J,). Left limbs blue, right red, spine green;
    labelled joints are filled dots, unlabelled ones rings (their bones are drawn thin).
    """
    canvas = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) if zoom > 1 else image.copy()
    pts = np.round((np.asarray(uv, np.float64) + 0.5) * zoom - 0.5).astype(int)
    vis = np.asarray(vis).astype(bool)
    for child, parent in BONES:
        width = 2 if vis[child] and vis[parent] else 1
        cv2.line(canvas, tuple(pts[parent]), tuple(pts[child]), _bone_colour(child), width, cv2.LINE_AA)
    for j, p in enumerate(pts):
        cv2.circle(canvas, tuple(p), 2, _bone_colour(j), -1 if vis[j] else 1, cv2.LINE_AA)
    return canvas


class TrainingCrops:
    """The crops training makes of ``dataset``'s items (``transform``, a
    :class:`ws3d.data.transforms.PoseTransform`; item i drawn with seed i), as items
    :func:`contact_sheet` draws: uint8 image, uv and vis of the crop."""

    def __init__(self, dataset, transform):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = self.transform(self.dataset[i], generator=torch.Generator().manual_seed(i))
        return {"image": tensor_to_image(item["image"]), "uv": item["uv"].numpy(), "vis": item["vis"].numpy()}


def contact_sheet(dataset, out: str | os.PathLike, count: int = 48, columns: int = 8) -> np.ndarray:
    """Write a PNG grid of the first ``count`` samples of ``dataset`` with their skeletons.

    Items need ``image``, ``uv`` and ``vis``; multi-view items (with ``group``) are
    captioned with their group and view. Returns the sheet (H, W, 3) uint8 RGB.
    """
    count = min(count, len(dataset))
    if count == 0:
        raise InputError("the data set is empty")
    tiles = []
    for i in range(count):
        item = dataset[i]
        zoom = max(1, 192 // item["image"].shape[0])
        tile = draw_skeleton(item["image"], item["uv"], item["vis"], zoom)
        caption = f"g{int(item['group'])} v{int(item['view'])}" if "group" in item else f"#{i}"
        cv2.putText(tile, caption, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    side = max(t.shape[0] for t in tiles)
    tiles = [cv2.resize(t, (side, side)) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    sheet = np.concatenate(rows, axis=0)
    if not cv2.imwrite(str(out), sheet[..., ::-1]):
        raise InputError(f"could not write {out}")
    return sheet
