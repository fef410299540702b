"""Model construction: a :class:`PoseNet2p5D` from a config, and from a checkpoint."""

from __future__ import annotations

import os

import torch

from ws3d.checkpoint import FORMAT, load_checkpoint
from ws3d.config import Config, from_dict
from ws3d.errors import InputError, MissingFileError

from .hrnet import load_torch_file
from .mmpose import MMPOSE_FORMAT, load_mmpose_init, mmpose_payload
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


def read_init(path: str | os.PathLike, backbone: str | None = None) -> dict:
    """The weights ``train.init`` names: a ws3d checkpoint or an MMPose COCO model.

    A ws3d checkpoint comes back as :func:`ws3d.checkpoint.load_checkpoint` reads it. A
    file that is not one but is laid out as an MMPose top-down HRNet-W32 COCO model comes
    back as :func:`ws3d.model.mmpose.mmpose_payload` reads it (``format`` is
    ``MMPOSE_FORMAT``; ``model`` holds its tensors, for the run's digest of its init).

    Args:
        path: the file.
        backbone: the run's ``model.backbone``; an MMPose file with another than
            ``hrnet_w32`` is refused here, before anything is written.

    Raises:
        MissingFileError: no such file.
        InputError: neither kind, or an MMPose model that does not map (the message
            names the file and why).
    """
    try:
        return load_checkpoint(path)
    except MissingFileError:
        raise
    except InputError as error:
        obj = load_torch_file(path)  # MMPose 1.x files keep numpy arrays in meta, which load_checkpoint refuses
        if obj is None:
            raise InputError(f"{error}; train.init takes a ws3d checkpoint or an MMPose top-down HRNet-W32 "
                             "COCO checkpoint") from None  # fmt: skip
        payload = mmpose_payload(obj, path)
        if payload is None:
            if isinstance(obj, dict) and obj.get("format") == FORMAT:
                raise error  # a ws3d checkpoint with something missing: load_checkpoint said what
            raise InputError(f"{path}: neither a ws3d checkpoint (no {FORMAT!r} format tag) nor an MMPose "
                             "top-down checkpoint (backbone. beside head. or keypoint_head. keys); train.init takes "
                             "one of the two") from None  # fmt: skip
    if backbone is not None and backbone != "hrnet_w32":
        raise InputError(f"{path}: an MMPose HRNet-W32 checkpoint initialises model.backbone=hrnet_w32, "
                         f"not model.backbone={backbone}")  # fmt: skip
    return payload


def load_init(model: PoseNet2p5D, init: dict, path: str | os.PathLike, stage: str) -> None:
    """Start a training stage from :func:`read_init`'s weights, in place.

    A ws3d checkpoint loads whole; from a ``pretrain2d`` checkpoint into another stage the
    depth branch and depth maps start afresh (:meth:`PoseNet2p5D.reset_depth`). An MMPose
    model gives the backbone and the heatmap rows (:func:`ws3d.model.mmpose.load_mmpose_init`);
    the depth rows and the depth branch keep the model's own initialisation, in every stage.
    """
    if init.get("format") == MMPOSE_FORMAT:
        load_mmpose_init(model, init, path)
        return
    from_2d = init["config"]["train"]["stage"] == "pretrain2d" and stage != "pretrain2d"
    load_weights(model, init, path, depth=not from_2d)
    if from_2d:
        model.reset_depth()  # depth maps start untrained after 2D pre-training
