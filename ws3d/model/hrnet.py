"""HRNet-W32 (Sun et al., CVPR 2019), the backbone of the paper, as a stride-4 feature map.

The module and parameter names follow the public pose-estimation checkpoints
(``conv1``, ``layer1``, ``transition1``, ``stage2.0.branches.0.0.conv1`` ...). timm's
``hrnet_w32`` and MMPose's ``HRNet`` backbone use the same names, so an official
``pose_hrnet_w32_*.pth``, an ImageNet ``hrnet_w32`` (official or timm) or an MMPose
HRNet-W32 checkpoint that a user has on disk loads with :func:`load_hrnet_weights`.
Nothing is downloaded. (``train.init`` also takes a whole MMPose COCO model, its heatmap
head too: :mod:`ws3d.model.mmpose`.)

Shapes: images (B, 3, H, W) -> features (B, 32, H/4, W/4).
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import torch
from torch import nn

from ws3d.errors import InputError, MissingFileError

BN_MOMENTUM = 0.1
# (modules, channels per branch) of stages 2-4; every branch has 4 basic blocks.
STAGES_W32 = ((1, (32, 64)), (4, (32, 64, 128)), (3, (32, 64, 128, 256)))


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.downsample = _conv_bn(c_in, planes * 4, 1, relu=False) if c_in != planes * 4 else None

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class HighResolutionModule(nn.Module):
    """Parallel branches, then every output branch sums all inputs resampled to its scale."""

    def __init__(self, channels: tuple[int, ...], outputs: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c) for _ in range(4)]) for c in channels)
        self.fuse_layers = nn.ModuleList()
        for i in range(outputs):
            fuse = nn.ModuleList()
            for j, c in enumerate(channels):
                if j > i:  # coarser input: 1x1 conv, then nearest upsampling
                    fuse.append(nn.Sequential(nn.Conv2d(c, channels[i], 1, bias=False),
                                              nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                                              nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))  # fmt: skip
                elif j == i:
                    fuse.append(None)
                else:  # finer input: i - j strided 3x3 convs, the last without ReLU
                    steps = [_conv_bn(c, c, stride=2) for _ in range(i - j - 1)]
                    fuse.append(nn.Sequential(*steps, _conv_bn(c, channels[i], stride=2, relu=False)))
            self.fuse_layers.append(fuse)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for fuse in self.fuse_layers:
            y = sum(x if layer is None else layer(x) for layer, x in zip(fuse, xs, strict=True))
            out.append(torch.relu(y))
        return out


def _transition(c_pre: tuple[int, ...], c_cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapt existing branches (None when unchanged) and add a strided branch below the coarsest."""
    layers = nn.ModuleList()
    for i, c in enumerate(c_cur):
        if i < len(c_pre):
            layers.append(_conv_bn(c_pre[i], c) if c_pre[i] != c else None)
        else:
            layers.append(nn.Sequential(_conv_bn(c_pre[-1], c, stride=2)))
    return layers


class HRNetW32(nn.Module):
    """HRNet-W32 without its final layer: (B, 3, H, W) -> (B, 32, H/4, W/4). H, W divisible by 32."""

    out_channels = 32
    stride = 4

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.layer1 = nn.Sequential(Bottleneck(64, 64), *[Bottleneck(256, 64) for _ in range(3)])
        previous = (256,)
        for k, (modules, channels) in enumerate(STAGES_W32, start=1):
            setattr(self, f"transition{k}", _transition(previous, channels))
            last = k == len(STAGES_W32)  # the last module of stage 4 outputs the finest branch only
            stage = [HighResolutionModule(channels, 1 if last and m == modules - 1 else len(channels))
                     for m in range(modules)]  # fmt: skip
            setattr(self, f"stage{k + 1}", nn.Sequential(*stage))
            previous = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer1(torch.relu(self.bn2(self.conv2(x))))
        xs = [x]
        for k in range(1, len(STAGES_W32) + 1):
            transition = getattr(self, f"transition{k}")
            xs = [
                xs[min(i, len(xs) - 1)] if t is None else t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(transition)
            ]
            xs = getattr(self, f"stage{k + 1}")(xs)
        return xs[0]


