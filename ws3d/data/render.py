"""Draw a synthetic person with OpenCV and numpy: shaded capsules, far to near.

Every body part is a capsule (a sphere when both ends coincide) with a radius in mm.
Its two ends are projected with perspective, so the drawn width falls with depth;
parts are painted from the farthest to the nearest (by the camera depth of their
centre), so nearer parts occlude farther ones. Shading is Lambertian from one light
fixed in the world, so it changes with the camera like real shading does. Left and
right, front and back differ the way clothes and faces make them differ: one coloured
sleeve and a watch on the left arm, a chest print, eyes and a nose in front, hair at the
back. Nothing else in the image depends on depth.
"""

from __future__ import annotations

import cv2
import numpy as np

from ws3d.camera import project
from ws3d.data.poses import Subject, body_axes


def body_parts(joints: np.ndarray, subject: Subject) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """The capsules of a posed person: a list of (end A (3,), end B (3,), radius mm, RGB colour).

    joints: (17, 3) in any metric frame (world or camera), mm.
    """
    j = joints
    _, up, forward = body_axes(j)
    head_up = j[10] - j[8]
    head_up = head_up / np.linalg.norm(head_up)
    face = np.cross(j[11] - j[14], head_up)
    face = face / np.linalg.norm(face)
    head_left = np.cross(head_up, face)
    head, r_head = 0.5 * (j[9] + j[10]), 92.0
    lw = (j[13] - j[12]) / np.linalg.norm(j[13] - j[12])
    rw = (j[16] - j[15]) / np.linalg.norm(j[16] - j[15])
    s = subject
    watch = np.array([0.1, 0.1, 0.12])
    eye = np.array([0.05, 0.04, 0.04])
    down = -up
    parts = [
        (j[1], j[4], 95.0, s.trousers),
        (j[0] + 60 * up, j[7], 120.0, s.shirt),
        (j[7], j[8] - 40 * up, 130.0, s.shirt),
        (j[11], j[14], 62.0, s.shirt),
        (j[7] * 0.4 + j[8] * 0.6 + 112 * forward, None, 45.0, s.logo),
        (j[8], j[9], 45.0, s.skin),
        (head - 25 * head_up, head + 25 * head_up, r_head, s.skin),
        (head + 0.3 * r_head * head_up - 0.3 * r_head * face, None, 0.88 * r_head, s.hair),
        (head + 0.85 * r_head * face + 0.15 * r_head * head_up + 0.35 * r_head * head_left, None, 0.15 * r_head, eye),
        (head + 0.85 * r_head * face + 0.15 * r_head * head_up - 0.35 * r_head * head_left, None, 0.15 * r_head, eye),
        (head + 0.95 * r_head * face - 0.15 * r_head * head_up, None, 0.16 * r_head, s.skin * 0.85),
        (j[11], j[12], 48.0, s.sleeve),
        (j[14], j[15], 48.0, s.shirt),
        (j[12], j[13], 38.0, s.skin),
        (j[15], j[16], 38.0, s.skin),
        (j[13] - 30 * lw, j[13] - 10 * lw, 42.0, watch),
        (j[13] + 70 * lw, None, 45.0, s.skin),
        (j[16] + 70 * rw, None, 45.0, s.skin),
        (j[1], j[2], 75.0, s.trousers),
        (j[4], j[5], 75.0, s.trousers),
        (j[2], j[3], 55.0, s.trousers),
        (j[5], j[6], 55.0, s.trousers),
        (j[3] + 40 * down, j[3] + 60 * down + 150 * forward, 45.0, s.shoes),
        (j[6] + 40 * down, j[6] + 60 * down + 150 * forward, 45.0, s.shoes),
    ]
    return [(a, a if b is None else b, r, c) for a, b, r, c in parts]


