"""2D detection files in each detector's real layout, read back onto ws3d's 17 joints.

Files are written by keypoint NAME with the orders as OpenPose, MMPose and MediaPipe
publish them (tests/public_formats.py), never with ws3d.data.detections' own tables: a
known 17-joint pose goes in under each detector's names, and every ws3d joint must come
back where that pose put it.
"""

import json

import numpy as np
import pytest

from tests.public_formats import (
    COCO_WHOLEBODY_COUNT,
    MEDIAPIPE_POSE_33,
    MMPOSE_COCO_17,
    MMPOSE_COCO_WHOLEBODY_23,
    MMPOSE_HALPE_26,
    OPENPOSE_BODY_25,
    OPENPOSE_COCO_18,
)
from ws3d.data.detections import as_arrays, read_detections
from ws3d.data.tracklets import build_tracklets, load_detections
from ws3d.errors import InputError, MissingFileError
from ws3d.skeleton import JOINTS

J = {name: j for j, name in enumerate(JOINTS)}

# Which ws3d joint each detector keypoint IS, by the detectors' own names (H3.6M's 8 is the
# thorax: OpenPose's and Halpe's "Neck"; Halpe's "head" is the head top; BODY_25's MidHip
# and Halpe's "hip" are the pelvis).
OPENPOSE_IS = {
    "Nose": "nose", "Neck": "neck", "MidHip": "pelvis", "RShoulder": "r_shoulder", "RElbow": "r_elbow",
    "RWrist": "r_wrist", "LShoulder": "l_shoulder", "LElbow": "l_elbow", "LWrist": "l_wrist", "RHip": "r_hip",
    "RKnee": "r_knee", "RAnkle": "r_ankle", "LHip": "l_hip", "LKnee": "l_knee", "LAnkle": "l_ankle",
}  # fmt: skip
MMPOSE_IS = {
    "nose": "nose", "left_shoulder": "l_shoulder", "right_shoulder": "r_shoulder", "left_elbow": "l_elbow",
    "right_elbow": "r_elbow", "left_wrist": "l_wrist", "right_wrist": "r_wrist", "left_hip": "l_hip",
    "right_hip": "r_hip", "left_knee": "l_knee", "right_knee": "r_knee", "left_ankle": "l_ankle",
    "right_ankle": "r_ankle", "head": "head", "neck": "neck", "hip": "pelvis",
}  # fmt: skip
MEDIAPIPE_IS = {
    "NOSE": "nose", "LEFT_SHOULDER": "l_shoulder", "RIGHT_SHOULDER": "r_shoulder", "LEFT_ELBOW": "l_elbow",
    "RIGHT_ELBOW": "r_elbow", "LEFT_WRIST": "l_wrist", "RIGHT_WRIST": "r_wrist", "LEFT_HIP": "l_hip",
    "RIGHT_HIP": "r_hip", "LEFT_KNEE": "l_knee", "RIGHT_KNEE": "r_knee", "LEFT_ANKLE": "l_ankle",
    "RIGHT_ANKLE": "r_ankle",
}  # fmt: skip

# order -> (index: name, what its names are, keypoint count)
ORDERS = {
    "BODY_25": (OPENPOSE_BODY_25, OPENPOSE_IS, 25),
    "COCO_18": (OPENPOSE_COCO_18, OPENPOSE_IS, 18),
    "COCO_17": (MMPOSE_COCO_17, MMPOSE_IS, 17),
    "HALPE_26": (MMPOSE_HALPE_26, MMPOSE_IS, 26),
    "COCO_133": (MMPOSE_COCO_WHOLEBODY_23, MMPOSE_IS, COCO_WHOLEBODY_COUNT),  # face and hands: other points
    "MEDIAPIPE_33": (MEDIAPIPE_POSE_33, MEDIAPIPE_IS, 33),
}


def _known_pose(seed=0):
    """A 17-joint [u, v, confidence] pose whose pelvis is NOT the hips' midpoint and whose neck
    is NOT the shoulders' midpoint, so a reader that derives where the detector has the joint
    (or the other way round) fails."""
    rng = np.random.default_rng(seed)
    pose = np.concatenate([rng.uniform(100, 900, (17, 2)), rng.uniform(0.55, 0.95, (17, 1))], 1)
    return pose


