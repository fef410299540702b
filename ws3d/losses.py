"""The training losses of the paper (Sec. 3.3): L_H, L_z, L_MC and L_B.

Every loss is a mean over samples (images, or multi-view groups) of a per-sample term,
never a division by a data-dependent count of labels: a distributed run that averages
the gradients of equal shares of a batch then equals one process on the whole batch.

Weakly supervised: L_WS = L_H + alpha L_MC + beta_B L_B (alpha = 10, beta_B = 100).
Fully supervised:  L_FS = L_H + psi L_z (psi = 5).
ws3d's weak stage (``loss.objective=triangulated``, not the paper's): L_H + psi L_z
against relative depths triangulated from the multi-view 2D (``ws3d.multiview``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ws3d.ops import weighted_procrustes
from ws3d.skeleton import BONES, JOINTS, MEAN_BONE_LENGTHS_MM, NECK, REFERENCE_BONE, ROOT


def normalised_bone_lengths() -> Tensor:
    """Mean bone lengths (len(BONES),) in units of the neck-pelvis distance.

    In the mean skeleton the spine and neck bones are collinear, so the neck-pelvis
    distance is their sum (233 + 257 = 490 mm).
    """
    lengths = torch.tensor(MEAN_BONE_LENGTHS_MM, dtype=torch.float64)
    spine = JOINTS.index("spine")
    return lengths / (lengths[BONES.index((spine, ROOT))] + lengths[BONES.index((NECK, spine))])


def heatmap_loss(pred: Tensor, target: Tensor, mask: Tensor, view_group: Tensor | None = None) -> Tensor:
    """L_H: squared error to the target heatmaps, summed over pixels, for labelled joints.

    pred, target: (B, J, H, W); mask: (B, J), 1 for labelled (or pseudo-labelled) joints;
    view_group: (B,) group ids of multi-view images. Returns the mean over joints, then
    over images (over the views of each group first when ``view_group`` is given).
    """
    per_image = ((pred.float() - target).square().sum((-2, -1)) * mask).mean(-1)
    if view_group is None:
        return per_image.mean()
    return _group_mean(per_image, view_group, int(view_group.max()) + 1)


def relative_depths(joints_cam: Tensor) -> Tensor:
    """Scale-normalised relative depths (Z_j - Z_root) / ||P_neck - P_pelvis||.

    joints_cam: (B, J, 3) camera-frame joints (any unit) -> (B, J).
    """
    neck, pelvis = REFERENCE_BONE
    s = (joints_cam[:, neck] - joints_cam[:, pelvis]).norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return (joints_cam[..., 2] - joints_cam[:, ROOT : ROOT + 1, 2]) / s


def depth_loss(z: Tensor, target: Tensor, mask: Tensor, view_group: Tensor | None = None) -> Tensor:
    """L_z: L1 to target relative depths (the ground truth's, :func:`relative_depths`, in the
    fully supervised baseline; triangulated ones in ws3d's weak stage).

    z, target: (B, J); mask: (B, J) weights; view_group: (B,) group ids of multi-view
    images. The mean over joints, then over images (over each group's views first).
    """
    per_image = ((z - target).abs() * mask).mean(-1)
    if view_group is None:
        return per_image.mean()
    return _group_mean(per_image, view_group, int(view_group.max()) + 1)


def uv_loss(uv: Tensor, target: Tensor, mask: Tensor, stride: int) -> Tensor:
    """L1 between the soft-argmax joints and their labels, in heatmap pixels (not in the paper).

    uv, target: (B, J, 2) image pixels; mask: (B, J); stride: image pixels per heatmap pixel.
    The mean over joints, then over images.
    """
    return (((uv - target).abs().sum(-1) / stride) * mask).mean()


def _group_mean(values: Tensor, group: Tensor, groups: int) -> Tensor:
    """Mean of ``values`` (N,) within each group (ids 0..groups-1), then over groups."""
    sums = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, group, values)
    counts = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(0, group, torch.ones_like(values))
    return (sums / counts.clamp_min(1)).mean()


def multiview_loss(pose: Tensor, conf: Tensor, pairs: Tensor, view_group: Tensor, R_cam: Tensor | None = None,
                   known: Tensor | None = None, through_alignment: bool = False) -> Tensor:  # fmt: skip
    """L_MC: views of one person agree after rigid alignment.

    For every ordered pair (c, c') of views of a group: sum_j phi_jc phi_jc' |P_jc - (R P_jc' + t)|_1,
    with R, t from ``weighted_procrustes`` weighted by phi phi. Where both views have known
    extrinsics (WS+R), R is the true relative rotation and only t is fitted (the poses are
    scale-normalised, the extrinsics metric). The mean over a pair's joints, over a group's
    pairs, then over groups.

    Args:
        pose: (M, J, 3) scale-normalised poses of all views in the batch.
        conf: (M, J) confidences phi.
        pairs: (P, 2) ordered view pairs (c, c') (rows of ``pose``).
        view_group: (M,) group id of each view, 0..G-1.
        R_cam: (M, 3, 3) world-to-camera rotations; known: (M,) bool, where R_cam is usable.
        through_alignment: also pass the gradient through the fitted R, t into both poses;
            False (the paper) stops it there, so that it reaches the poses only where R, t
            are applied.
    """
    c, c2 = pairs[:, 0], pairs[:, 1]
    w = (conf[c] * conf[c2]).detach()
    P, Q = pose[c], pose[c2]
    P_fit, Q_fit = (P, Q) if through_alignment else (P.detach(), Q.detach())
    R, t = weighted_procrustes(Q_fit, P_fit, w)
    if R_cam is not None:
        use = (known[c] & known[c2])[:, None, None]
        R = torch.where(use, (R_cam[c] @ R_cam[c2].mT).to(R.dtype), R)  # camera c' -> world -> camera c
        t_known = ((P_fit - Q_fit @ R.mT) * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)
        t = torch.where(use[:, 0], t_known, t)
    aligned = Q @ R.mT.to(Q.dtype) + t[:, None].to(Q.dtype)
    per_pair = (w * (P - aligned).abs().sum(-1)).mean(-1)
    return _group_mean(per_pair, view_group[c], int(view_group.max()) + 1)


def bone_loss(pose: Tensor, conf: Tensor, view_group: Tensor | None = None) -> Tensor:
    """L_B: bone lengths of the scale-normalised pose match the normalised mean lengths.

    sum over bones of phi_j phi_j' (||P_j - P_j'|| - mu_jj')^2, mean over bones; averaged
    per group first when ``view_group`` (M,) is given. pose: (M, J, 3); conf: (M, J).
    """
    child, parent = (list(x) for x in zip(*BONES, strict=True))
    mu = normalised_bone_lengths().to(pose.device, pose.dtype)
    lengths = (pose[:, child] - pose[:, parent]).norm(dim=-1)
    w = (conf[:, child] * conf[:, parent]).detach()
    per_view = (w * (lengths - mu).square()).mean(-1)
    if view_group is None:
        return per_view.mean()
    return _group_mean(per_view, view_group, int(view_group.max()) + 1)
