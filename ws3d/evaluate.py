"""Predictions over a data set and the paper's metrics on them.

``predict_dataset`` runs a model over plain person-centred crops and maps the 2D joints back to
the pixels of the data set's images; ``evaluate`` adds the absolute scale from mean bone
lengths (eq. 12) and compares with the 3D ground truth.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ws3d.data.transforms import PoseTransform
from ws3d.metrics import absolute_scale, auc, mpjpe, n_mpjpe, npck, p_mpjpe, pck, pixel_error
from ws3d.model import PoseNet2p5D
from ws3d.progress import progress_bar
from ws3d.skeleton import MEAN_BONE_LENGTHS_MM


def to_source_pixels(uv: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Undo the crop affine: uv (B, J, 2) crop pixels, crop (B, 2, 3) -> source pixels."""
    M, offset = crop[:, :, :2].double(), crop[:, :, 2].double()
    return torch.linalg.solve(M, (uv.double() - offset[:, None]).mT).mT


@torch.no_grad()
def predict_dataset(model: PoseNet2p5D, dataset: Dataset, size: int, batch_size: int = 64,
                    progress: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
    """Run ``model`` over every item of ``dataset`` (samples as in ws3d.data).

    Returns numpy arrays: ``uv`` (N, J, 2) pixels of the data set's images, ``conf``
    (N, J), ``pose`` (N, J, 3) scale-normalised, ``valid`` (N,), ``image_wh`` (N, 2) the
    images' widths and heights, ``has_K`` (N,) whether the image's intrinsics are known
    (else ``pose`` and ``valid`` come from a nominal camera), and the ground truth
    ``uv_gt``, ``vis`` and, where the data set has it, ``joints_cam`` (N, J, 3) mm (NaN
    where unknown).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    transform = PoseTransform(size, stride=model.stride, train=False)
    parts: dict[str, list] = {}
    samples = (dataset[i] for i in range(len(dataset)))
    items = ((s["image"].shape[1::-1], transform(s)) for s in samples)  # ((W, H), transformed)
    bar = progress_bar(total=len(dataset), desc="predict", unit="img", disable=not progress)
    while True:
        chunk = [it for _, it in zip(range(batch_size), items, strict=False)]
        if not chunk:
            break
        image_wh, chunk = torch.tensor([wh for wh, _ in chunk]), [it for _, it in chunk]
        batch = {k: torch.stack([it[k] for it in chunk]) for k in chunk[0] if torch.is_tensor(chunk[0][k])}
        out = model(batch["image"].to(device), batch["K"].to(device))
        crop = batch["crop"]
        fields = {"uv": to_source_pixels(out["uv"].cpu(), crop).float(), "conf": out["conf"].cpu(),
                  "pose": out["pose"].cpu(), "valid": out["valid"].cpu(),
                  "uv_gt": to_source_pixels(batch["uv"], crop).float(), "vis": batch["vis"],
                  "image_wh": image_wh,
                  "has_K": batch.get("has_K", torch.ones(len(chunk), dtype=torch.bool))}  # fmt: skip
        if "joints_cam" in batch:
            fields["joints_cam"] = batch["joints_cam"]
        for k, v in fields.items():
            parts.setdefault(k, []).append(v.numpy())
        bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in parts.items()}


def pose_in_mm(pose: torch.Tensor) -> torch.Tensor:
    """Scale-normalised poses (B, J, 3) -> mm (float64), scaled by eq. 12 from the mean bone lengths."""
    pose = pose.double()
    return absolute_scale(pose, torch.tensor(MEAN_BONE_LENGTHS_MM, dtype=torch.float64))[:, None, None] * pose


def metrics_from_predictions(pred: dict[str, np.ndarray]) -> dict[str, float]:
    """The paper's metrics (mm, fractions 0..1, pixels) from :func:`predict_dataset`'s output,
    only those the data support, each over the images that support it:

    * ``images``; ``px2d`` over the labelled joints (absent without any);
    * ``valid`` (3D pose solvable), over the images with known intrinsics (absent without any);
    * the 3D metrics, over the images with known intrinsics and a 3D label of every joint,
      their number in ``images_3d`` (all absent without any such image: an MPII or
      tracklet record set has no 3D, and NaN or 0 % would read like a score).
    """
    known = pred.get("has_K", np.ones(len(pred["pose"]), bool)).astype(bool)
    out = {"images": len(pred["pose"])}
    if known.any():
        out["valid"] = pred["valid"][known].mean()
    with_3d = known & np.isfinite(pred["joints_cam"]).all((1, 2)) if "joints_cam" in pred else np.zeros_like(known)
    if with_3d.any():
        pose_mm = pose_in_mm(torch.from_numpy(pred["pose"][with_3d]))
        gt = torch.from_numpy(pred["joints_cam"][with_3d]).double()
        out.update(images_3d=int(with_3d.sum()), mpjpe=mpjpe(pose_mm, gt), n_mpjpe=n_mpjpe(pose_mm, gt),
                   p_mpjpe=p_mpjpe(pose_mm, gt), pck150=pck(pose_mm, gt), auc=auc(pose_mm, gt),
                   npck150=npck(pose_mm, gt))  # fmt: skip
    uv, uv_gt, vis = (torch.from_numpy(pred[k]).double() for k in ("uv", "uv_gt", "vis"))
    if vis.sum() > 0:
        out["px2d"] = pixel_error(uv, uv_gt, vis)
    return {k: float(v) for k, v in out.items()}


def evaluate(model: PoseNet2p5D, dataset: Dataset, size: int, batch_size: int = 64,
             progress: bool = False) -> dict[str, float]:  # fmt: skip
    """MPJPE, N-MPJPE, P-MPJPE (mm), PCK@150 mm, AUC, NPCK (0..1), 2D error (px) on ``dataset``,
    those that its labels support (:func:`metrics_from_predictions`)."""
    return metrics_from_predictions(predict_dataset(model, dataset, size, batch_size, progress=progress))
