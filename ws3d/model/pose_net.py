"""The 2.5D pose network: a backbone, a 1x1 head with 2J channels, and the fused ops.

The head predicts J heatmaps and J latent depth maps at stride 4. The forward pass reads
them out with ``softargmax_2p5d`` (uv in heatmap pixels, z, confidence phi) and, given
the crop intrinsics, lifts them to a scale-normalised 3D pose with ``reconstruct_3d``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ws3d.config import BACKBONES
from ws3d.errors import InputError
from ws3d.ops import reconstruct_3d, softargmax_2p5d
from ws3d.skeleton import NUM_JOINTS, REFERENCE_BONE

from .hrnet import HRNetW32, load_hrnet_weights
from .small import Residual, SmallNet


def image_to_heatmap_K(K: torch.Tensor, stride: int) -> torch.Tensor:
    """Intrinsics for heatmap pixels: u_hm = (u + 0.5) / stride - 0.5 (pixel centres align).

    K: (B, 3, 3) for image pixels -> (B, 3, 3) for heatmap pixels.
    """
    S = torch.tensor([[1 / stride, 0, 0.5 / stride - 0.5], [0, 1 / stride, 0.5 / stride - 0.5], [0, 0, 1]],
                     dtype=K.dtype, device=K.device)  # fmt: skip
    return S @ K


def heatmap_to_image_uv(uv: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap pixels -> image pixels, the inverse of the map in :func:`image_to_heatmap_K`."""
    return (uv + 0.5) * stride - 0.5


class PoseNet2p5D(nn.Module):
    """Backbone + 2.5D head.

    Args:
        backbone: "small" (:class:`SmallNet`) or "hrnet_w32" (:class:`HRNetW32`).
        width: channels of the small backbone (ignored for HRNet).
        beta: softmax sharpness; it MULTIPLIES the heatmap logits (paper: 50).
        joints: J.
        pretrained: an HRNet-W32 checkpoint file to initialise the backbone from.
        depth_blocks: residual blocks between the backbone and the depth maps (0: the depth
            maps come straight from the backbone's features, like the heatmaps).
    """

    def __init__(self, backbone: str = "small", width: int = 32, beta: float = 50.0, joints: int = NUM_JOINTS,
                 pretrained: str | None = None, depth_blocks: int = 0):  # fmt: skip
        super().__init__()
        if backbone not in BACKBONES:
            raise InputError(f"model.backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone = SmallNet(width) if backbone == "small" else HRNetW32()
        if pretrained:
            if backbone != "hrnet_w32":
                raise InputError("model.pretrained is an HRNet-W32 checkpoint; set model.backbone=hrnet_w32")
            load_hrnet_weights(self.backbone, pretrained)
        self.stride, self.beta, self.joints = self.backbone.stride, beta, joints
        self.head = nn.Conv2d(self.backbone.out_channels, 2 * joints, 1)  # J heatmaps, then J depth maps
        self.frozen_2d = False  # freeze_2d
        self.depth_branch = nn.Sequential(*[Residual(self.backbone.out_channels) for _ in range(depth_blocks)])
        self.reset_depth()

    def reset_depth(self) -> None:
        """Re-initialise the depth-map channels of the head and the depth branch (they start
        untrained after 2D pre-training)."""
        with torch.no_grad():
            w = self.head.weight[self.joints :]
            nn.init.normal_(w, std=0.001)
            self.head.bias[self.joints :].zero_()
        for block in self.depth_branch:
            block.reset_parameters()

    def freeze_2d(self) -> None:
        """Stop training the 2D path: the backbone and the heatmap channels of the head keep
        their weights, and the backbone stays in eval mode (its BatchNorm statistics too);
        the depth branch and the depth-map channels still train."""
        self.backbone.requires_grad_(False)  # no backward through the backbone at all
        self.frozen_2d = True
        self.backbone.eval()
        # The head is one conv for both kinds of maps; zeroing the heatmap rows' gradient keeps
        # them fixed under Adam (a zero gradient from the start leaves its moments, and the step, 0).
        for tensor in (self.head.weight, self.head.bias):
            tensor.register_hook(lambda grad: torch.cat([torch.zeros_like(grad[: self.joints]), grad[self.joints :]]))

    def train(self, mode: bool = True) -> PoseNet2p5D:
        """As nn.Module.train, but a frozen backbone (:meth:`freeze_2d`) stays in eval mode:
        in training mode its BatchNorm layers would update their running statistics from
        every batch, and the 2D path would drift away from the weights it was frozen at."""
        super().train(mode)
        if self.frozen_2d:
            self.backbone.eval()
        return self

    def forward(self, images: torch.Tensor, K: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            images: (B, 3, H, W) normalised images, H and W divisible by 32 (HRNet) or 16.
            K: (B, 3, 3) intrinsics of the crops in image pixels; without them no 3D pose.

        Returns:
            dict with ``heatmaps``, ``depthmaps`` (B, J, H/4, W/4); ``uv`` (B, J, 2) in
            image pixels; ``z`` (B, J) scale-normalised relative depths; ``conf`` (B, J)
            (phi, no gradient); with K also ``pose`` (B, J, 3) scale-normalised camera-
            frame pose and ``valid`` (B,) bool.
        """
        features = self.backbone(images)
        J, w, b = self.joints, self.head.weight, self.head.bias
        heatmaps = F.conv2d(features, w[:J], b[:J]).float()  # the ops accumulate in float32 anyway
        depthmaps = F.conv2d(self.depth_branch(features), w[J:], b[J:]).float()
        uv, z, conf = softargmax_2p5d(heatmaps, depthmaps, beta=self.beta)
        out = {"heatmaps": heatmaps, "depthmaps": depthmaps, "uv": heatmap_to_image_uv(uv, self.stride), "z": z,
               "conf": conf}  # fmt: skip
        if K is not None:
            K_hm = image_to_heatmap_K(K.to(uv.dtype), self.stride)
            out["pose"], _, out["valid"] = reconstruct_3d(uv, z, K_hm, ref=REFERENCE_BONE)
        return out
