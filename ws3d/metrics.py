"""Evaluation metrics, reported the way the paper's tables do.

Poses are (N, J, 3) in millimetres, joints in the 17-joint order; every metric is a
mean over poses. Root alignment subtracts the pelvis (joint 0).
"""

from __future__ import annotations

import torch

from ws3d.ops import weighted_procrustes
from ws3d.skeleton import BONES, JOINTS, ROOT

# The 14 joints of the MPI-INF-3DHP PCK protocol: head top, neck, shoulders, elbows,
# wrists, hips, knees, ankles (no pelvis, spine or nose).
PCK_JOINTS = tuple(JOINTS.index(n) for n in (
    "head", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
))  # fmt: skip
AUC_THRESHOLDS_MM = tuple(range(0, 151, 5))


def _root_aligned(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != gt.shape or pred.shape[-1] != 3:
        raise ValueError(f"pred and gt must both be (N, J, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    return pred - pred[:, ROOT : ROOT + 1], gt - gt[:, ROOT : ROOT + 1]


def _scaled(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Root-aligned pred times the least-squares scale onto root-aligned gt."""
    p, g = _root_aligned(pred, gt)
    s = (p * g).sum((1, 2), keepdim=True) / (p * p).sum((1, 2), keepdim=True).clamp_min(1e-12)
    return s * p


def mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Mean per-joint position error after root alignment (mm). pred, gt: (N, J, 3)."""
    p, g = _root_aligned(pred, gt)
    return (p - g).norm(dim=-1).mean()


def n_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MPJPE after root alignment and the optimal scale of pred (mm)."""
    return (_scaled(pred, gt) - _root_aligned(pred, gt)[1]).norm(dim=-1).mean()


def p_mpjpe(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """MPJPE after the optimal similarity transform (rotation, translation, scale) (mm)."""
    _root_aligned(pred, gt)  # shape check
    R, t, s = weighted_procrustes(pred.double(), gt.double(), scale=True)
    aligned = s[:, None, None] * pred.double() @ R.mT + t[:, None]
    return (aligned - gt.double()).norm(dim=-1).mean().to(pred.dtype)


def pck(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 150.0, joints=PCK_JOINTS) -> torch.Tensor:
    """Fraction of ``joints`` within ``threshold`` mm after root alignment (3DHP PCK, 0..1)."""
    p, g = _root_aligned(pred, gt)
    return ((p - g)[:, list(joints)].norm(dim=-1) <= threshold).double().mean()


def auc(pred: torch.Tensor, gt: torch.Tensor, joints=PCK_JOINTS) -> torch.Tensor:
    """Mean PCK over thresholds 0, 5, ..., 150 mm (3DHP AUC, 0..1)."""
    return torch.stack([pck(pred, gt, th, joints) for th in AUC_THRESHOLDS_MM]).mean()


def npck(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 150.0, joints=PCK_JOINTS) -> torch.Tensor:
    """PCK after root alignment and the optimal scale of pred (0..1)."""
    err = (_scaled(pred, gt) - _root_aligned(pred, gt)[1])[:, list(joints)].norm(dim=-1)
    return (err <= threshold).double().mean()


def pixel_error(uv_pred: torch.Tensor, uv_gt: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Mean 2D distance in pixels over labelled joints. uv: (N, J, 2); vis: (N, J)."""
    if uv_pred.shape != uv_gt.shape or uv_pred.shape[:-1] != vis.shape:
        raise ValueError(
            f"uv_pred, uv_gt (N, J, 2) and vis (N, J) disagree: {uv_pred.shape}, {uv_gt.shape}, {vis.shape}"
        )
    w = vis.to(uv_pred.dtype)
    return ((uv_pred - uv_gt).norm(dim=-1) * w).sum() / w.sum().clamp_min(1)


def absolute_scale(pose: torch.Tensor, mean_bones: torch.Tensor) -> torch.Tensor:
    """Eq. 12: s = argmin_s sum_bones (s l_b - mu_b)^2 = sum mu l / sum l^2.

    pose: (N, J, 3) scale-normalised; mean_bones: (len(BONES),) in mm. Returns s (N,) in
    mm per unit, so ``s[:, None, None] * pose`` is in millimetres.
    """
    child, parent = zip(*BONES, strict=True)
    lengths = (pose[:, list(child)] - pose[:, list(parent)]).norm(dim=-1)
    return (lengths * mean_bones).sum(-1) / (lengths * lengths).sum(-1).clamp_min(1e-12)
