"""The Human3.6M 17-joint skeleton that every ws3d tensor uses.

Order: 0 pelvis, 1 RHip, 2 RKnee, 3 RAnkle, 4 LHip, 5 LKnee, 6 LAnkle, 7 spine,
8 thorax/neck, 9 nose/neck-top, 10 head, 11 LShoulder, 12 LElbow, 13 LWrist,
14 RShoulder, 15 RElbow, 16 RWrist. Poses are scale-normalised by the neck-pelvis
bone (joints 8 and 0), so that bone has unit length.
"""

from __future__ import annotations

import torch

JOINTS = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
    "neck", "nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)  # fmt: skip
NUM_JOINTS = len(JOINTS)
ROOT, NECK = 0, 8
REFERENCE_BONE = (NECK, ROOT)

# (child, parent) pairs of the kinematic tree.
BONES = (
    (1, 0), (2, 1), (3, 2), (4, 0), (5, 4), (6, 5), (7, 0), (8, 7), (9, 8), (10, 9),
    (11, 8), (12, 11), (13, 12), (14, 8), (15, 14), (16, 15),
)  # fmt: skip


def standing_pose(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A neutral standing person, arms out, in metres: (17, 3), camera axes (y down),
    pelvis at the origin, facing -z (towards a camera on the -z side)."""
    return torch.tensor(
        [[0, 0, 0], [-.13, 0, 0], [-.13, .45, 0], [-.13, .9, 0], [.13, 0, 0], [.13, .45, 0], [.13, .9, 0],
         [0, -.23, 0], [0, -.48, 0], [0, -.58, -.08], [0, -.7, 0], [.17, -.45, 0], [.45, -.45, 0], [.7, -.45, 0],
         [-.17, -.45, 0], [-.45, -.45, 0], [-.7, -.45, 0]],
        dtype=dtype,
    )  # fmt: skip

# Mean bone lengths of the Human3.6M training subjects in millimetres, per entry of BONES.
MEAN_BONE_LENGTHS_MM = (
    133.0, 442.0, 454.0, 133.0, 442.0, 454.0, 233.0, 257.0, 121.0, 115.0,
    151.0, 278.0, 251.0, 151.0, 278.0, 251.0,
)  # fmt: skip

# Left/right partners, for flips and for drawing left and right in different colours.
LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)
# The joint order with left and right exchanged: pose[..., MIRRORED, :] labels a person the
# way a detector that swapped left and right does (and undoes that swap).
MIRRORED = tuple(
    dict(zip(LEFT_JOINTS + RIGHT_JOINTS, RIGHT_JOINTS + LEFT_JOINTS, strict=True)).get(j, j) for j in range(NUM_JOINTS)
)
