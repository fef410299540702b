"""Start from a public 2D model: an MMPose top-down HRNet-W32 checkpoint trained on COCO.

``train.init=FILE.pth`` takes such a file as well as a ws3d checkpoint
(:func:`ws3d.model.build.read_init`). It is recognised by its keys, not its name: a state
dict (under ``state_dict``, beside ``meta``; a ``module.`` prefix is unwrapped) with
``backbone.`` tensors and a heatmap head, ``head.final_layer`` (MMPose 1.x,
``HeatmapHead``) or ``keypoint_head.final_layer`` (MMPose 0.x,
``TopdownHeatmapSimpleHead``), e.g. ``td-hm_hrnet-w32_8xb64-210e_coco-256x192-*.pth``
(1.x) or ``hrnet_w32_coco_256x192-*.pth`` (0.x). Nothing is downloaded.

What maps, and how:

* **Backbone.** MMPose's ``HRNet`` (mmpose/models/backbones/hrnet.py, with the config's
  ``extra``: stage 1 four Bottlenecks of 64, stages 2-4 of (1, 4, 3) modules with 32, 64,
  128, 256 channels, ``multiscale_output`` False) names its layers as the pose HRNet
  does (its norm layers are ``bn1`` ..., built by mmcv's ``build_norm_layer``), and so does
  :class:`~ws3d.model.hrnet.HRNetW32`: ``backbone.<name>`` loads into ws3d's
  ``backbone.<name>``, every tensor, BatchNorm statistics included. Both feed the head
  the finest branch (the last module of stage 4 has one fuse output, into it), so the
  features are the same function of the image.
* **Heatmaps.** The head of this config is one 1x1 conv, 32 -> 17 COCO keypoints
  (``deconv_out_channels=None`` in 1.x, ``num_deconv_layers=0`` in 0.x), the shape of
  ws3d's heatmap rows (:attr:`PoseNet2p5D.head` rows ``0..J-1``). Each ws3d joint's row
  (weight and bias) is the mean of the COCO rows in :data:`HEATMAP_SOURCES`: a copy
  where a COCO keypoint is that joint; pelvis = mean of the hips, neck (thorax) = mean of
  the shoulders, head (top) = mean of the eyes and ears (issue 32's rule), and spine =
  mean of the hips and shoulders (ws3d's choice; COCO has no spine). The conv is linear,
  so such a joint's heatmap is exactly the mean of its sources' heatmaps: its soft-argmax
  (beta = 50) lies at the centroid of their peaks when they are equally strong, near the
  strongest otherwise, and its confidence phi (the mean map at that point) is low when
  the sources are apart (peaks of 0.85, sigma 2: 0.52 at 4 heatmap pixels apart, 0.12 at
  8, 0.04 at 10). So in the weak stage's pseudo-labels (``loss.pseudo_threshold``
  0.5) these joints start masked; 2D labels (``data.mv_labels=given``, detections, or a
  ``pretrain2d`` stage) teach them. They start there and are learnt in the stage that
  follows.
* **Depth.** The depth rows of the head and the depth branch have no counterpart and keep
  their own initialisation, as after ws3d's own 2D pre-training.

What does not map, and is refused with an error naming the file: another width (W48
and others: the shapes differ), an HRNet whose last module keeps all four outputs
(``multiscale_output=True``: extra ``stage4.2.fuse_layers.1..3``; MMPose's head would
read the coarsest branch), a head with deconvolutions or extra convs (``deconv_layers``,
``conv_layers``, ``final_layer.N``), a 3x3 final conv, a keypoint set other than COCO's
17, a ``neck``, and a model whose config is not ``model.backbone=hrnet_w32``.

Conventions that differ and that training absorbs: MMPose's heatmap pixel ``x`` is image
pixel ``4 x`` (its MSRA codec), ws3d's is ``4 x + 1.5`` (pixel centres,
:func:`~ws3d.model.pose_net.image_to_heatmap_K`); MMPose trained on 256x192 crops, ws3d
crops are square. The input normalisation is the same (RGB, ImageNet mean and std).
"""

from __future__ import annotations

import functools
import os

import torch

from ws3d.errors import InputError
from ws3d.skeleton import JOINTS, NUM_JOINTS

from .hrnet import HRNetW32

