"""Image domains of the synthetic data: where the 2D model learns, and where it is used.

``source`` stands in for public in-the-wild 2D data (MPII, COCO): photographs taken at
eye level, anywhere, of people in any clothes under any light. It is the renderer as it
has always been (the shipped 2D model and the single-domain ablation use it), and every
image of it is unchanged by this module.

``target`` stands in for one capture setting that a user brings unlabelled multi-view
footage of (a studio, a sports hall, a clinic). Each factor can be switched on alone
(``target-camera``, ...) to measure what it costs a source-trained 2D model:

- ``camera``: cameras mounted high, 3.2-4.2 m above the floor, looking down at the
  person's chest by 20-41 degrees from the h36m rig's 4-6 m (median 30), 28-55 from the
  orbit rig's 2.5-4 m (median 40); the source's look down by 7 and 13 (medians);
- ``room``: one room for every image: a dark wall, a light floor with tape markings, a
  few boxes (the source's backgrounds are random clutter in random colours);
- ``kit``: everybody in the setting's kit: dark tops and trousers from a small palette,
  a coloured left sleeve still (the source dresses people in any colours);
- ``camera_noise``: sensor noise, motion blur and JPEG compression of a cheap camera;
- ``motion``: the setting's activity mix: mostly crouching, bending and reaching, the
  poses the source shows least of (the source draws all activities equally).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ws3d.data.poses import ACTIVITIES, Subject

FACTORS = ("camera", "room", "kit", "camera_noise", "motion")


# Each domain by name: the factors in which it differs from the source (none: the source).
DOMAINS = {
    "source": frozenset(),
    "target": frozenset(FACTORS),
    **{f"target-{f}": frozenset({f}) for f in FACTORS},
}

# target camera: mounted high (mm above the floor); the rigs keep their distances.
CAMERA_HEIGHT_MM = (3200.0, 4200.0)
# target motion: the share of each activity (ACTIVITIES order), the rare ones frequent.
MOTION_MIX = {"standing": 0.05, "walking": 0.05, "reaching": 0.2, "sitting": 0.1, "crouching": 0.25,
              "bending": 0.25, "arms_raised": 0.1}  # fmt: skip
# target kit: tops and trousers (RGB 0..1), the setting's few colours.
KIT = np.array([[0.1, 0.12, 0.2], [0.15, 0.15, 0.15], [0.25, 0.1, 0.1], [0.1, 0.2, 0.12]])


def activity(factors: frozenset[str], rng: np.random.Generator) -> str | None:
    """The activity to pose, or None for the source's uniform draw (inside sample_person)."""
    if "motion" not in factors:
        return None
    return str(rng.choice(ACTIVITIES, p=[MOTION_MIX[a] for a in ACTIVITIES]))


def dress(factors: frozenset[str], subject: Subject, rng: np.random.Generator) -> Subject:
    """The subject in the domain's clothes (the source: as made)."""
    if "kit" not in factors:
        return subject
    top, bottom = KIT[rng.integers(len(KIT))], KIT[rng.integers(len(KIT))]
    shade = rng.uniform(0.85, 1.15)
    return replace(subject, shirt=top * shade, trousers=bottom * shade, shoes=np.full(3, 0.08),
                   logo=np.array([0.8, 0.8, 0.75]))  # fmt: skip


def room(size: int, rng: np.random.Generator) -> np.ndarray:
    """The target's room (size, size, 3) float32 RGB 0..1: wall, taped floor, boxes.

    A camera looking down sees mostly floor: the wall takes the top 0-30 % of the crop.
    """
    wall, floor = np.array([0.18, 0.2, 0.24]), np.array([0.62, 0.58, 0.5]) * rng.uniform(0.85, 1.1)
    image = np.empty((size, size, 3), np.float32)
    horizon = int(rng.uniform(0.0, 0.3) * size)
    image[:horizon], image[horizon:] = wall, floor
    spacing = size / rng.uniform(1.5, 3.0)
    offset = rng.uniform(0, spacing, 2)
    tape = (0.85, 0.75, 0.2)
    thickness = max(1, size // 64)
    for x in np.arange(offset[0], size, spacing):  # floor markings in perspective: slanted lines
        slant = rng.uniform(-0.3, 0.3) * size
        cv2.line(image, (int(x), horizon), (int(x + slant), size), tape, thickness, cv2.LINE_AA)
    for y in np.arange(horizon + offset[1], size, spacing):
        cv2.line(image, (0, int(y)), (size, int(y + rng.uniform(-0.1, 0.1) * size)), tape, thickness, cv2.LINE_AA)
    for _ in range(rng.integers(0, 3)):  # equipment boxes
        x, y = int(rng.integers(0, size)), int(rng.integers(horizon, size))
        w, h = (int(v) for v in rng.integers(size // 10, size // 4, 2))
        cv2.rectangle(image, (x, y), (x + w, y + h), (0.3, 0.3, 0.32), -1)
    noise = cv2.resize(rng.normal(0.0, 0.03, (size // 8 + 1, size // 8 + 1, 3)).astype(np.float32), (size, size))
    return np.clip(image + noise, 0.0, 1.0)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap camera: motion blur, sensor noise, JPEG. image: (S, S, 3) uint8 -> same."""
    size = image.shape[0]
    length = int(rng.integers(size // 48 + 1, size // 16 + 2))  # 3-7 px at 96 px
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2] = 1.0 / length
    angle = rng.uniform(0, 180)
    turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    kernel /= max(kernel.sum(), 1e-6)
    blurred = cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT)
    noisy = blurred + rng.normal(0.0, rng.uniform(4.0, 12.0), image.shape)
    bgr = np.ascontiguousarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)[..., ::-1])  # OpenCV's order
    _, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 50))])
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1])
