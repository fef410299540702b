"""Model construction: a :class:`PoseNet2p5D` from a config, and from a checkpoint."""

from __future__ import annotations

import os

import torch

from ws3d.checkpoint import load_checkpoint
from ws3d.config import Config, from_dict
from ws3d.errors import InputError

from .pose_net import PoseNet2p5D


def build_model(cfg: Config, pretrained: bool = True) -> PoseNet2p5D:
    m = cfg.model
    return PoseNet2p5D(m.backbone, m.width, m.beta, pretrained=m.pretrained if pretrained else None,
                       depth_blocks=m.depth_blocks)


def model_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[PoseNet2p5D, Config]:
    """The model of a training checkpoint, in eval mode, and its config."""
    payload = load_checkpoint(path)
    cfg = from_dict(payload["config"])
    model = build_model(cfg, pretrained=False)
    load_weights(model, payload, path)
    return model.to(device).eval(), cfg


def load_weights(model: PoseNet2p5D, payload: dict, path: str | os.PathLike, depth: bool = True) -> None:
    """Load a checkpoint's weights; a model of another shape is an InputError naming the file.

    ``depth=False``: the depth branch may differ (it starts untrained after 2D pre-training)
    and keeps its own initialisation.
    """
    state = dict(payload["model"])
    if not depth:
        state = {k: v for k, v in state.items() if not k.startswith("depth_branch.")}
        state |= {k: v for k, v in model.state_dict().items() if k.startswith("depth_branch.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        backbone = payload["config"].get("model", {}).get("backbone")
        detail = (str(error).splitlines()[1:] or [str(error)])[0].strip()[:200]
        raise InputError(f"{path}: its weights (model.backbone={backbone}) do not fit this model ({detail})") from None