def _backbone_weights(state: dict) -> tuple[str, dict]:
    """Find the backbone in a state dict saved by one of the public HRNet codebases.

    Args:
        state: the checkpoint's state dict, out of any ``state_dict`` / ``model`` wrapper.

    Returns:
        ``(prefix, weights)``: the prefix the file puts before the backbone's names
        (``""``, ``"module."``, ``"backbone."`` or ``"module.backbone."``) and the tensors
        whose names carry it, keyed by the name without it.
    """
    prefix = ""
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        prefix = "module."
    # MMPose keeps the backbone beside its head (``keypoint_head.`` in 0.x, ``head.`` in 1.x),
    # so only some keys carry ``backbone.``; the others are the head's, ignored.
    if any(k.startswith(prefix + "backbone.") for k in state):
        prefix += "backbone."
    return prefix, {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _numpy_globals() -> list:
    """What a weights-only ``torch.load`` may rebuild besides tensors: numpy arrays, dtypes and
    scalars (MMPose 1.x keeps its dataset's metadata, numpy arrays among it, in ``meta``),
    under numpy 2's names and numpy 1's (``numpy.core``), which older files carry."""
    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    old = "numpy.core.multiarray."
    allowed = [np.ndarray, np.dtype, core._reconstruct, core.scalar]
    allowed += [(core._reconstruct, old + "_reconstruct"), (core.scalar, old + "scalar")]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype by its class
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dtypes.__all__ if name != "ObjectDType"]
    return allowed


def load_torch_file(path: str | os.PathLike):
    """``torch.load`` a file a user named, on the CPU, weights only (no code runs).

    Tensors, plain Python values and numpy arrays (:func:`_numpy_globals`) load.

    Returns:
        What the file holds, or None if it is not a readable PyTorch file (truncated,
        corrupt, or another kind of file).

    Raises:
        InputError: the file holds other Python objects (e.g. a whole pickled model, or
            mmengine's training state beside the weights); the message names the first.
    """
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.findall(r"GLOBAL ([\w.]+)", str(error)) or re.findall(r"got <class '([\w.]+)'>", str(error))
        if found:
            raise InputError(
                f"{path}: holds Python objects other than tensors, numpy arrays and plain values ({found[0]}), "
                "which ws3d does not unpickle; save its state_dict alone (for MMPose: tools/misc/publish_model.py, "
                "or torch.save({'state_dict': checkpoint['state_dict']}, path))"
            ) from None
        return None
    except Exception:  # a truncated or foreign file; the caller names what it expected
        return None


def load_hrnet_weights(backbone: HRNetW32, path: str | os.PathLike) -> dict:
    """Load HRNet-W32 backbone weights from a checkpoint file on disk.

    Layouts that load: the official pose HRNet (``pose_hrnet_w32_*.pth``, a plain state
    dict), the official and timm ImageNet ``hrnet_w32`` (the same names; the
    classification parts ``incre_modules``, ``downsamp_modules``, ``final_layer``,
    ``classifier`` and the coarser outputs of the last stage-4 module are ignored), and
    MMPose (``{"meta": ..., "state_dict": {"backbone.conv1.weight": ...,
    "keypoint_head.final_layer.weight": ...}}``, ``head.`` in MMPose 1.x). Any state dict
    may be wrapped in ``state_dict`` / ``model`` and saved from ``nn.DataParallel``
    (``module.``). The module names need no mapping: all of these use the pose HRNet's.

    Args:
        backbone: the HRNet-W32 to load into, in place.
        path: a file written by ``torch.save`` (read weights-only: :func:`load_torch_file`).

    Returns:
        ``{"loaded": n, "ignored": m, "ignored_keys": [...]}``: the number of backbone
        tensors loaded, and the number and sorted names (as in the file) of the
        checkpoint's other tensors, which were left out.

    Raises:
        MissingFileError: ``path`` does not exist.
        InputError: the file is not a readable checkpoint, or a backbone tensor is missing
            or has the wrong shape (the message names the first one, as in the file).
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: no such HRNet checkpoint file")
    state = load_torch_file(path)
    if state is None:  # a truncated or foreign file: say which file, not a traceback
        raise InputError(f"{path}: not a readable PyTorch checkpoint")
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict, found {type(state).__name__}")
    prefix, weights = _backbone_weights(state)
    own = backbone.state_dict()
    for name, tensor in own.items():
        if name.endswith("num_batches_tracked") and name not in weights:  # older checkpoints lack it
            weights[name] = tensor
        if name not in weights:
            raise InputError(f"{path}: HRNet-W32 weight {prefix + name!r} is missing ({len(own)} expected)")
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise InputError(
                f"{path}: {prefix + name!r} has shape {tuple(weights[name].shape)}, HRNet-W32 has {tuple(tensor.shape)}"
            )
    backbone.load_state_dict({k: weights[k] for k in own})
    ignored = sorted(k for k in state if not (k.startswith(prefix) and k[len(prefix) :] in own))
    return {"loaded": len(own), "ignored": len(ignored), "ignored_keys": ignored}