def _in_order(pose, order, seed=1):
    """(K, 3) keypoints in a detector's order, each named keypoint taken from the ws3d pose;
    keypoints that are no ws3d joint (eyes, toes, hands) are elsewhere, with some confidence."""
    names, means, count = ORDERS[order]
    rng = np.random.default_rng(seed)
    out = np.concatenate([rng.uniform(-500, -100, (count, 2)), rng.uniform(0.3, 0.9, (count, 1))], 1)
    for index, name in names.items():
        if name in means:
            out[index] = pose[J[means[name]]]
    return out


def _expected(pose, order):
    """What ws3d must read back: the joints the detector has, the hips' / shoulders' midpoint
    (lower confidence) where it lacks the pelvis / neck, confidence 0 for the rest."""
    _, means, _ = ORDERS[order]
    has = {means[n] for n in ORDERS[order][0].values() if n in means}
    out = np.zeros((17, 3))
    for joint in JOINTS:
        if joint in has:
            out[J[joint]] = pose[J[joint]]
    for joint, (a, b) in {"pelvis": ("r_hip", "l_hip"), "neck": ("r_shoulder", "l_shoulder")}.items():
        if joint not in has:
            out[J[joint], :2] = (pose[J[a], :2] + pose[J[b], :2]) / 2
            out[J[joint], 2] = min(pose[J[a], 2], pose[J[b], 2])
    return out


def _write_openpose(path, people):
    """One OpenPose --write_json file: people = [(K, 3) keypoints]."""
    path.write_text(json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": p.reshape(-1).tolist(), "face_keypoints_2d": [],
         "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": []} for p in people]}))  # fmt: skip
    return path


def _assert_one_line_naming(error, name):
    message = str(error.value)
    assert name in message and "\n" not in message, message


@pytest.mark.parametrize("order", ["BODY_25", "COCO_18", "COCO_17", "HALPE_26", "COCO_133"])
def test_openpose_json_lands_on_ws3d_joints(tmp_path, order):
    a, b = _known_pose(0), _known_pose(1)
    _write_openpose(tmp_path / "clip_000000000012_keypoints.json", [_in_order(a, order), _in_order(b, order, 2)])
    _write_openpose(tmp_path / "clip_000000000013_keypoints.json", [])
    _write_openpose(tmp_path / "clip_000000000014_keypoints.json", [_in_order(b, order, 3)])
    (tmp_path / "notes.txt").write_text("not a detection")
    frames = read_detections(tmp_path)
    assert [f for f, _, _ in frames] == [12, 13, 14]
    assert [p.shape for _, p, _ in frames] == [(2, 17, 3), (0, 17, 3), (1, 17, 3)]
    assert all(image == "" for _, _, image in frames)
    np.testing.assert_allclose(frames[0][1][0], _expected(a, order))
    np.testing.assert_allclose(frames[0][1][1], _expected(b, order))
    np.testing.assert_allclose(frames[2][1][0], _expected(b, order))


def test_expected_table_spells_out_the_mapping():
    # The derived joints in words, so that _expected is not the only statement of them.
    pose = _known_pose()
    body25, coco17, halpe = (_expected(pose, o) for o in ("BODY_25", "COCO_17", "HALPE_26"))
    assert np.allclose(body25[J["pelvis"]], pose[J["pelvis"]]) and np.allclose(body25[J["neck"]], pose[J["neck"]])
    assert np.allclose(coco17[J["pelvis"], :2], (pose[J["r_hip"], :2] + pose[J["l_hip"], :2]) / 2)
    assert not np.allclose(coco17[J["pelvis"], :2], pose[J["pelvis"], :2])
    assert body25[J["head"], 2] == 0 and coco17[J["head"], 2] == 0 and halpe[J["head"], 2] == pose[J["head"], 2]
    assert body25[J["spine"], 2] == coco17[J["spine"], 2] == halpe[J["spine"], 2] == 0


@pytest.mark.parametrize("order", ["BODY_25", "HALPE_26"])
def test_declared_order_is_accepted(tmp_path, order):
    file = _write_openpose(tmp_path / "v_000003.json", [_in_order(_known_pose(), order)])
    ((frame, poses, _),) = read_detections(file, order=order.lower().replace("_", ""))
    assert frame == 3
    np.testing.assert_allclose(poses[0], _expected(_known_pose(), order))


@pytest.mark.parametrize("name, frame", [
    ("clip_000000000012_keypoints.json", 12),  # OpenPose
    ("cam01_000000000012_keypoints.json", 12),  # a digit in the video's name
    ("clip_000012.json", 12),  # Pose2Sim
    ("000007.json", 7),
    ("keypoints.json", 0),  # a lone file without a number
])  # fmt: skip
def test_frame_number_from_file_name(tmp_path, name, frame):
    file = _write_openpose(tmp_path / name, [_in_order(_known_pose(), "BODY_25")])
    assert [f for f, _, _ in read_detections(file)] == [frame]


