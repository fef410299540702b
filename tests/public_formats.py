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

# 2D detectors' keypoint orders (tests/data/test_detections.py writes detection files with these).
# OpenPose: CMU-Perceptual-Computing-Lab/openpose src/openpose/pose/poseParameters.cpp,
# POSE_BODY_25_BODY_PARTS and POSE_COCO_BODY_PARTS (index: name; "Background" left out).
OPENPOSE_BODY_25 = {
    0: "Nose", 1: "Neck", 2: "RShoulder", 3: "RElbow", 4: "RWrist", 5: "LShoulder", 6: "LElbow", 7: "LWrist",
    8: "MidHip", 9: "RHip", 10: "RKnee", 11: "RAnkle", 12: "LHip", 13: "LKnee", 14: "LAnkle", 15: "REye",
    16: "LEye", 17: "REar", 18: "LEar", 19: "LBigToe", 20: "LSmallToe", 21: "LHeel", 22: "RBigToe",
    23: "RSmallToe", 24: "RHeel",
}  # fmt: skip
OPENPOSE_COCO_18 = {
    0: "Nose", 1: "Neck", 2: "RShoulder", 3: "RElbow", 4: "RWrist", 5: "LShoulder", 6: "LElbow", 7: "LWrist",
    8: "RHip", 9: "RKnee", 10: "RAnkle", 11: "LHip", 12: "LKnee", 13: "LAnkle", 14: "REye", 15: "LEye",
    16: "REar", 17: "LEar",
}  # fmt: skip
# MMPose configs/_base_/datasets/halpe26.py keypoint_info (open-mmlab/mmpose); its ids 0-16 are COCO's
# 17 keypoints (configs/_base_/datasets/coco.py), the order Pose2Sim/RTMPose write as COCO_17.
MMPOSE_HALPE_26 = {
    0: "nose", 1: "left_eye", 2: "right_eye", 3: "left_ear", 4: "right_ear", 5: "left_shoulder",
    6: "right_shoulder", 7: "left_elbow", 8: "right_elbow", 9: "left_wrist", 10: "right_wrist", 11: "left_hip",
    12: "right_hip", 13: "left_knee", 14: "right_knee", 15: "left_ankle", 16: "right_ankle", 17: "head",
    18: "neck", 19: "hip", 20: "left_big_toe", 21: "right_big_toe", 22: "left_small_toe", 23: "right_small_toe",
    24: "left_heel", 25: "right_heel",
}  # fmt: skip
MMPOSE_COCO_17 = {i: name for i, name in MMPOSE_HALPE_26.items() if i < 17}
# MMPose configs/_base_/datasets/coco_wholebody.py: COCO's 17, then the feet (ids 17-22); ids 23-132
# are 68 face and 2 x 21 hand points.
MMPOSE_COCO_WHOLEBODY_23 = {
    **MMPOSE_COCO_17, 17: "left_big_toe", 18: "left_small_toe", 19: "left_heel", 20: "right_big_toe",
    21: "right_small_toe", 22: "right_heel",
}  # fmt: skip
COCO_WHOLEBODY_COUNT = 133
# MediaPipe Pose: google-ai-edge/mediapipe mediapipe/python/solutions/pose.py, class PoseLandmark.
MEDIAPIPE_POSE_33 = {
    0: "NOSE", 1: "LEFT_EYE_INNER", 2: "LEFT_EYE", 3: "LEFT_EYE_OUTER", 4: "RIGHT_EYE_INNER", 5: "RIGHT_EYE",
    6: "RIGHT_EYE_OUTER", 7: "LEFT_EAR", 8: "RIGHT_EAR", 9: "MOUTH_LEFT", 10: "MOUTH_RIGHT", 11: "LEFT_SHOULDER",
    12: "RIGHT_SHOULDER", 13: "LEFT_ELBOW", 14: "RIGHT_ELBOW", 15: "LEFT_WRIST", 16: "RIGHT_WRIST",
    17: "LEFT_PINKY", 18: "RIGHT_PINKY", 19: "LEFT_INDEX", 20: "RIGHT_INDEX", 21: "LEFT_THUMB", 22: "RIGHT_THUMB",
    23: "LEFT_HIP", 24: "RIGHT_HIP", 25: "LEFT_KNEE", 26: "RIGHT_KNEE", 27: "LEFT_ANKLE", 28: "RIGHT_ANKLE",
    29: "LEFT_HEEL", 30: "RIGHT_HEEL", 31: "LEFT_FOOT_INDEX", 32: "RIGHT_FOOT_INDEX",
}  # fmt: skip
