"""Person-centred crops, augmentation and target heatmaps; the intrinsics follow every crop.

A crop is a 2x3 affine A from source pixels to crop pixels (integer values at pixel
centres). It updates a sample consistently: the image is warped with A, uv maps through
A, and K becomes A3 @ K (A3 = A with a [0, 0, 1] row), so projecting ``joints_cam`` with
the new K lands on the new uv and ``reconstruct_3d`` works on the crop. With a rotation
the new K is no longer upper triangular; ``reconstruct_3d`` only needs it invertible.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ws3d.camera import affine_to_3x3, transform_points
from ws3d.config import AUGMENTS
from ws3d.data import augment as public
from ws3d.data.schema import names
from ws3d.errors import InputError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PERSON_FRACTION = 0.75  # the person's extent covers this fraction of the crop side


def crop_affine(centre, side: float, out_size: int, rotation_deg: float = 0.0) -> np.ndarray:
    """The (2, 3) affine that cuts a side x side box at ``centre`` (px), rotated by
    ``rotation_deg`` (counter-clockwise on screen), and scales it to out_size x out_size."""
    scale = out_size / side
    a = np.deg2rad(rotation_deg)
    c, s = np.cos(a) * scale, np.sin(a) * scale
    # Screen y points down, so a counter-clockwise turn of the content is [[c, s], [-s, c]].
    M = np.array([[c, s], [-s, c]])
    offset = (out_size - 1) / 2 - M @ np.asarray(centre, np.float64)
    return np.concatenate([M, offset[:, None]], axis=1)


def person_box(uv: np.ndarray, vis: np.ndarray, fraction: float = PERSON_FRACTION) -> tuple[np.ndarray, float]:
    """Centre (2,) and side of a square box in which the labelled joints span ``fraction``.

    uv: (J, 2); vis: (J,). Skin and shoes reach ~10 % past the joints, hence the 1.1.
    """
    pts = uv[np.asarray(vis, bool)]
    if len(pts) < 2:
        raise InputError(f"need at least 2 labelled joints to place a crop, got {len(pts)}")
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2, max(1.1 * float((hi - lo).max()) / fraction, 1.0)


def inside_crop(uv: np.ndarray, size: int) -> np.ndarray:
    """(J,) bool: which of the crop-pixel points uv (J, 2) lie inside a size x size crop
    (pixel centres 0..size-1). A joint outside its crop is never labelled visible."""
    return ((uv >= 0) & (uv <= size - 1)).all(-1)


def warp_sample(sample: dict, A: np.ndarray, out_size: int) -> dict:
    """Apply the crop A to a sample dict (image, K, uv, vis, ...); other fields pass through.

    The new vis is the old one and the joint inside the crop: nothing outside the image
    stays labelled, but uv keeps every joint's position.
    """
    out = dict(sample)
    out["image"] = cv2.warpAffine(sample["image"], A, (out_size, out_size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
    uv = transform_points(A, sample["uv"].astype(np.float64))
    out["uv"] = uv.astype(np.float32)
    out["vis"] = (np.asarray(sample["vis"]).astype(bool) & inside_crop(uv, out_size)).astype(np.uint8)
    if "K" in sample:
        out["K"] = (affine_to_3x3(A) @ sample["K"].astype(np.float64)).astype(np.float32)
    return out


def heatmap_targets(uv: np.ndarray, vis: np.ndarray, size: int, stride: int, sigma: float = 2.0) -> np.ndarray:
    """Gaussian target heatmaps (J, size, size) float32, peak 1, zero for unlabelled joints.

    uv are image pixels; the heatmap pixel of image pixel u is (u + 0.5) / stride - 0.5
    (pixel centres map to pixel centres), sigma is in heatmap pixels.
    """
    centre = (np.asarray(uv, np.float64) + 0.5) / stride - 0.5
    grid = np.arange(size, dtype=np.float64)
    gx = np.exp(-((grid[None, :] - centre[:, 0:1]) ** 2) / (2 * sigma**2))  # (J, W)
    gy = np.exp(-((grid[None, :] - centre[:, 1:2]) ** 2) / (2 * sigma**2))  # (J, H)
    maps = gy[:, :, None] * gx[:, None, :]
    return (maps * np.asarray(vis, np.float64)[:, None, None]).astype(np.float32)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 RGB -> (3, S, S) float32, normalised with the ImageNet mean and std."""
    x = (image.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """The inverse of :func:`image_to_tensor`: (3, S, S) normalised -> (S, S, 3) uint8 RGB."""
    rgb = x.detach().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


class PoseTransform:
    """Sample dict (numpy) -> training dict (torch): crop, augment, heatmap targets.

    Args:
        out_size: crop side in pixels (64 to 256).
        stride: the network's output stride; heatmaps are out_size // stride square.
        sigma: heatmap Gaussian sigma, heatmap pixels.
        scale: the crop side varies by a factor in [1 - scale, 1 + scale] (0.2: +-20 %).
        rotation: the crop turns by up to +-rotation degrees.
        train: False gives the plain person-centred crop (evaluation).
        augment: "crop" (scale and rotation, uniform, as above) or "public" (what public
            2D models train with: half-body, box shift, scale and rotation, flip with
            left/right swapped, colour, blur and a dropped-out hole;
            :mod:`ws3d.data.augment`, whose magnitudes replace ``scale`` and ``rotation``).

    The person's box comes from ``centre`` / ``side`` in the sample when present (the
    real-data loaders give them), otherwise the sample is already a person-centred crop
    (the synthetic data) and the box is the whole image. Randomness comes from the
    ``generator`` passed to the call, else from torch's global generator (which
    DataLoader seeds per worker).
    """

    def __init__(self, out_size: int = 128, stride: int = 4, sigma: float = 2.0, scale: float = 0.2,
                 rotation: float = 30.0, train: bool = True, augment: str = "crop"):  # fmt: skip
        if not 64 <= out_size <= 256:
            raise InputError(f"out_size must be within 64..256 pixels, got {out_size}")
        if out_size % stride:
            raise InputError(f"out_size {out_size} is not a multiple of the stride {stride}")
        if augment not in AUGMENTS:
            raise InputError(f"augment must be one of {AUGMENTS}, got {augment!r}")
        self.out_size, self.stride, self.sigma = out_size, stride, sigma
        self.scale, self.rotation, self.train, self.augment = scale, rotation, train, augment

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        """Crop and augment one sample; ``generator`` (optional) supplies the random draws."""
        if "centre" in sample:
            centre, side = np.asarray(sample["centre"], np.float64), float(sample["side"])
        else:
            h, w = sample["image"].shape[:2]
            centre, side = np.array([(w - 1) / 2, (h - 1) / 2]), float(max(h, w))
        angle, flip, public_recipe = 0.0, False, self.train and self.augment == "public"
        if public_recipe:
            if (half := public.half_body_box(sample["uv"], sample["vis"], generator)) is not None:
                centre, side = half
            centre, side, angle = public.box_jitter(centre, side, generator)
            flip = bool(public.uniform(generator)[0] < public.FLIP_P)
        elif self.train:
            draws = torch.rand(2, generator=generator).double().numpy() * 2 - 1
            side *= 1 + self.scale * draws[0]
            angle = self.rotation * draws[1]
        A = crop_affine(centre, side, self.out_size, angle)
        if flip:
            A = (public.flip_affine(self.out_size) @ affine_to_3x3(A))[:2]
        out = warp_sample(sample, A, self.out_size)
        if flip:
            out = public.mirror_labels(out)
        if public_recipe:
            out["image"] = public.photometric(out["image"], generator)
        maps = heatmap_targets(out["uv"], out["vis"], self.out_size // self.stride, self.stride, self.sigma)
        consumed = ("image", *names("box"))  # the box became the crop
        result = {k: torch.as_tensor(np.asarray(v)) for k, v in out.items() if k not in consumed}
        result["image"] = image_to_tensor(out["image"])
        result["heatmaps"] = torch.from_numpy(maps)
        result["vis"] = result["vis"].float()
        result["crop"] = torch.from_numpy(A)  # (2, 3) source pixels -> crop pixels, to map predictions back
        return result