def test_folder_frames_sort_by_number_not_by_name(tmp_path):
    for k in (10, 9, 100):
        _write_openpose(tmp_path / f"v_{k}.json", [_in_order(_known_pose(k), "COCO_17")])
    frames = read_detections(tmp_path)
    assert [f for f, _, _ in frames] == [9, 10, 100]
    np.testing.assert_allclose(frames[0][1][0], _expected(_known_pose(9), "COCO_17"))


def test_midpoint_takes_the_lower_confidence_and_masks_a_missing_end(tmp_path):
    pose = _known_pose()
    keypoints = _in_order(pose, "COCO_17")
    index = {name: i for i, name in MMPOSE_COCO_17.items()}
    keypoints[index["right_shoulder"], 2], keypoints[index["left_shoulder"], 2] = 0.3, 0.9
    keypoints[index["left_hip"]] = 0  # undetected, as OpenPose-style writers leave it
    keypoints[index["right_wrist"]] = 0
    ((_, poses, _),) = read_detections(_write_openpose(tmp_path / "a_0.json", [keypoints]))
    person = poses[0]
    assert person[J["neck"], 2] == pytest.approx(0.3)
    np.testing.assert_allclose(person[J["neck"], :2], (pose[J["r_shoulder"], :2] + pose[J["l_shoulder"], :2]) / 2)
    np.testing.assert_array_equal(person[J["pelvis"]], 0)
    np.testing.assert_array_equal(person[J["l_hip"]], 0)
    np.testing.assert_array_equal(person[J["r_wrist"]], 0)
    np.testing.assert_allclose(person[J["r_hip"]], pose[J["r_hip"]])


def _coco_result(image_id, keypoints, score=0.9):
    x, y, w, h = *keypoints[:, :2].min(0), *np.ptp(keypoints[:, :2], 0)
    return {"image_id": image_id, "category_id": 1, "keypoints": keypoints.reshape(-1).tolist(), "score": score,
            "bbox": [float(x), float(y), float(w), float(h)]}  # fmt: skip


@pytest.mark.parametrize("order", ["COCO_17", "HALPE_26", "COCO_133"])
def test_coco_results_with_image_ids_as_frames(tmp_path, order):
    a, b = _known_pose(0), _known_pose(1)
    results = [_coco_result(4, _in_order(a, order)), _coco_result(2, _in_order(b, order)),
               _coco_result(4, _in_order(b, order, 5))]  # fmt: skip
    file = tmp_path / "keypoints_results.json"
    file.write_text(json.dumps(results))
    frames = read_detections(file)
    assert [(f, len(p), image) for f, p, image in frames] == [(2, 1, ""), (4, 2, "")]
    np.testing.assert_allclose(frames[0][1][0], _expected(b, order))
    np.testing.assert_allclose(frames[1][1][0], _expected(a, order))  # file order within a frame
    np.testing.assert_allclose(frames[1][1][1], _expected(b, order))


def test_coco_results_frames_from_annotation_file_names(tmp_path):
    a, b = _known_pose(0), _known_pose(1)
    annotations = tmp_path / "person_keypoints_val.json"
    annotations.write_text(json.dumps({"images": [
        {"id": 501, "file_name": "frames/000005.jpg", "width": 640, "height": 480},
        {"id": 502, "file_name": "frames/000007.jpg", "width": 640, "height": 480},
        {"id": 777, "file_name": "frames/000009.jpg", "width": 640, "height": 480}],
        "annotations": [], "categories": [{"id": 1, "name": "person"}]}))  # fmt: skip
    results = tmp_path / "results.json"
    results.write_text(json.dumps([_coco_result(502, _in_order(a, "COCO_17")),
                                   _coco_result(501, _in_order(b, "COCO_17"))]))  # fmt: skip
    frames = read_detections(results, annotations=annotations)
    assert [(f, len(p), image) for f, p, image in frames] == [
        (5, 1, "frames/000005.jpg"), (7, 1, "frames/000007.jpg"), (9, 0, "frames/000009.jpg")]  # fmt: skip
    np.testing.assert_allclose(frames[1][1][0], _expected(a, "COCO_17"))
    results.write_text(json.dumps([_coco_result(9, _in_order(a, "COCO_17"))]))
    with pytest.raises(InputError) as error:
        read_detections(results, annotations=annotations)
    _assert_one_line_naming(error, str(results))


