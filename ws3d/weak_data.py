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

from ws3d import multiview, rig_calibration
from ws3d.data.schema import names
from ws3d.evaluate import predict_dataset
from ws3d.skeleton import MEAN_BONE_LENGTHS_MM

# Bump when the code behind a cache changes what it computes: older caches are then remade.
CACHE_VERSION = 2
MIN_RIG_GROUPS = 10  # a rig calibrated from fewer groups is left to the per-group solve
Rotations = tuple[np.ndarray, np.ndarray]  # R (N, 3, 3) world-to-camera per view, known (N,) bool: R applies


class Unlabelled(Dataset):
    """Multi-view images stripped of every 3D label (joints_cam, t: true scale).

    uv (N, J, 2), vis (N, J): the 2D labels to use (None: none, all joints unlabelled).
    depth: (N, J) triangulated relative depths and depth_weight (N, J), or None.
    rotations: ``R`` (N, 3, 3) and ``extrinsics_known`` (N,) to give the views in place of
    the stored camera rotations, which are stripped too (None: no rotation at all). WS+R
    gives the true ones; ``data.rotations=rig`` its rigs' calibrated ones.
    """

    def __init__(self, views: Dataset, uv: np.ndarray | None, vis: np.ndarray | None,
                 rotations: Rotations | None, depth: np.ndarray | None = None,
                 depth_weight: np.ndarray | None = None):  # fmt: skip
        self.views, self.uv, self.vis, self.rotations = views, uv, vis, rotations
        self.depth, self.depth_weight = depth, depth_weight

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, i: int) -> dict:
        sample = dict(self.views[i])
        for k in names("3d") + names("extrinsics"):
            sample.pop(k, None)
        if self.rotations is not None:
            sample["R"] = np.asarray(self.rotations[0][i], np.float32)
            sample["extrinsics_known"] = np.asarray(self.rotations[1][i], bool)
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


def rig_rotations(arrays: dict[str, np.ndarray], uv: np.ndarray, vis: np.ndarray) -> Rotations:
    """Each view's camera rotation from its rig's calibration: R (N, 3, 3) world-to-camera
    in the frame of the rig's first camera, and found (N,) bool.

    Every rig that films at least MIN_RIG_GROUPS groups with two or more cameras is
    calibrated from its views' 2D joints ``uv`` (N, J, 2) where ``vis`` (N, J)
    (:func:`ws3d.multiview.calibrate_rig`). A view's pixels belong to its crop, whose
    intrinsics change with the crop: they are taken to rays and back to pixels of one
    nominal camera per physical camera (its crops' median focal length, no offset), so
    that a rig's camera keeps one K. Other views (rigs of one group, cameras that moved)
    keep found False and their group's own rotations.
    """
    N = len(uv)
    R, found = np.tile(np.eye(3), (N, 1, 1)), np.zeros(N, bool)
    rig, camera, group, K = arrays["rig"], arrays["camera"], arrays["group"], arrays["K"].astype(np.float64)
    h = np.concatenate([uv, np.ones_like(uv[..., :1])], -1).astype(np.float64)
    rays = np.einsum("nab,njb->nja", np.linalg.inv(K), h)
    focal = (K[:, 0, 0] + K[:, 1, 1]) / 2
    for r in np.unique(rig):
        rows = np.flatnonzero(rig == r)
        frames, f = np.unique(group[rows], return_inverse=True)
        cameras, c = np.unique(camera[rows], return_inverse=True)
        if len(frames) < MIN_RIG_GROUPS or len(cameras) < 2:
            continue
        nominal = np.array([np.median(focal[rows[c == k]]) for k in range(len(cameras))])
        pixels = np.zeros((len(frames), len(cameras), uv.shape[1], 2))
        weights = np.zeros((len(frames), len(cameras), uv.shape[1]))
        pixels[f, c] = nominal[c, None, None] * rays[rows, :, :2] / rays[rows, :, 2:]
        weights[f, c] = vis[rows]
        K_nominal = np.stack([np.diag([n, n, 1.0]) for n in nominal])
        try:
            result = multiview.calibrate_rig(pixels, weights, K_nominal)
        except ValueError as error:
            print(f"rig {r}: not calibrated ({error}); its groups keep their own rotations")
            continue
        R[rows], found[rows] = result.R.numpy()[c], True
        print(f"rig {r}: {len(cameras)} cameras calibrated from {len(frames)} groups; median reprojection error "
              f"{np.median(result.reprojection_px.numpy()):.1f} px of the nominal cameras, inliers "
              f"{np.median(result.inlier_share.numpy()):.0%}")  # fmt: skip
    return R, found