def _draw_capsule(image: np.ndarray, a, b, ra, rb, colour, light: np.ndarray, ambient: float) -> None:
    """Paint one projected capsule into ``image`` (H, W, 3) float32, in place.

    a, b: projected ends (px); ra, rb: projected radii (px). The surface normal at a
    pixel is taken from its offset to the closest point of the axis, so the body of the
    capsule shades like a cylinder and its caps like spheres.
    """
    H, W = image.shape[:2]
    r_max = max(ra, rb)
    x0, x1 = int(max(np.floor(min(a[0], b[0]) - r_max - 1), 0)), int(min(np.ceil(max(a[0], b[0]) + r_max + 1), W))
    y0, y1 = int(max(np.floor(min(a[1], b[1]) - r_max - 1), 0)), int(min(np.ceil(max(a[1], b[1]) + r_max + 1), H))
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(a[0])
    py = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(a[1])
    axis = np.asarray(b, np.float32) - np.asarray(a, np.float32)
    length2 = float(axis @ axis)
    t = np.clip((px * axis[0] + py * axis[1]) / length2, 0.0, 1.0) if length2 > 1e-12 else np.zeros_like(px * py)
    dx, dy = px - t * axis[0], py - t * axis[1]
    radius = np.float32(ra) + t * np.float32(rb - ra)
    dist = np.sqrt(dx * dx + dy * dy)
    alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)
    if not alpha.any():
        return
    nx, ny = dx / radius, dy / radius
    nz = -np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))  # facing the camera (-z)
    lambert = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, None)
    shade = (ambient + (1.0 - ambient) * lambert)[..., None] * np.asarray(colour, np.float32)
    patch = image[y0:y1, x0:x1]
    patch += alpha[..., None] * (shade - patch)


def draw_person(image: np.ndarray, joints_cam: np.ndarray, K: np.ndarray, subject: Subject,
                light_cam: np.ndarray, ambient: float) -> None:  # fmt: skip
    """Paint a person into ``image`` (H, W, 3) float32 RGB 0..1, in place.

    joints_cam: (17, 3) camera coordinates, mm; K: (3, 3) intrinsics of ``image``
    (no in-plane rotation); light_cam: (3,) unit vector towards the light, camera frame.
    """
    parts = body_parts(joints_cam, subject)
    ends = np.stack([np.stack([a, b]) for a, b, _, _ in parts])  # (P, 2, 3)
    depth = ends[..., 2]
    if (depth <= 1.0).any():
        raise ValueError("a body part is behind the camera")
    uv = project(ends, K)  # (P, 2, 2)
    focal = np.sqrt(abs(np.linalg.det(K[:2, :2])))
    radii = np.array([r for _, _, r, _ in parts])[:, None] * focal / depth
    for p in np.argsort(-depth.mean(1), kind="stable"):  # far to near
        _draw_capsule(image, uv[p, 0], uv[p, 1], radii[p, 0], radii[p, 1], parts[p][3], light_cam, ambient)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random cluttered background (size, size, 3) float32 RGB 0..1: a two-colour
    gradient, a few random shapes and blurred noise."""
    top, bottom = rng.uniform(0.0, 1.0, 3), rng.uniform(0.0, 1.0, 3)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    image = np.broadcast_to(top + ramp * (bottom - top), (size, size, 3)).astype(np.float32).copy()
    for _ in range(rng.integers(2, 8)):
        colour = tuple(float(c) for c in rng.uniform(0.0, 1.0, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        extent = int(rng.integers(size // 16 + 1, size // 3 + 2))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + extent, y + int(rng.integers(1, 2 * extent + 1))), colour, -1)
        else:
            cv2.circle(image, (x, y), extent, colour, -1, cv2.LINE_AA)
    noise = cv2.resize(rng.normal(0.0, 0.08, (size // 8 + 1, size // 8 + 1, 3)).astype(np.float32), (size, size))
    return np.clip(image + noise, 0.0, 1.0)


def occlude(image: np.ndarray, uv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paint an occluder (box or disc) over part of the person, in place.

    uv: (J, 2) projected joints. Returns the occluder mask (H, W) bool.
    """
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.uint8)
    centre = uv[rng.integers(len(uv))] + rng.normal(0.0, 0.05 * size, 2)
    half = rng.uniform(0.08, 0.2, 2) * size
    if rng.random() < 0.5:
        p0, p1 = np.round(centre - half).astype(int), np.round(centre + half).astype(int)
        cv2.rectangle(mask, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, -1)
    else:
        centre_px = tuple(int(v) for v in np.round(centre))
        cv2.ellipse(mask, centre_px, tuple(int(v) for v in np.round(half)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    period = int(rng.integers(2, 9))
    stripes = np.broadcast_to((np.arange(size)[None, :] // period) % 2, (size, size))  # a texture
    fill = colour * (0.75 + 0.25 * stripes[..., None]).astype(np.float32)
    covered = mask.astype(bool)
    image[covered] = fill[covered]
    return covered
