"""``ws3d predict``: 2D overlay and 3D plot for images that each show one person.

An image is centre-cropped to a square and resized to the network input. Without
calibration the focal length is assumed to be 1.2 x the crop side (a ~45 degree field of
view); the 3D pose is scale-normalised, then given metric scale from mean bone lengths
(eq. 12), which is all a single uncalibrated image allows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ws3d.camera import default_focal, intrinsics
from ws3d.data.sheet import draw_skeleton
from ws3d.data.transforms import PoseTransform
from ws3d.errors import InputError, MissingFileError
from ws3d.evaluate import pose_in_mm, to_source_pixels
from ws3d.model import model_from_checkpoint
from ws3d.plots import pose_3d
from ws3d.skeleton import NUM_JOINTS


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; InputError when it is missing or not an image."""
    if not Path(path).is_file():
        raise MissingFileError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@torch.no_grad()
def predict_images(checkpoint: str, images: list[str], out: str | os.PathLike, focal: float | None = None,
                   device: str = "cpu") -> list[str]:  # fmt: skip
    """Write ``STEM_2d.png`` (the skeleton over the image), ``STEM_3d.png`` and ``STEM.json``
    (uv in image pixels, conf, pose in mm) per image into ``out``. Returns one line per image."""
    model, cfg = model_from_checkpoint(checkpoint, device)
    frames = [read_image(p) for p in images]  # every file is checked before any work
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The evaluation crop (PoseTransform without augmentation): a sample with no box is cropped
    # to the square around the whole image.
    transform, lines = PoseTransform(cfg.data.size, stride=model.stride, train=False), []
    unlabelled = {"uv": np.zeros((NUM_JOINTS, 2), np.float32), "vis": np.zeros(NUM_JOINTS, np.uint8)}
    for path, image in zip(images, frames, strict=True):
        h, w = image.shape[:2]
        f = focal if focal is not None else default_focal(w, h)
        item = transform({"image": image, "K": intrinsics(f, f, (w - 1) / 2, (h - 1) / 2), **unlabelled})
        result = model(item["image"][None].to(device), item["K"][None].to(device))
        uv = to_source_pixels(result["uv"].cpu(), item["crop"][None])[0].numpy()
        conf = result["conf"][0].cpu().numpy()
        pose_mm = pose_in_mm(result["pose"].cpu())[0]
        stem = out / Path(path).stem
        zoom = max(1, round(512 / max(h, w)))
        overlay = draw_skeleton(image, uv, conf > 0.5, zoom=zoom)
        cv2.imwrite(f"{stem}_2d.png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        pose_3d(pose_mm.numpy(), f"{stem}_3d.png", title=Path(path).name)
        record = {"image": str(path), "uv": uv.round(2).tolist(), "conf": conf.round(3).tolist(),
                  "pose_mm": pose_mm.numpy().round(1).tolist(), "valid": bool(result["valid"][0])}  # fmt: skip
        Path(f"{stem}.json").write_text(json.dumps(record) + "\n")
        lines.append(f"{path}: wrote {stem}_2d.png, {stem}_3d.png, {stem}.json")
    return lines