def camera_rotations(arrays: dict[str, np.ndarray], uv: np.ndarray, vis: np.ndarray,
                     rotations: str) -> Rotations | None:  # fmt: skip
    """What ``data.rotations`` gives the triangulation: (R (N, 3, 3), known (N,)) or None
    (every group estimates its own): "known" the stored true rotations where
    extrinsics_known, "rig" :func:`rig_rotations`, "group" None."""
    if rotations == "known":
        return arrays["R"], arrays["extrinsics_known"]
    if rotations == "rig":
        return rig_rotations(arrays, uv, vis)
    return None


def triangulated_depths(views: Dataset, uv: np.ndarray, vis: np.ndarray, rotations: str,
                        cache: Path) -> tuple[np.ndarray, np.ndarray, Rotations | None]:  # fmt: skip
    """Relative-depth targets (N, J) and their weights (N, J) for the multi-view images,
    triangulated from the 2D joints ``uv`` (N, J, 2) seen where ``vis`` (N, J)
    (:func:`ws3d.multiview.depth_targets`), with the rotations ``data.rotations`` asks for
    (:func:`camera_rotations`, returned third). Cached in ``cache`` under a digest of the
    inputs, the solvers' constants and the mean bone lengths."""
    a = views.arrays
    constants = (multiview.PIXEL_SCALE, multiview.BONE_TOLERANCE, multiview.ALLOW, multiview.CIRCLE,
                 MEAN_BONE_LENGTHS_MM, rotations)  # fmt: skip
    if rotations == "rig":
        rc = rig_calibration
        constants += (MIN_RIG_GROUPS, rc.RANSAC_PX, rc.MIN_SCALE_PX, rc.ROUNDS, rc.BA_ITERS, rc.INLIER_SCALES)
    stored = (a["R"], a["extrinsics_known"]) if rotations == "known" else (a["rig"], a["camera"])
    key = digest("depth", uv, vis, a["K"], a["group"], *stored, constants)
    if (cached := _read_cache(cache, key, ("depth", "weight", "R", "known"))) is not None:
        depth, weight, R, known = cached
        return depth, weight, None if rotations == "group" else (R, known)
    start = time.perf_counter()
    cameras = camera_rotations(a, uv, vis, rotations)
    R, known = cameras if cameras is not None else (None, None)
    out = multiview.depth_targets(uv, vis.astype(np.float64), a["K"], a["group"], R, known)
    print(f"triangulated {len(uv)} multi-view images in {time.perf_counter() - start:.0f} s: depth targets for "
          f"{out['weight'].mean():.0%} of their joints; {out['ok'].mean():.0%} of the views in solved groups")
    empty = (np.zeros((0, 3, 3)), np.zeros(0, bool))
    _write_cache(cache, key, depth=out["z"], weight=out["weight"], R=(cameras or empty)[0], known=(cameras or empty)[1])
    return out["z"], out["weight"], cameras


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
    depth = weight = cameras = None
    if L.objective == "triangulated" or d.mv_labels == "consistent":
        cache = run_dir / "depth_targets.npz"
        depth, weight, cameras = once(lambda: triangulated_depths(views, uv, vis, d.rotations, cache))
    elif d.rotations != "group":  # the paper's objective still aligns views with the rotations asked for
        cameras = camera_rotations(views.arrays, uv, vis, d.rotations)
    if d.mv_labels == "consistent":
        vis = vis * (weight > 0)
    if L.objective != "triangulated":
        depth = weight = None
    labelled = d.mv_labels != "none"
    return Unlabelled(views, uv if labelled else None, vis if labelled else None, cameras, depth, weight)
