"""Small camera-geometry helpers shared by the multi-view solvers (torch, batched).

Conventions: camera coordinates x right, y down, z forward; world-to-camera
``P_cam = R @ P_world + t``; pixels as in ws3d.camera (u = column, v = row).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rays(uv: Tensor, K: Tensor) -> Tensor:
    """Normalised image coordinates K^-1 [u, v, 1]: uv (..., J, 2), K (..., 3, 3) -> (..., J, 3)."""
    h = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    return torch.linalg.solve(K, h.mT).mT


def skew(v: Tensor) -> Tensor:
    """The cross-product matrix [v]x (..., 3, 3) of v (..., 3): [v]x a = v x a."""
    o = torch.zeros_like(v[..., 0])
    return torch.stack([torch.stack([o, -v[..., 2], v[..., 1]], -1), torch.stack([v[..., 2], o, -v[..., 0]], -1),
                        torch.stack([-v[..., 1], v[..., 0], o], -1)], -2)  # fmt: skip


def rodrigues(w: Tensor) -> Tensor:
    """The rotation (..., 3, 3) of the axis-angle vector w (..., 3) (angle = |w|, radians)."""
    theta = w.norm(dim=-1, keepdim=True)[..., None]
    k = skew(w / theta.squeeze(-1).clamp_min(1e-12))
    eye = torch.eye(3, dtype=w.dtype).expand_as(k)
    return eye + torch.sin(theta) * k + (1 - torch.cos(theta)) * (k @ k)


def nearest_rotation(A: Tensor) -> Tensor:
    """The proper rotation (..., 3, 3) closest to A (..., 3, 3) in the Frobenius norm."""
    U, _, Vh = torch.linalg.svd(A)
    d = torch.linalg.det(U @ Vh)
    return U @ torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)) @ Vh


def rotation_angle_deg(R: Tensor) -> Tensor:
    """The angle (...) in degrees of rotations R (..., 3, 3); atan2 of its sine and cosine,
    which stays accurate for small angles where arccos of the trace would not."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    axis = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    return torch.rad2deg(torch.atan2(axis.norm(dim=-1) / 2, cos))
