"""Pose networks: backbones (HRNet-W32, a small CPU net), the 2.5D head, and building
them from a config or a checkpoint."""

from .build import build_model, load_weights, model_from_checkpoint
from .hrnet import HRNetW32, load_hrnet_weights
from .pose_net import PoseNet2p5D, heatmap_to_image_uv, image_to_heatmap_K
from .small import SmallNet

__all__ = ["HRNetW32", "PoseNet2p5D", "SmallNet", "build_model", "heatmap_to_image_uv", "image_to_heatmap_K",
           "load_hrnet_weights", "load_weights", "model_from_checkpoint"]  # fmt: skip