# The format tag of what :func:`mmpose_payload` returns, beside ws3d's own checkpoints'.
MMPOSE_FORMAT = "mmpose-topdown-heatmap"
HEAD_PREFIXES = ("head.", "keypoint_head.")  # MMPose 1.x, 0.x
IGNORED_PREFIXES = ("data_preprocessor.",)  # buffers of the input normalisation, no weights

# Per ws3d joint, the COCO keypoints (as MMPose's configs/_base_/datasets/coco.py names them)
# whose heatmap rows' mean initialises that joint's heatmap row.
HEATMAP_SOURCES: dict[str, tuple[str, ...]] = {
    "pelvis": ("left_hip", "right_hip"),
    "r_hip": ("right_hip",),
    "r_knee": ("right_knee",),
    "r_ankle": ("right_ankle",),
    "l_hip": ("left_hip",),
    "l_knee": ("left_knee",),
    "l_ankle": ("left_ankle",),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "neck": ("left_shoulder", "right_shoulder"),
    "nose": ("nose",),
    "head": ("left_eye", "right_eye", "left_ear", "right_ear"),
    "l_shoulder": ("left_shoulder",),
    "l_elbow": ("left_elbow",),
    "l_wrist": ("left_wrist",),
    "r_shoulder": ("right_shoulder",),
    "r_elbow": ("right_elbow",),
    "r_wrist": ("right_wrist",),
}


def heatmap_plan() -> list[tuple[int, ...]]:
    """Per ws3d joint (in :data:`ws3d.skeleton.JOINTS` order), the COCO-17 channel indices
    whose mean initialises its heatmap row."""
    from ws3d.data.detections import COCO_17  # the keypoint order, one definition in ws3d

    return [tuple(COCO_17.index(name) for name in HEATMAP_SOURCES[joint]) for joint in JOINTS]


@functools.cache
def _hrnet_w32_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of :class:`HRNetW32`'s state dict (built on the meta device: no memory)."""
    with torch.device("meta"):
        return {name: tuple(t.shape) for name, t in HRNetW32().state_dict().items()}


def mmpose_layout(state: dict) -> tuple[str, str] | None:
    """``(prefix, head)`` if ``state`` is laid out as an MMPose top-down model, else None.

    Args:
        state: a state dict, out of its ``state_dict`` wrapper.

    Returns:
        ``prefix``: ``""`` or ``"module."`` (saved from ``nn.DataParallel``); ``head``:
        ``"head."`` (MMPose 1.x) or ``"keypoint_head."`` (0.x). Recognised by the keys:
        ``backbone.`` tensors beside exactly one of the two head prefixes.
    """
    if not state or not all(isinstance(k, str) for k in state):
        return None
    prefix = "module." if all(k.startswith("module.") for k in state) else ""
    keys = [k[len(prefix) :] for k in state]
    heads = [h for h in HEAD_PREFIXES if any(k.startswith(h) for k in keys)]
    if not any(k.startswith("backbone.") for k in keys) or len(heads) != 1:
        return None
    return prefix, heads[0]