def test_alphapose_file_name_image_ids(tmp_path):
    file = tmp_path / "alphapose-results.json"
    file.write_text(json.dumps([_coco_result("000003.jpg", _in_order(_known_pose(), "HALPE_26"))]))
    ((frame, poses, image),) = read_detections(file)
    assert (frame, image) == (3, "000003.jpg")
    np.testing.assert_allclose(poses[0], _expected(_known_pose(), "HALPE_26"))


def _mediapipe_landmarks(pose, width, height, seed=1):
    """(33, 4) MediaPipe landmarks x, y (normalised), z, visibility of a pixel pose."""
    keypoints = _in_order(pose, "MEDIAPIPE_33", seed)
    z = np.random.default_rng(seed).uniform(-0.5, 0.5, 33)
    return np.stack([keypoints[:, 0] / width, keypoints[:, 1] / height, z, keypoints[:, 2]], 1)


def test_mediapipe_landmarks_to_pixels(tmp_path):
    width, height = 1280, 720
    a, b = _known_pose(0), _known_pose(1)
    landmarks = np.stack([_mediapipe_landmarks(a, width, height), np.full((33, 4), np.nan),
                          _mediapipe_landmarks(b, width, height)])  # fmt: skip
    np.save(tmp_path / "pose_2d.npy", landmarks)
    frames = read_detections(tmp_path / "pose_2d.npy", width=width, height=height)
    assert [(f, len(p)) for f, p, _ in frames] == [(0, 1), (1, 0), (2, 1)]
    np.testing.assert_allclose(frames[0][1][0], _expected(a, "MEDIAPIPE_33"))
    np.testing.assert_allclose(frames[2][1][0], _expected(b, "MEDIAPIPE_33"))
    # x, y, visibility without z; and several people per frame.
    np.save(tmp_path / "xyv.npy", landmarks[..., [0, 1, 3]])
    np.testing.assert_allclose(read_detections(tmp_path / "xyv.npy", width=width, height=height)[2][1][0],
                               _expected(b, "MEDIAPIPE_33"))  # fmt: skip
    np.save(tmp_path / "people.npy", np.stack([landmarks[[0, 2]], landmarks[[2, 1]]]))
    frames = read_detections(tmp_path / "people.npy", width=width, height=height)
    assert [len(p) for _, p, _ in frames] == [2, 1]
    np.testing.assert_allclose(frames[0][1][1], _expected(b, "MEDIAPIPE_33"))
    with pytest.raises(InputError) as error:
        read_detections(tmp_path / "pose_2d.npy")  # no image size
    _assert_one_line_naming(error, "pose_2d.npy")


def test_detections_feed_tracklets_and_the_ws3d_npz_form(tmp_path):
    pose = _known_pose()
    for f in range(6):
        moved = pose + [2.0 * f, 0, 0]
        _write_openpose(tmp_path / f"v_{f:012d}_keypoints.json", [_in_order(moved, "BODY_25")])
    frames = read_detections(tmp_path)
    (tracklet,) = build_tracklets(frames, min_length=5)
    assert tracklet.frames == list(range(6))
    np.savez(tmp_path / "detections.npz", **as_arrays(frames))
    for again in (load_detections(tmp_path / "detections.npz"), read_detections(tmp_path / "detections.npz")):
        assert [f for f, _, _ in again] == [f for f, _, _ in frames]
        for (_, p, _), (_, q, _) in zip(again, frames, strict=True):
            np.testing.assert_allclose(p, q)


def _bad_openpose(tmp_path, values):
    file = tmp_path / "bad_000001_keypoints.json"
    file.write_text(json.dumps({"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": values}]}))
    return file


@pytest.mark.parametrize("values, order, words", [
    (_in_order(_known_pose(), "COCO_18").reshape(-1).tolist(), "BODY_25", "18 keypoints, but BODY_25"),
    ([1.0, 2.0, 0.5] * 20, None, "20 keypoints, which matches no known order"),
    ([1.0, 2.0, 0.5] * 25 + [1.0], None, "76 values"),
    ([1.0, 2.0, 0.5] * 24 + [1.0, "2.0", 0.5], None, "non-numeric"),
    ([1.0, 2.0, 0.5] * 24 + [1.0, None, 0.5], None, "non-numeric"),
    (None, None, "missing or not a list"),
])  # fmt: skip
def test_bad_openpose_keypoints(tmp_path, values, order, words):
    file = _bad_openpose(tmp_path, values)
    with pytest.raises(InputError) as error:
        read_detections(file, order=order)
    _assert_one_line_naming(error, str(file))
    assert words in str(error.value)


