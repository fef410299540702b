"""The multi-view images as the weak stage trains on them: no 3D label, 2D labels from the
2D model, depth targets triangulated from those.

* :func:`pseudo_labels`: the 2D-pretrained model's joints where it is confident.
* :func:`triangulated_depths`: relative-depth targets from the views' 2D joints
  (:func:`ws3d.multiview.depth_targets`).
* :class:`Unlabelled`: the views stripped of every 3D label, carrying those.
* :func:`multi_view_set`: the three put together as ``data.mv_labels`` and
  ``loss.objective`` ask.

Labels and targets are cached in the run directory. Each cache is keyed on a digest of
everything that made it: the images (:func:`ws3d.data.schema.digest_arrays`), the
model's weights and beta, the thresholds and constants, and :data:`CACHE_VERSION`. A
cache made from anything else is made again, never reused.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ws3d import multiview
from ws3d.data.schema import names
from ws3d.evaluate import predict_dataset
from ws3d.skeleton import MEAN_BONE_LENGTHS_MM

# Bump when the code behind a cache changes what it computes: older caches are then remade.
CACHE_VERSION = 2


class Unlabelled(Dataset):
    """Multi-view images stripped of every 3D label (joints_cam, t: true scale).

    uv (N, J, 2), vis (N, J): the 2D labels to use (None: none, all joints unlabelled).
    depth: (N, J) triangulated relative depths and depth_weight (N, J), or None.
    R (world-to-camera rotation) and extrinsics_known are kept only for WS+R.
    """

    def __init__(self, views: Dataset, uv: np.ndarray | None, vis: np.ndarray | None, extrinsics: bool,
                 depth: np.ndarray | None = None, depth_weight: np.ndarray | None = None):  # fmt: skip
        self.views, self.uv, self.vis, self.extrinsics = views, uv, vis, extrinsics
        self.depth, self.depth_weight = depth, depth_weight

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.views[i])
        for k in names("3d") + (() if self.extrinsics else names("extrinsics")):
            sample.pop(k, None)
        J = sample["uv"].shape[0]
        sample["uv"] = self.uv[i] if self.uv is not None else np.zeros((J, 2), np.float32)
        sample["vis"] = self.vis[i] if self.vis is not None else np.zeros(J, np.uint8)
        if self.depth is not None:
            sample["depth"], sample["depth_weight"] = self.depth[i], self.depth_weight[i]
        return sample


def digest(*parts) -> str:
    """sha256 of arrays (their bytes) and anything else (its repr), in order."""
    h = hashlib.sha256(f"ws3d cache {CACHE_VERSION}".encode())
    for part in parts:
        h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()


def labeller_key(model, threshold: float, size: int, views_digest: str) -> str:
    """A digest of what pseudo-labels depend on: the images (``views_digest``), the crop
    size, the threshold, the model's beta and its 2D weights (not the depth channels, which
    the weak stage re-initialises and which do not move a 2D joint)."""
    h = hashlib.sha256(digest("pseudo", threshold, size, views_digest, float(model.beta)).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("depth_branch."):
            continue
        if name.startswith("head."):
            tensor = tensor[: model.joints]
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_cache(cache: Path, key: str, fields: tuple[str, ...]) -> tuple[np.ndarray, ...] | None:
    """The arrays ``fields`` of a cache file written by :func:`_write_cache` under ``key``;
    None if it is missing, made under another key, truncated or foreign (a cache is only
    ever remade)."""
    if cache.is_file():
        try:
            with np.load(cache) as f:
                if str(f["key"]) == key:
                    return tuple(f[name] for name in fields)
        except Exception:
            pass
        print(f"{cache}: made from other images, weights or settings, or unreadable; making it again")
    return None


def _write_cache(cache: Path, key: str, **arrays: np.ndarray) -> None:
    """Write the arrays and their ``key`` to a temporary file, then rename it: a killed run
    never leaves a half-written cache."""
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(tmp, key=np.array(key), **arrays)
    os.replace(tmp, cache)


def pseudo_labels(model, views: Dataset, views_digest: str, size: int, threshold: float, cache: Path,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """2D labels for multi-view images from the 2D-pretrained ``model``: uv (N, J, 2) image
    pixels, and vis (N, J) 1 where the joint's confidence is above ``threshold`` and it lies
    inside the image. ``views_digest`` identifies the images (:func:`ws3d.data.schema.
    digest_arrays` of ``views.arrays``). Cached in ``cache`` (:func:`labeller_key`)."""
    key = labeller_key(model, threshold, size, views_digest)
    if (cached := _read_cache(cache, key, ("uv", "vis"))) is not None:
        return cached
    pred = predict_dataset(model, views, size, progress=progress)
    inside = ((pred["uv"] >= 0) & (pred["uv"] <= pred["image_wh"][:, None] - 1)).all(-1)
    vis = ((pred["conf"] > threshold) & inside).astype(np.uint8)
    _write_cache(cache, key, uv=pred["uv"], vis=vis)
    return pred["uv"], vis


def triangulated_depths(views: Dataset, uv: np.ndarray, vis: np.ndarray, extrinsics: bool,
                        cache: Path) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Relative-depth targets (N, J) and their weights (N, J) for the multi-view images,
    triangulated from the 2D joints ``uv`` (N, J, 2) seen where ``vis`` (N, J)
    (:func:`ws3d.multiview.depth_targets`; the true rotations where ``extrinsics``, WS+R).
    Cached in ``cache`` under a digest of the inputs, the solver's constants and the mean
    bone lengths."""
    a = views.arrays
    R, known = (a["R"], a["extrinsics_known"]) if extrinsics else (None, None)
    constants = (multiview.PIXEL_SCALE, multiview.BONE_TOLERANCE, multiview.ALLOW, multiview.CIRCLE,
                 MEAN_BONE_LENGTHS_MM)  # fmt: skip
    key = digest("depth", uv, vis, a["K"], a["group"], R, known, constants)
    if (cached := _read_cache(cache, key, ("depth", "weight"))) is not None:
        return cached
    start = time.perf_counter()
    out = multiview.depth_targets(uv, vis.astype(np.float64), a["K"], a["group"], R, known)
    print(f"triangulated {len(uv)} multi-view images in {time.perf_counter() - start:.0f} s: depth targets for "
          f"{out['weight'].mean():.0%} of their joints; {out['ok'].mean():.0%} of the views in solved groups")
    _write_cache(cache, key, depth=out["z"], weight=out["weight"])
    return out["z"], out["weight"]