def mmpose_weights(state: dict, layout: tuple[str, str], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Map an MMPose top-down HRNet-W32 COCO state dict onto ws3d's parameter names.

    Args:
        state: the file's state dict.
        layout: its ``(prefix, head)``, as :func:`mmpose_layout` recognised it.
        path: the file, for the messages.

    Returns:
        ``backbone.<name>`` for every tensor of :class:`HRNetW32` (``num_batches_tracked``
        may be absent from older files, and then is too), and ``heatmap.weight`` (J, 32,
        1, 1) / ``heatmap.bias`` (J,): ws3d's heatmap rows built by :data:`HEATMAP_SOURCES`
        (float32; the depth rows are not here: they keep the model's initialisation).

    Raises:
        InputError: naming the file and the first key that does not fit.
    """
    prefix, head = layout
    state = {k[len(prefix) :]: v for k, v in state.items()}
    where = f"{path}: an MMPose checkpoint, but"
    other = sorted(k for k in state if not k.startswith(("backbone.", head, *IGNORED_PREFIXES)))
    if other:
        raise InputError(f"{where} {other[0]!r} is part of neither the HRNet backbone nor the heatmap head "
                         f"({len(other)} such); train.init takes a top-down HRNet-W32 without a neck")  # fmt: skip
    expected = _hrnet_w32_shapes()
    out = {}
    for name, shape in expected.items():
        key = "backbone." + name
        if key not in state:
            if name.endswith("num_batches_tracked"):  # older files lack it; the model keeps its own
                continue
            raise InputError(f"{where} the HRNet-W32 weight {prefix + key!r} is missing "
                             f"({len(expected)} backbone tensors expected)")  # fmt: skip
        if tuple(state[key].shape) != shape:
            width = state.get("backbone.transition1.0.0.weight")
            kind = f"an HRNet-W{width.shape[0]}" if width is not None and width.shape[0] != 32 else "another network"
            raise InputError(f"{where} {prefix + key!r} has shape {tuple(state[key].shape)}, HRNet-W32's is {shape}: "
                             f"{kind}; train.init takes MMPose's HRNet-W32")  # fmt: skip
        out[key] = state[key]
    extra = sorted(k for k in state if k.startswith("backbone.") and k[len("backbone.") :] not in expected)
    if extra:
        raise InputError(f"{where} its backbone has tensors HRNet-W32's has not, e.g. {prefix + extra[0]!r} "
                         f"({len(extra)}): another HRNet (multiscale_output=True?) or another backbone")  # fmt: skip
    head_keys = sorted(k for k in state if k.startswith(head))
    final = (head + "final_layer.weight", head + "final_layer.bias")
    if head_keys != sorted(final):
        odd = [k for k in head_keys if k not in final] or [k for k in final if k not in head_keys]
        raise InputError(f"{where} its head is not one 1x1 conv ({prefix + odd[0]!r}); train.init takes the "
                         "heatmap head of MMPose's HRNet-W32 configs (no deconv or extra conv layers)")  # fmt: skip
    weight, bias = state[final[0]], state[final[1]]
    if tuple(weight.shape) != (17, 32, 1, 1) or tuple(bias.shape) != (17,):
        raise InputError(f"{where} {prefix + final[0]!r} has shape {tuple(weight.shape)}, not (17, 32, 1, 1): "
                         "a head of COCO's 17 keypoints as a 1x1 conv is what maps onto ws3d's joints")  # fmt: skip
    plan = heatmap_plan()
    weight, bias = weight.double(), bias.double()
    out["heatmap.weight"] = torch.stack([weight[list(src)].mean(0) for src in plan]).float()
    out["heatmap.bias"] = torch.stack([bias[list(src)].mean(0) for src in plan]).float()
    return out


def mmpose_payload(obj, path: str | os.PathLike) -> dict | None:
    """What a loaded file holds as an MMPose top-down HRNet-W32 COCO model, or None if it
    is not laid out as an MMPose top-down model.

    Args:
        obj: the file's contents (``{"meta": ..., "state_dict": ...}`` or a bare state dict).
        path: the file, for the messages.

    Returns:
        ``{"format": MMPOSE_FORMAT, "model": the file's tensors (for the run's digest of
        its init), "weights": :func:`mmpose_weights`}``.

    Raises:
        InputError: laid out as an MMPose model that does not map (see the module docstring).
    """
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or (layout := mmpose_layout(obj)) is None:
        return None
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return {"format": MMPOSE_FORMAT, "model": state, "weights": mmpose_weights(state, layout, path)}


def load_mmpose_init(model, payload: dict, path: str | os.PathLike) -> None:
    """Initialise a ws3d model from :func:`mmpose_payload`'s payload, in place.

    The backbone takes every HRNet-W32 tensor, the heatmap rows of the head take
    ``payload["weights"]["heatmap.*"]``; the depth rows and the depth branch are left as
    they are (their own initialisation).

    Raises:
        InputError: the model is not an HRNet-W32 ws3d model of ws3d's 17 joints.
    """
    if not isinstance(model.backbone, HRNetW32) or model.joints != NUM_JOINTS:
        kind = type(model.backbone).__name__
        raise InputError(f"{path}: an MMPose HRNet-W32 checkpoint initialises model.backbone=hrnet_w32 "
                         f"with {NUM_JOINTS} joints; this model's backbone is {kind}")  # fmt: skip
    weights = payload["weights"]
    own = model.backbone.state_dict()
    model.backbone.load_state_dict({k: weights.get("backbone." + k, v) for k, v in own.items()})
    J = model.joints
    with torch.no_grad():
        model.head.weight[:J].copy_(weights["heatmap.weight"])
        model.head.bias[:J].copy_(weights["heatmap.bias"])
