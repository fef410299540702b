"""Synthetic 3D people: subjects (bone lengths, clothes) and poses from joint angles.

A pose is built by forward kinematics on the 17-joint Human3.6M skeleton from a handful
of joint angles (hip flexion/abduction, knee, torso lean/side-bend/twist, shoulder
flexion/abduction, elbow, head pitch). Each activity draws those angles from its own
ranges; every angle is then clipped to the anatomical limits in ``LIMITS_DEG``.

Body frame: x = the person's left, y = down, z = backwards (the person faces -z), in
millimetres. The world frame has the floor at y = 0 (y down, so people stand at y < 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, NUM_JOINTS

ACTIVITIES = ("standing", "walking", "reaching", "sitting", "crouching", "bending", "arms_raised")

# Anatomical limits in degrees; flexion is forwards, abduction is outwards.
LIMITS_DEG = {
    "hip_flex": (-30, 130), "hip_abd": (-10, 45), "knee": (0, 150),
    "lean": (-25, 90), "side": (-30, 30), "twist": (-45, 45),
    "sho_flex": (-60, 180), "sho_abd": (0, 170), "elbow": (0, 145), "head": (-30, 40),
}  # fmt: skip

# Per-activity ranges (degrees). "L"/"R" keys are per side; unspecified angles use BASE.
BASE = {
    "hip_flex": (-5, 10), "hip_abd": (0, 8), "knee": (0, 10), "lean": (-5, 10), "side": (-5, 5),
    "twist": (-10, 10), "sho_flex": (-15, 25), "sho_abd": (5, 25), "elbow": (5, 40), "head": (-10, 20),
}  # fmt: skip
ACTIVITY_RANGES = {
    "standing": {},
    "walking": {"hip_flex": (-25, 35), "knee": (0, 55), "sho_flex": (-30, 35), "elbow": (10, 50)},
    "reaching": {"sho_flex": (60, 160), "elbow": (0, 30), "lean": (0, 30), "twist": (-30, 30)},
    "sitting": {"hip_flex": (75, 100), "knee": (70, 110), "hip_abd": (0, 20), "lean": (-10, 20)},
    "crouching": {"hip_flex": (95, 125), "knee": (110, 140), "hip_abd": (5, 30), "lean": (20, 50)},
    "bending": {"lean": (45, 85), "hip_flex": (-5, 15), "sho_flex": (40, 100), "elbow": (0, 30)},
    "arms_raised": {"sho_flex": (120, 180), "sho_abd": (20, 160), "elbow": (0, 40)},
}
SIDED = ("hip_flex", "hip_abd", "knee", "sho_flex", "sho_abd", "elbow")


@dataclass(frozen=True)
class Subject:
    """One synthetic person: bone lengths (mm, per entry of ``BONES``) and clothes (RGB 0..1)."""

    subject_id: int
    bone_lengths: np.ndarray  # (len(BONES),)
    skin: np.ndarray
    hair: np.ndarray
    shirt: np.ndarray
    sleeve: np.ndarray  # the left sleeve's colour: left and right look different
    trousers: np.ndarray
    shoes: np.ndarray
    logo: np.ndarray  # a chest print: front and back look different


def make_subject(subject_id: int) -> Subject:
    """The subject with this id; the same id always gives the same person.

    Bone lengths are the Human3.6M means times a body scale in [0.92, 1.08] and a
    per-bone factor in [0.96, 1.04] (at most +-10 % in all), left and right equal.
    """
    rng = np.random.default_rng([0x5EB1EC7, subject_id])
    scale = rng.uniform(0.92, 1.08)
    per_bone = rng.uniform(0.96, 1.04, len(BONES))
    # Symmetric limbs: the left bone copies the right one (BONES lists right legs, left
    # legs, spine/head, left arm, right arm).
    per_bone[3:6] = per_bone[0:3]
    per_bone[13:16] = per_bone[10:13]
    lengths = np.asarray(MEAN_BONE_LENGTHS_MM) * scale * per_bone
    skin = np.array([0.95, 0.78, 0.62]) * rng.uniform(0.45, 1.05)
    return Subject(
        subject_id=subject_id,
        bone_lengths=lengths,
        skin=np.clip(skin, 0.15, 1.0),
        hair=rng.uniform(0.02, 0.5, 3) * rng.uniform(0.3, 1.0),
        shirt=rng.uniform(0.05, 0.95, 3),
        sleeve=rng.uniform(0.05, 0.95, 3),
        trousers=rng.uniform(0.05, 0.8, 3),
        shoes=rng.uniform(0.0, 0.6, 3),
        logo=rng.uniform(0.0, 1.0, 3),
    )


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def sample_angles(activity: str, rng: np.random.Generator) -> dict[str, float]:
    """Joint angles in radians for one pose of ``activity``, clipped to ``LIMITS_DEG``.

    Sided angles get keys ``name_L`` and ``name_R``. Walking swings legs and arms in
    opposition; reaching raises one arm.
    """
    if activity not in ACTIVITY_RANGES:
        raise ValueError(f"unknown activity {activity!r}; expected one of {ACTIVITIES}")
    ranges = {**BASE, **ACTIVITY_RANGES[activity]}
    deg = {}
    for name, (lo, hi) in ranges.items():
        if name in SIDED:
            deg[name + "_L"], deg[name + "_R"] = rng.uniform(lo, hi, 2)
        else:
            deg[name] = rng.uniform(lo, hi)
    if activity == "walking":  # the legs swing in opposition, each arm with the other leg
        deg["hip_flex_R"] = -deg["hip_flex_L"] + rng.uniform(-8, 8)
        deg["sho_flex_L"] = 0.6 * deg["hip_flex_R"] + rng.uniform(-8, 8)
        deg["sho_flex_R"] = 0.6 * deg["hip_flex_L"] + rng.uniform(-8, 8)
    if activity == "reaching":  # only one arm reaches
        lazy = "_L" if rng.random() < 0.5 else "_R"
        deg["sho_flex" + lazy] = rng.uniform(*BASE["sho_flex"])
    for key in deg:
        lo, hi = LIMITS_DEG[key[:-2] if key[-2:] in ("_L", "_R") else key]
        deg[key] = float(np.clip(deg[key], lo, hi))
    return {k: np.deg2rad(v) for k, v in deg.items()}


def forward_kinematics(angles: dict[str, float], bone_lengths: np.ndarray) -> np.ndarray:
    """Joint positions (17, 3) in the body frame (mm, pelvis at the origin) from joint angles.

    Limbs hang down (+y) at rest; flexion turns a limb forwards (towards -z), abduction
    outwards; the knee and elbow bend the lower limb backwards / forwards.
    """
    L = {bone: length for bone, length in zip(BONES, bone_lengths, strict=True)}
    down, up = np.array([0.0, 1.0, 0.0]), np.array([0.0, -1.0, 0.0])
    P = np.zeros((NUM_JOINTS, 3))
    torso = _rx(angles["lean"]) @ _rz(angles["side"])
    upper = torso @ _ry(angles["twist"])
    for side, sign, (hip, knee, ankle) in (("_L", 1.0, (4, 5, 6)), ("_R", -1.0, (1, 2, 3))):
        P[hip] = sign * np.array([L[(hip, 0)], 0.0, 0.0])
        flex, abd, bend = angles["hip_flex" + side], angles["hip_abd" + side], angles["knee" + side]
        leg = _rz(-sign * abd)  # x is the person's left: outwards is +x on the left
        P[knee] = P[hip] + L[(knee, hip)] * (leg @ _rx(-flex) @ down)
        P[ankle] = P[knee] + L[(ankle, knee)] * (leg @ _rx(-(flex - bend)) @ down)
    P[7] = L[(7, 0)] * (torso @ up)
    P[8] = P[7] + L[(8, 7)] * (upper @ up)
    head = upper @ _rx(angles["head"])
    P[9] = P[8] + L[(9, 8)] * (head @ _rx(0.35) @ up)  # the nose sits in front of the neck
    P[10] = P[9] + L[(10, 9)] * (head @ _rx(-0.25) @ up)
    for side, sign, (sho, elb, wri) in (("_L", 1.0, (11, 12, 13)), ("_R", -1.0, (14, 15, 16))):
        P[sho] = P[8] + L[(sho, 8)] * (upper @ (np.array([sign, 0.35, 0.0]) / np.hypot(1.0, 0.35)))
        flex, abd, bend = angles["sho_flex" + side], angles["sho_abd" + side], angles["elbow" + side]
        arm = upper @ _rz(-sign * abd)
        P[elb] = P[sho] + L[(elb, sho)] * (arm @ _rx(-flex) @ down)
        P[wri] = P[elb] + L[(wri, elb)] * (arm @ _rx(-(flex + bend)) @ down)
    return P


def sample_person(subject: Subject, rng: np.random.Generator, activity: str | None = None,
                  spread_mm: float = 300.0):  # fmt: skip
    """A posed person in the world frame: joints (17, 3) mm with the lowest ankle on the
    floor, random heading and a position within ``spread_mm`` of the origin along x and z.

    Returns (joints_world, activity, heading) with the heading in radians about world y.
    """
    activity = activity if activity is not None else ACTIVITIES[rng.integers(len(ACTIVITIES))]
    body = forward_kinematics(sample_angles(activity, rng), subject.bone_lengths)
    heading = rng.uniform(-np.pi, np.pi)
    return place(body, heading, rng.uniform(-spread_mm, spread_mm, 2)), activity, heading


def place(body: np.ndarray, heading: float, position: np.ndarray) -> np.ndarray:
    """Body-frame joints (17, 3) in the world: turned by ``heading`` (radians) about the
    vertical, the lowest ankle on the floor, and moved to the floor point ``position``
    (x, z) mm."""
    world = body @ _ry(heading).T
    ankle_clearance = 80.0  # the ankle joint sits this far above the sole
    world[:, 1] -= world[:, 1].max() + ankle_clearance
    world[:, [0, 2]] += position
    return world


def body_axes(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit (left, up, forward) directions of a posed body (17, 3), from hips and spine."""
    left = joints[4] - joints[1] + joints[11] - joints[14]
    up = joints[8] - joints[0]
    up = up / np.linalg.norm(up)
    left = left - up * (left @ up)
    left = left / np.linalg.norm(left)
    forward = np.cross(left, up)  # (x left, y down, z back): left x up = -z, the way the person faces
    return left, up, forward