def multi_view_set(cfg, model, views: Dataset, views_digest: str, run_dir: Path, once) -> Unlabelled:
    """The multi-view ``views`` as the weak stage sees them (:class:`Unlabelled`): with
    pseudo- or true 2D labels (``data.mv_labels``) and, for the triangulated objective, the
    depth targets. ``once(make)`` runs a cache-filling ``make`` so that one process fills
    the cache and the others read it (the trainer's rank 0 first)."""
    d, L = cfg.data, cfg.loss
    if d.mv_labels == "given":
        uv, vis = views.arrays["uv"], views.arrays["vis"]
    else:
        cache = run_dir / "pseudo_labels.npz"
        uv, vis = once(lambda: pseudo_labels(model, views, views_digest, d.size, L.pseudo_threshold, cache,
                                             progress=cfg.train.progress))  # fmt: skip
    depth = weight = None
    if L.objective == "triangulated" or d.mv_labels == "consistent":
        cache = run_dir / "depth_targets.npz"
        depth, weight = once(lambda: triangulated_depths(views, uv, vis, d.known_extrinsics, cache))
    if d.mv_labels == "consistent":
        vis = vis * (weight > 0)
    if L.objective != "triangulated":
        depth = weight = None
    labelled = d.mv_labels != "none"
    return Unlabelled(views, uv if labelled else None, vis if labelled else None, d.known_extrinsics, depth, weight)
