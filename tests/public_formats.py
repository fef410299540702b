"""The joint orders of the real data sets' files, as their public code defines them.

Tests write annotation files with these, never with the loaders' own tables, so that a
loader that misreads a format fails its test.
"""

import numpy as np

# Human3.6M's raw 32-joint skeleton and the 17 joints of the standard protocol (the ones
# VideoPose3D and 3d-pose-baseline keep), in ws3d's order.
H36M_17_OF_32 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
# learnable-triangulation's generate-labels-npy-multiview.py: "16 joints in MPII order +
# Neck/Nose", picked from the raw 32.
MULTIVIEW_OF_32 = (3, 2, 1, 6, 7, 8, 0, 12, 13, 15, 27, 26, 25, 17, 18, 19) + (14,)
# MPI-INF-3DHP's mpii_get_joint_set: all_joint_names (annot.mat's 28), and the test set's 17
# ('relevant', 1-based into those 28).
MPI_28 = ("spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top", "left_clavicle",
          "left_shoulder", "left_elbow", "left_wrist", "left_hand", "right_clavicle", "right_shoulder", "right_elbow",
          "right_wrist", "right_hand", "left_hip", "left_knee", "left_ankle", "left_foot", "left_toe", "right_hip",
          "right_knee", "right_ankle", "right_foot", "right_toe")  # fmt: skip
MPI_TEST_17 = [i - 1 for i in (8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7)]
# The Human3.6M 17 (ws3d's order) by their 3DHP names: 3DHP's "neck" is the thorax, its
# "head" H3.6M's neck/nose joint, its "head_top" the head.
H36M_17_AS_MPI = ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
                  "neck", "head", "head_top", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder",
                  "right_elbow", "right_wrist")  # fmt: skip
H36M_17_IN_MPI_28 = [MPI_28.index(name) for name in H36M_17_AS_MPI]


def multiview_order(poses_17):
    """(..., 17, D) in ws3d's order -> learnable-triangulation's table order."""
    raw = np.zeros(poses_17.shape[:-2] + (32, poses_17.shape[-1]))
    raw[..., H36M_17_OF_32, :] = poses_17
    return raw[..., MULTIVIEW_OF_32, :]

# MPII Human Pose's joint ids 0-15 (its annotation description), and for each of the
# Human3.6M 17 (ws3d's order) its MPII id: the thorax is H3.6M's "neck", the upper neck
# stands in for its neck/nose joint, and MPII has no spine.
MPII_16 = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax", "upper_neck", "head_top",
           "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist")  # fmt: skip
H36M_17_IN_MPII = [6, 2, 1, 0, 3, 4, 5, None, 7, 8, 9, 13, 14, 15, 12, 11, 10]