def test_nan_in_json_is_refused(tmp_path):
    file = tmp_path / "v_000001.json"
    file.write_text('{"people": [{"pose_keypoints_2d": [' + ", ".join(["1.0, NaN, 0.5"] * 25) + "]}]}")
    with pytest.raises(InputError, match="NaN") as error:
        read_detections(file)
    _assert_one_line_naming(error, str(file))


def test_order_must_agree_across_a_folder(tmp_path):
    _write_openpose(tmp_path / "v_1.json", [_in_order(_known_pose(), "BODY_25")])
    second = _write_openpose(tmp_path / "v_2.json", [_in_order(_known_pose(), "COCO_18")])
    with pytest.raises(InputError, match="BODY_25") as error:
        read_detections(tmp_path)
    _assert_one_line_naming(error, str(second))


@pytest.mark.parametrize(
    "names, bad", [(["v_1.json", "w_01.json"], "w_01.json"), (["v_1.json", "last.json"], "last.json")]
)
def test_folder_needs_one_file_per_numbered_frame(tmp_path, names, bad):
    for name in names:
        _write_openpose(tmp_path / name, [])
    with pytest.raises(InputError) as error:
        read_detections(tmp_path)
    _assert_one_line_naming(error, bad)


@pytest.mark.parametrize("content, suffix", [
    ('{"detections": []}', ".json"),  # a JSON of no known layout
    ('{"people": [{"pose_keypoints_2d": [1, 2', ".json"),  # truncated
    ("x,y,c\n1,2,0.5\n", ".csv"),
    ('[{"image_id": 1, "score": 0.9}]', ".json"),  # COCO result without keypoints: not sniffed
])  # fmt: skip
def test_unknown_or_broken_files(tmp_path, content, suffix):
    file = tmp_path / f"dets{suffix}"
    file.write_text(content)
    with pytest.raises(InputError) as error:
        read_detections(file)
    _assert_one_line_naming(error, str(file))


def test_bad_coco_results_and_format_override(tmp_path):
    file = tmp_path / "results.json"
    file.write_text(json.dumps([{"image_id": 1, "score": 0.9}]))
    with pytest.raises(InputError, match="keypoints") as error:
        read_detections(file, format="coco")
    _assert_one_line_naming(error, str(file))
    openpose = _write_openpose(tmp_path / "v_000001.json", [_in_order(_known_pose(), "BODY_25")])
    with pytest.raises(InputError) as error:
        read_detections(openpose, format="coco")  # an OpenPose file is not a results list
    _assert_one_line_naming(error, str(openpose))
    assert read_detections(openpose, format="openpose")[0][0] == 1
    with pytest.raises(InputError, match="unknown detections format"):
        read_detections(openpose, format="yolo")
    file.write_text(json.dumps([_coco_result(1, _in_order(_known_pose(), "BODY_25"))]))  # 25: not a COCO order
    with pytest.raises(InputError, match="25 keypoints") as error:
        read_detections(file)
    _assert_one_line_naming(error, str(file))


@pytest.mark.parametrize("array, words", [
    (np.zeros((4, 17, 3)), "shape"),
    (np.full((2, 33, 4), 0.5).astype(str), "non-numeric"),
    (np.where(np.arange(33)[None, :, None] == 5, np.nan, np.full((2, 33, 4), 0.5)), "NaN"),
    (np.concatenate([np.full((2, 33, 2), 0.5), np.full((2, 33, 1), -0.3)], 2), "visibility"),  # x, y, z
])  # fmt: skip
def test_bad_mediapipe_arrays(tmp_path, array, words):
    file = tmp_path / "landmarks.npy"
    np.save(file, array)
    with pytest.raises(InputError, match=words) as error:
        read_detections(file, width=640, height=480)
    _assert_one_line_naming(error, str(file))


def test_missing_paths(tmp_path):
    with pytest.raises(MissingFileError) as error:
        read_detections(tmp_path / "nowhere_json")
    _assert_one_line_naming(error, "nowhere_json")
    results = tmp_path / "results.json"
    results.write_text("[]")
    with pytest.raises(MissingFileError) as error:
        read_detections(results, annotations=tmp_path / "no_annotations.json")
    _assert_one_line_naming(error, "no_annotations.json")
    assert read_detections(results) == []
