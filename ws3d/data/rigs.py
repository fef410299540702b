"""Camera rigs for the synthetic data: where the cameras stand and their intrinsics.

``h36m``: four calibrated cameras around the person at chest height, 4-6 m away, about
90 degrees apart (large baselines), like Human3.6M's studio. ``orbit``: one hand-held
camera that walks 15-60 degrees around a static person in 2-8 steps (small baselines),
like a MannequinChallenge video. Both are drawn afresh for every group. Intrinsics vary
per camera; the full frame is a virtual 1000 x 1000 sensor that the person-centred crop
then cuts from. ``studio``: a few fixed rigs of 4-8 raised cameras (:func:`studio_cameras`)
that film every group of theirs, people anywhere in the capture volume.
"""

from __future__ import annotations

import numpy as np

from ws3d.camera import intrinsics, look_at
from ws3d.data.studio import sample_studio

RIGS = ("h36m", "orbit", "mixed", "studio")
STUDIOS = 3  # the studio rig: how many studios the groups are filmed in
STUDIO_CAMERAS = (4, 8)  # cameras per studio, both ends included
FRAME = 1000  # side of the virtual full frame, pixels


def _camera(rng: np.random.Generator, azimuth: float, distance: float, height: float, target: np.ndarray,
            focal: tuple[float, float], roll_deg: float):  # fmt: skip
    centre = target + np.array([distance * np.sin(azimuth), 0.0, -distance * np.cos(azimuth)])
    centre[1] = -height
    R, _ = look_at(centre, target + rng.normal(0.0, 40.0, 3))
    roll = np.deg2rad(rng.uniform(-roll_deg, roll_deg))
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    f = rng.uniform(*focal)
    K = intrinsics(f, f * rng.uniform(0.99, 1.01), FRAME / 2 + rng.normal(0, 10), FRAME / 2 + rng.normal(0, 10))
    return K, R, -R @ centre


def sample_rig(rig: str, views: int, person: np.ndarray, rng: np.random.Generator,
               height_mm: tuple[float, float] | None = None):  # fmt: skip
    """Cameras looking at ``person`` (17, 3) world mm.

    Args:
        rig: "h36m" or "orbit".
        views: number of cameras (h36m: 1-4, orbit: 1-8).
        person: the joints the cameras aim at.
        rng: source of randomness.
        height_mm: the range of camera heights above the floor; None: the rig's own
            (h36m 1.3-1.7 m, orbit 1.1-1.9 m).

    Returns:
        K (V, 3, 3) full-frame intrinsics, R (V, 3, 3), t (V, 3) world-to-camera (mm).
    """
    chest = person.mean(0)
    if rig == "h36m":
        if not 1 <= views <= 4:
            raise ValueError(f"the h36m rig has 1 to 4 cameras, got views={views}")
        start = rng.uniform(0, 2 * np.pi)
        azimuths = start + np.arange(4) * (np.pi / 2) + rng.uniform(-0.17, 0.17, 4)
        chosen = rng.permutation(4)[:views]
        heights = height_mm or (1300, 1700)
        cams = [_camera(rng, azimuths[i], rng.uniform(4000, 6000), rng.uniform(*heights), chest, (1050, 1250), 2)
                for i in chosen]  # fmt: skip
    elif rig == "orbit":
        if not 1 <= views <= 8:
            raise ValueError(f"the orbit rig has 1 to 8 views, got views={views}")
        start, span = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(15, 60))
        distance, height = rng.uniform(2500, 4000), rng.uniform(*(height_mm or (1100, 1900)))
        focal = rng.uniform(800, 1500)
        steps = np.linspace(0.0, 1.0, views) if views > 1 else np.zeros(1)
        cams = [_camera(rng, start + span * s, distance + rng.normal(0, 50), height + rng.normal(0, 30), chest,
                        (focal * 0.98, focal * 1.02), 6) for s in steps]  # fmt: skip
    else:
        raise ValueError(f"unknown rig {rig!r}; expected 'h36m' or 'orbit'")
    K, R, t = (np.stack(x) for x in zip(*cams, strict=True))
    return K, R, t


def studio_cameras(seed: int, studio: int, height_mm: tuple[float, float] | None = None):
    """The fixed cameras of studio ``studio`` (0 .. STUDIOS - 1) of the data set with ``seed``:
    4-8 of them (:func:`ws3d.data.studio.sample_studio`, raised ``height_mm`` above the floor;
    None: 2.0-2.8 m). The same for every split, so that test people are filmed where the
    multi-view footage was.

    Returns:
        K (C, 3, 3), R (C, 3, 3), t (C, 3) world-to-camera (mm).
    """
    rng = np.random.default_rng([seed, 0x57D10, studio])
    cameras = int(rng.integers(STUDIO_CAMERAS[0], STUDIO_CAMERAS[1] + 1))
    return sample_studio(rng, cameras, height_mm or (2000.0, 2800.0))
