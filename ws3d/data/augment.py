"""The augmentation public 2D pose models train with, for the 2D-labelled images
(``data.augment=public``; :class:`ws3d.data.transforms.PoseTransform` applies it).

Every magnitude is RTMPose's COCO body recipe (open-mmlab/mmpose,
``projects/rtmpose/rtmpose/body_2d_keypoint/rtmpose-m_8xb256-420e_coco-256x192.py``,
``train_pipeline``), with the defaults of the MMPose transforms it calls
(``mmpose/datasets/transforms/common_transforms.py``) and of mmdet's
``YOLOXHSVRandomAug``; they were fixed from those files before any figure of the target
domain was looked at. In pipeline order:

- ``RandomHalfBody``: with p 0.3, where at least 9 joints are labelled, the box shrinks to
  the upper body (preferred with p 0.7, needs 2 labelled joints) or the lower body (3),
  centred on their mean, its side 1.5 x their extent;
- ``RandomBBoxTransform``: the box moves by up to 0.16 of its side per axis (p 0.3), its
  side scales by 0.6..1.4 (always) and it turns by up to 80 degrees (p 0.6), each a
  normal truncated at one sigma;
- ``RandomFlip``: with p 0.5 the crop is mirrored and left and right swap labels;
- ``YOLOXHSVRandomAug``: hue, saturation and value each shift (p 0.5 each) by up to 5
  (of OpenCV's 180), 30 and 30 (of 255);
- ``Blur`` and ``MedianBlur`` (albumentations): p 0.1 each, kernel 3, 5 or 7;
- ``CoarseDropout``: one black hole of 0.2..0.4 of the crop's height and width, always;
  the joints under it stay labelled.

RTMPose's last 30 of 420 epochs switch to milder settings (no shift, scale 0.75..1.25,
rotation 60, dropout p 0.5); that second stage is not reproduced. The classic HRNet
recipe (MMPose's ``td-hm_hrnet-w32_8xb64-210e_coco-256x192.py``) uses the first three
with the defaults (scale 0.5..1.5) and no photometric change.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from scipy.special import ndtri

from ws3d.skeleton import MIRRORED

UPPER_BODY = tuple(range(7, 17))  # spine, neck, head, arms (COCO's upper ids: face and arms)
LOWER_BODY = tuple(range(7))  # pelvis, hips, knees, ankles

HALF_BODY_P, HALF_BODY_UPPER_P, HALF_BODY_PADDING = 0.3, 0.7, 1.5
HALF_BODY_MIN_JOINTS, HALF_BODY_MIN_UPPER, HALF_BODY_MIN_LOWER = 9, 2, 3
SHIFT, SHIFT_P = 0.16, 0.3
SCALE = (0.6, 1.4)
ROTATE, ROTATE_P = 80.0, 0.6
FLIP_P = 0.5
HSV_DELTA = (5, 30, 30)
BLUR_P, MEDIAN_BLUR_P, BLUR_KERNELS = 0.1, 0.1, (3, 5, 7)
HOLE = (0.2, 0.4)

_PHI_LOW = 0.5 * (1 + math.erf(-1 / math.sqrt(2)))  # standard normal CDF at -1


def uniform(generator: torch.Generator | None, n: int = 1) -> np.ndarray:
    """n draws from U[0, 1), float64, from ``generator`` (torch's global one if None)."""
    return torch.rand(n, generator=generator, dtype=torch.float64).numpy()


def truncated_normal(generator: torch.Generator | None, n: int = 1) -> np.ndarray:
    """n draws of a standard normal truncated to [-1, 1] (scipy's ``truncnorm(-1, 1)``,
    which MMPose samples with), by the inverse of its CDF."""
    return ndtri(_PHI_LOW + uniform(generator, n) * (1 - 2 * _PHI_LOW))


def half_body_box(uv: np.ndarray, vis: np.ndarray, generator) -> tuple[np.ndarray, float] | None:
    """The half-body box (centre (2,), side) for joints uv (J, 2) labelled where vis (J,),
    or None where the draw or the labels leave the box as it is."""
    labelled = np.asarray(vis, bool)
    draws = uniform(generator, 2)
    if labelled.sum() < HALF_BODY_MIN_JOINTS or draws[0] >= HALF_BODY_P:
        return None
    upper = [j for j in UPPER_BODY if labelled[j]]
    lower = [j for j in LOWER_BODY if labelled[j]]
    upper_ok, lower_ok = len(upper) >= HALF_BODY_MIN_UPPER, len(lower) >= HALF_BODY_MIN_LOWER
    if not (upper_ok or lower_ok):
        return None
    chosen = upper if upper_ok and (draws[1] < HALF_BODY_UPPER_P or not lower_ok) else lower
    pts = np.asarray(uv, np.float64)[chosen]
    return pts.mean(0), HALF_BODY_PADDING * float((pts.max(0) - pts.min(0)).max())


def box_jitter(centre: np.ndarray, side: float, generator) -> tuple[np.ndarray, float, float]:
    """RandomBBoxTransform: (centre, side, rotation in degrees) of the moved box."""
    shift, scale, rotate = truncated_normal(generator, 2), truncated_normal(generator), truncated_normal(generator)
    on = uniform(generator, 2)
    if on[0] < SHIFT_P:
        centre = centre + shift * SHIFT * side
    lo, hi = SCALE
    side = side * float(scale[0] * (hi - lo) / 2 + (hi + lo) / 2)
    return centre, side, float(rotate[0] * ROTATE) if on[1] < ROTATE_P else 0.0


def flip_affine(out_size: int) -> np.ndarray:
    """(3, 3): crop pixels -> the horizontally mirrored crop's pixels (x -> size - 1 - x)."""
    return np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def mirror_labels(sample: dict) -> dict:
    """Relabel a mirrored crop: each joint takes its left/right partner's label, and the
    camera keeps a proper frame (x flips in joints_cam, K's first column flips sign), so
    that projecting joints_cam with K still gives uv."""
    out = dict(sample)
    for key in ("uv", "vis"):
        out[key] = np.asarray(sample[key])[list(MIRRORED)]
    if "joints_cam" in sample:
        out["joints_cam"] = np.asarray(sample["joints_cam"])[list(MIRRORED)] * np.array([-1, 1, 1], np.float32)
    if "K" in sample:
        out["K"] = (np.asarray(sample["K"]) * np.array([-1, 1, 1], np.float32)).astype(np.float32)
    return out


def photometric(image: np.ndarray, generator) -> np.ndarray:
    """YOLOXHSVRandomAug, Blur, MedianBlur and CoarseDropout on an (S, S, 3) uint8 RGB crop."""
    d = uniform(generator, 14)
    gains = (d[:3] * 2 - 1) * HSV_DELTA * (d[3:6] < 0.5)
    gains = gains.astype(np.int16)  # truncated towards 0, as mmdet does
    if gains.any():
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
        hsv[..., 1:] = np.clip(hsv[..., 1:] + gains[1:], 0, 255)
        image = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    if d[6] < BLUR_P:
        k = BLUR_KERNELS[int(d[7] * len(BLUR_KERNELS))]
        image = cv2.blur(image, (k, k))
    if d[8] < MEDIAN_BLUR_P:
        image = cv2.medianBlur(np.ascontiguousarray(image), BLUR_KERNELS[int(d[9] * len(BLUR_KERNELS))])
    h, w = image.shape[:2]
    lo, hi = HOLE
    hole_h = int(round(h * (lo + d[10] * (hi - lo))))
    hole_w = int(round(w * (lo + d[11] * (hi - lo))))
    y, x = int(d[12] * (h - hole_h + 1)), int(d[13] * (w - hole_w + 1))
    image = image.copy()
    image[y : y + hole_h, x : x + hole_w] = 0
    return image
