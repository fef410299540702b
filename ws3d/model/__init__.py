"""Pose networks: backbones (HRNet-W32, a small CPU net) and the 2.5D head."""

from .hrnet import HRNetW32, load_hrnet_weights
from .pose_net import BACKBONES, PoseNet2p5D, heatmap_to_image_uv, image_to_heatmap_K
from .small import SmallNet

__all__ = ["BACKBONES", "HRNetW32", "PoseNet2p5D", "SmallNet", "heatmap_to_image_uv", "image_to_heatmap_K",
           "load_hrnet_weights"]  # fmt: skip
