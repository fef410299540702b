"""Real-data loaders, each on small files written here in the data set's own format.

The 3D poses and cameras come from the synthetic generator, so every loader can be
checked against the truth: joints land in the right slots, K projects joints_cam onto
uv, and R, t map one world pose into every view.
"""

import json
import pickle

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
from public_formats import H36M_17_IN_MPI_28, H36M_17_IN_MPII, MPI_TEST_17, MPII_16, multiview_order

from ws3d.camera import project, world_to_camera
from ws3d.cli import main
from ws3d.data.h36m import MULTIVIEW_TO_WS3D, load_mmpose, load_multiview_labels
from ws3d.data.mpi3dhp import TEST_TO_WS3D, TRAIN_TO_WS3D, load_test_sequence, load_train_sequence, read_calibration
from ws3d.data.mpii import MPII_JOINTS, MPII_TO_WS3D, load_mpii
from ws3d.data.poses import make_subject, sample_person
from ws3d.data.records import RecordDataset, joint_map
from ws3d.data.rigs import sample_rig
from ws3d.data.transforms import PoseTransform
from ws3d.errors import InputError
from ws3d.skeleton import JOINTS

FRAMES, CAMERAS = 3, 4



@pytest.fixture(scope="module")
def scene():
    """FRAMES people (17, 3) world mm and CAMERAS H36M-like cameras (K, R, t)."""
    rng = np.random.default_rng(0)
    world = np.stack([sample_person(make_subject(i), rng)[0] for i in range(FRAMES)])
    K, R, t = sample_rig("h36m", CAMERAS, world[0], rng)
    cams = world_to_camera(world[:, None], R[None], t[None])  # (F, C, 17, 3)
    return world, K, R, t, cams


def _check_geometry(records, tol=0.01):
    uv = project(records["joints_cam"].astype(np.float64), records["K"].astype(np.float64))
    assert np.abs(uv - records["uv"]).max() < tol


def _write_mmpose(root, scene, part_shape=(17, 3)):
    world, K, R, t, cams = scene
    ids = ["54138969", "55011271", "58860488", "60457274"]
    cameras = {}
    for c, cam_id in enumerate(ids):  # MMPose: x_cam = R^T (X - T), T in metres
        cameras[("S9", cam_id)] = {
            "R": R[c].T, "T": (-R[c].T @ t[c] / 1000.0)[:, None], "f": K[c, [0, 1], [0, 1]][:, None],
            "c": K[c, :2, 2][:, None], "k": np.zeros((3, 1)), "p": np.zeros((2, 1)),
            "w": 1000, "h": 1000, "name": f"camera{c + 1}", "id": cam_id,
        }  # fmt: skip
    (root / "fps10").mkdir(parents=True)
    with open(root / "cameras.pkl", "wb") as f:
        pickle.dump(cameras, f)
    names, parts, S = [], [], []
    for f in range(FRAMES):
        for c, cam_id in enumerate(ids):
            names.append(f"S9/S9_Walking_1.{cam_id}/S9_Walking_1.{cam_id}_{5 * f + 1:06d}.jpg")
            parts.append(np.concatenate([project(cams[f, c], K[c]), np.ones((17, 1))], 1))
            S.append(np.concatenate([cams[f, c] / 1000.0, np.ones((17, 1))], 1))
    parts = np.array(parts)[..., : part_shape[-1]].reshape(-1, *part_shape)
    n = len(names)
    np.savez(root / "fps10" / "h36m_test.npz", imgname=np.array(names), center=np.full((n, 2), 500.0),
             scale=np.full(n, 3.0), part=parts, S=np.array(S))  # fmt: skip
    return root / "fps10" / "h36m_test.npz"


def test_h36m_mmpose(tmp_path, scene):
    records = load_mmpose(_write_mmpose(tmp_path, scene))
    world, K, R, t, cams = scene
    assert len(records["image"]) == FRAMES * CAMERAS and records["side"][0] == 600.0
    _check_geometry(records)
    np.testing.assert_allclose(records["joints_cam"].reshape(FRAMES, CAMERAS, 17, 3), cams, atol=0.01)
    assert records["group"].tolist() == np.repeat(np.arange(FRAMES), CAMERAS).tolist()
    back = world_to_camera(world[records["group"]], records["R"].astype(np.float64), records["t"].astype(np.float64))
    np.testing.assert_allclose(back, records["joints_cam"], atol=0.05)  # the extrinsics are world-to-camera
    # One subject: one rig, whose cameras are the ids in the image names, in sorted order.
    assert (records["rig"] == 0).all()
    ids = [name.split(".")[1].split("_")[0] for name in records["image"]]
    assert records["camera"].tolist() == [sorted(set(ids)).index(i) for i in ids]


def test_h36m_mmpose_errors(tmp_path, scene):
    npz = _write_mmpose(tmp_path / "a", scene, part_shape=(17, 2))
    with pytest.raises(ValueError, match=r"h36m_test.npz: field 'part' has shape \(12, 17, 2\), expected \(N, 17, 3\)"):
        load_mmpose(npz)
    npz = _write_mmpose(tmp_path / "b", scene)
    with open(tmp_path / "b" / "cameras.pkl", "wb") as f:
        pickle.dump({}, f)
    with pytest.raises(ValueError, match=r"cameras.pkl: no camera \('S9', '54138969'\)"):
        load_mmpose(npz)
    (tmp_path / "b" / "cameras.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="cameras.pkl"):
        load_mmpose(npz)


def _write_multiview_labels(path, scene, bbox_cameras=CAMERAS):
    world, K, R, t, _ = scene
    cameras = np.empty((1, CAMERAS), dtype=[("R", np.float32, (3, 3)), ("t", np.float32, (3, 1)),
                                            ("K", np.float32, (3, 3)), ("dist", np.float32, 5)])  # fmt: skip
    for c in range(CAMERAS):
        cameras[0, c] = (R[c], t[c][:, None], K[c], np.zeros(5))
    table = np.empty(FRAMES, dtype=[("subject_idx", np.int8), ("action_idx", np.int8), ("frame_idx", np.int16),
                                    ("keypoints", np.float32, (17, 3)),
                                    ("bbox_by_camera_tlbr", np.int16, (bbox_cameras, 4))])  # fmt: skip
    for f in range(FRAMES):
        boxes = np.tile([100, 200, 700, 800], (bbox_cameras, 1))
        if f == 1:
            boxes[2] = 0  # a missing view
        table[f] = (0, 0, 10 * f, multiview_order(world[f]), boxes)
    labels = {"subject_names": ["S9"], "camera_names": ["54138969", "55011271", "58860488", "60457274"],
              "action_names": ["Walking-1"], "cameras": cameras, "table": table}  # fmt: skip
    np.save(path, labels)
    return path


def test_h36m_multiview_labels(tmp_path, scene):
    records = load_multiview_labels(_write_multiview_labels(tmp_path / "labels.npy", scene))
    world, *_, cams = scene
    assert len(records["image"]) == FRAMES * CAMERAS - 1  # the empty box drops one view
    # learnable-triangulation reads <subject>/<action>/'imageSequence' + '-undistorted' *
    # undistort_images/<camera>/img_%06d.jpg (frame_idx + 1): its uv match the undistorted frames.
    assert records["image"][0] == "S9/Walking-1/imageSequence-undistorted/54138969/img_000001.jpg"
    distorted = load_multiview_labels(tmp_path / "labels.npy", image_folder="imageSequence")
    assert distorted["image"][0] == "S9/Walking-1/imageSequence/54138969/img_000001.jpg"
    _check_geometry(records)
    np.testing.assert_allclose(records["joints_cam"][0], cams[0, 0], atol=0.05)  # joints in ws3d slots
    np.testing.assert_allclose(records["centre"][0], [500.0, 400.0])
    # The tight box (here 600 x 600 px), squared and enlarged by ws3d's default margin, 1.5.
    np.testing.assert_allclose(records["side"][0], 900.0)
    assert records["group"].tolist() == [0] * 4 + [1] * 3 + [2] * 4
    assert (records["rig"] == 0).all()  # one subject, one calibration
    assert records["camera"].tolist() == [0, 1, 2, 3, 0, 1, 3, 0, 1, 2, 3]  # the camera without a box is left out


def test_h36m_multiview_box_margin(tmp_path, scene):
    """The square around the labelled box is enlarged by the margin, from the loader and from
    `ws3d data records h36m-multiview --box-margin` (learnable-triangulation's configs: 1.0)."""
    labels = _write_multiview_labels(tmp_path / "labels.npy", scene)
    default = load_multiview_labels(labels)
    for margin in (1.0, 1.25, 2.0):
        records = load_multiview_labels(labels, box_margin=margin)
        np.testing.assert_allclose(records["side"], default["side"] * margin / 1.5, rtol=1e-6)
        np.testing.assert_array_equal(records["centre"], default["centre"])
    for image in default["image"]:  # the record file checks that its images exist
        (tmp_path / image).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / image).write_bytes(b"")
    for flag, side in (([], 900.0), (["--box-margin", "1.0"], 600.0)):
        out = tmp_path / f"records{len(flag)}.npz"
        assert main(["data", "records", "h36m-multiview", str(labels), "--images", str(tmp_path), "--out", str(out),
                     *flag]) == 0  # fmt: skip
        with np.load(out) as written:
            np.testing.assert_allclose(written["side"], side)
    for margin in (0.0, -1.5, float("nan")):
        with pytest.raises(InputError, match=f"box_margin must be a positive factor .*, got {margin}"):
            load_multiview_labels(labels, box_margin=margin)
    assert main(["data", "records", "h36m-multiview", str(labels), "--images", str(tmp_path), "--out",
                 str(tmp_path / "x.npz"), "--box-margin", "0"]) == 2  # fmt: skip
    assert not (tmp_path / "x.npz").exists()


def test_h36m_multiview_labels_inconsistent_camera_count(tmp_path, scene):
    path = _write_multiview_labels(tmp_path / "labels.npy", scene, bbox_cameras=3)
    with pytest.raises(ValueError, match="bbox_by_camera_tlbr' has 3 cameras but 'camera_names' lists 4"):
        load_multiview_labels(path)


def _write_3dhp_train(root, scene, calibration_cameras=CAMERAS):
    world, K, R, t, cams = scene
    folder = root / "S2" / "Seq1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    annot2, annot3 = np.empty((CAMERAS, 1), object), np.empty((CAMERAS, 1), object)
    for c in range(CAMERAS):
        j28 = rng.normal(0, 100, (FRAMES, 28, 3)) + [0, 0, 4000]
        j28[:, H36M_17_IN_MPI_28] = cams[:, c]
        annot3[c, 0] = j28.reshape(FRAMES, 84)
        annot2[c, 0] = project(j28, K[c]).reshape(FRAMES, 56)
    scipy.io.savemat(folder / "annot.mat", {"annot2": annot2, "annot3": annot3, "frames": np.arange(FRAMES)[:, None]})
    lines = ["Skeletool Camera Calibration File V1.0"]
    for c in range(calibration_cameras):
        intrinsic, extrinsic = np.eye(4), np.eye(4)
        intrinsic[:3, :3] = K[c]
        extrinsic[:3, :3], extrinsic[:3, 3] = R[c], t[c]
        lines += [f"name          {c}", "  sensor      10 10", "  size        2048 2048", "  animated    0",
                  "  intrinsic   " + " ".join(f"{v:.10g}" for v in intrinsic.ravel()),
                  "  extrinsic   " + " ".join(f"{v:.10g}" for v in extrinsic.ravel()), "  radial      0",
                  "", "   "]  # blank and whitespace-only lines between blocks  # fmt: skip
    (folder / "camera.calibration").write_text("\n".join(lines) + "\n")
    # Frames as extracted from imageSequence/video_{c}.avi: camera 2's were not downloaded (the
    # official script fetches a subset of the cameras), and camera 3 lacks the last frame.
    for c in (0, 1, 3):
        (folder / "imageFrames" / f"video_{c}").mkdir(parents=True)
        for f in range(FRAMES - (c == 3)):
            (folder / "imageFrames" / f"video_{c}" / f"frame_{f + 1:06d}.jpg").write_bytes(b"")


def test_3dhp_train(tmp_path, scene):
    _write_3dhp_train(tmp_path, scene)
    K, _ = read_calibration(tmp_path / "S2" / "Seq1" / "camera.calibration")
    np.testing.assert_allclose(K, scene[1], rtol=1e-9)
    with pytest.warns(UserWarning, match="dropped 1 of 6 annotated frames"):  # camera 3's frame 3
        records = load_train_sequence(tmp_path, 2, 1, every=2)  # the cameras with frames: 0, 1, 3
    world, *_, cams = scene
    assert len(records["image"]) == 2 + 2 + 1  # frames 1 and 3 of cameras 0 and 1, frame 1 of camera 3
    assert records["image"][1] == "S2/Seq1/imageFrames/video_0/frame_000003.jpg"
    assert records["image"][-1] == "S2/Seq1/imageFrames/video_3/frame_000001.jpg"
    _check_geometry(records)
    np.testing.assert_allclose(records["joints_cam"][1], cams[2, 0], atol=0.01)
    back = world_to_camera(
        world[2 * records["group"]], records["R"].astype(np.float64), records["t"].astype(np.float64)
    )
    np.testing.assert_allclose(back, records["joints_cam"], atol=0.05)
    assert (records["rig"] == 0).all() and records["camera"].tolist() == [0, 0, 1, 1, 3]  # the data set's indices
    chosen = load_train_sequence(tmp_path, 2, 1, cameras=[1], every=2)
    assert chosen["image"].tolist() == [f"S2/Seq1/imageFrames/video_1/frame_00000{f}.jpg" for f in (1, 3)]
    with pytest.raises(FileNotFoundError, match=r"S2/Seq1/imageFrames/video_2: camera 2's frame folder is missing"):
        load_train_sequence(tmp_path, 2, 1, cameras=[0, 2])


def test_3dhp_train_cli_takes_the_cameras(tmp_path, scene):
    _write_3dhp_train(tmp_path, scene)
    out = tmp_path / "r.npz"
    assert main(["data", "records", "3dhp-train", str(tmp_path), "--sequences", "2/1", "--cameras", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    with np.load(out) as records:
        assert records["image"].tolist() == ["S2/Seq1/imageFrames/video_1/frame_000001.jpg"]


def test_3dhp_train_without_frames_names_the_folder(tmp_path, scene):
    _write_3dhp_train(tmp_path, scene)
    for folder in (tmp_path / "S2" / "Seq1" / "imageFrames").iterdir():
        for frame in folder.iterdir():
            frame.unlink()
    with pytest.raises(FileNotFoundError, match="imageFrames: none of the annotated frames has an image"):
        load_train_sequence(tmp_path, 2, 1)


def test_3dhp_train_inconsistent_camera_count(tmp_path, scene):
    _write_3dhp_train(tmp_path, scene, calibration_cameras=3)
    with pytest.raises(ValueError, match=r"annot.mat: inconsistent camera counts: .*camera.calibration 3"):
        load_train_sequence(tmp_path, 2, 1)
    with pytest.raises(FileNotFoundError, match="S5/Seq1/annot.mat"):
        load_train_sequence(tmp_path, 5, 1)


def _write_matlab_v73(path, arrays):
    """An HDF5 file with MATLAB's 512-byte v7.3 header, as MATLAB's save -v7.3 writes it."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, value in arrays.items():
            f[key] = value
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM")


def _write_hdf5(path, arrays):
    """The same arrays re-saved with plain h5py: HDF5 from the first byte, no MATLAB header."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value


@pytest.mark.parametrize("write", [_write_matlab_v73, _write_hdf5], ids=["matlab-v7.3", "h5py-no-header"])
def test_3dhp_test_set(tmp_path, scene, write):
    world, K, _, _, cams = scene
    j28 = np.zeros((FRAMES, 28, 3))
    j28[:, H36M_17_IN_MPI_28] = cams[:, 0]
    j17 = j28[:, MPI_TEST_17]  # the test set's joints, in its order
    folder = tmp_path / "TS3"
    folder.mkdir()
    # univ_annot3: the same poses rescaled to the universal skeleton: the ground truth that
    # published 3DHP figures are scored on; annot3 is what projects onto annot2.
    centre = j17.mean(1, keepdims=True)
    univ = centre + 0.9 * (j17 - centre)
    write(folder / "annot_data.mat", {
        "annot2": project(j17, K[0])[:, None], "annot3": j17[:, None], "univ_annot3": univ[:, None],
        "valid_frame": np.array([[1.0], [0.0], [1.0]]),
    })  # fmt: skip
    records = load_test_sequence(tmp_path, 3)
    assert records["image"].tolist() == ["TS3/imageSequence/img_000001.jpg", "TS3/imageSequence/img_000003.jpg"]
    np.testing.assert_allclose(records["K"][0], K[0], rtol=1e-5, atol=1e-3)  # K fitted from annot3 -> annot2
    univ_28 = np.zeros((FRAMES, 28, 3))
    univ_28[:, MPI_TEST_17] = univ
    np.testing.assert_allclose(records["joints_cam"], univ_28[[0, 2]][:, H36M_17_IN_MPI_28], atol=0.01)
    with pytest.raises(AssertionError):  # annot3 is not the evaluated ground truth
        np.testing.assert_allclose(records["joints_cam"], cams[[0, 2], 0], atol=0.01)


def test_3dhp_test_file_neither_reader_reads_names_both(tmp_path):
    (tmp_path / "TS1").mkdir()
    (tmp_path / "TS1" / "annot_data.mat").write_bytes(b"not a MATLAB file" * 10)
    both = r"scipy.io.loadmat \(v5\) failed \(.+\) and h5py \(v7.3 / HDF5\) failed \(OSError: "
    with pytest.raises(ValueError, match=r"TS1/annot_data.mat: not a readable MATLAB annotation file: " + both):
        load_test_sequence(tmp_path, 1)


def _mpii_entry(image, rng):
    return {"image": image, "center": [81.0, 61.0], "scale": 0.4, "joints": rng.uniform(20, 100, (16, 2)).tolist(),
            "joints_vis": [1] * 15 + [0]}  # fmt: skip


def test_mpii(tmp_path):
    rng = np.random.default_rng(0)
    entries = [_mpii_entry("a.jpg", rng), _mpii_entry("b.jpg", rng)]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    records = load_mpii(tmp_path / "train.json")
    joints = np.array(entries[0]["joints"]) - 1
    for j, m in enumerate(H36M_17_IN_MPII):
        if m is None:
            assert records["vis"][0, j] == 0  # spine: MPII has none
        else:
            np.testing.assert_allclose(records["uv"][0, j], joints[m], rtol=1e-6)
            assert records["vis"][0, j] == (MPII_16[m] != "l_wrist")  # unlabelled in this entry
    np.testing.assert_allclose(records["centre"][0], [80.0, 60.0 + 15 * 0.4])
    assert records["side"][0] == pytest.approx(200 * 1.25 * 0.4) and np.isnan(records["K"]).all()
    # Read the images and crop through the training transform.
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(tmp_path / "images" / name), np.full((120, 160, 3), 128, np.uint8))
    sample = RecordDataset(records, tmp_path)[0]
    assert sample["image"].shape == (120, 160, 3)
    out = PoseTransform(out_size=64, train=False)(sample)
    expected = (records["uv"][0] - records["centre"][0]) * 64 / 100 + 31.5  # box centre -> crop centre
    np.testing.assert_allclose(out["uv"].numpy(), expected, atol=1e-3)


def test_mpii_entry_without_a_centre_is_not_adjusted(tmp_path):
    """HRNet's MPII reader shifts the centre and enlarges the scale only when center[0] != -1;
    then it subtracts 1 from the centre either way (MATLAB's 1-based pixels)."""
    rng = np.random.default_rng(0)
    entries = [_mpii_entry("a.jpg", rng), _mpii_entry("b.jpg", rng) | {"center": [-1, -1]}]
    (tmp_path / "train.json").write_text(json.dumps(entries))
    records = load_mpii(tmp_path / "train.json")
    np.testing.assert_allclose(records["centre"], [[80.0, 60.0 + 15 * 0.4], [-2.0, -2.0]])
    np.testing.assert_allclose(records["side"], [200 * 1.25 * 0.4, 200 * 0.4])


def test_mpii_errors(tmp_path):
    bad = [{"image": "a.jpg", "center": [1, 1], "scale": 1.0, "joints": [[0, 0]] * 14, "joints_vis": [1] * 14}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json: entry 0: joints \(14, 2\)"):
        load_mpii(tmp_path / "bad.json")
    bad[0] |= {"center": [1.0], "joints": [[0, 0]] * 16, "joints_vis": [1] * 16}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"bad.json: entry 0: center \(1,\), expected \(2,\)"):
        load_mpii(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"image": "a.jpg"}]))
    with pytest.raises(ValueError, match="entry 0: field 'center' is missing"):
        load_mpii(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_mpii(tmp_path / "missing.json")
    record = {"image": np.array(["images/zz.jpg"]), "K": np.eye(3)[None], "centre": np.zeros((1, 2)),
              "side": np.ones(1)}  # fmt: skip
    with pytest.raises(FileNotFoundError, match="images/zz.jpg"):
        RecordDataset(record, tmp_path)[0]
    with pytest.raises(ValueError, match="field 'K' is missing"):
        RecordDataset({"image": record["image"]}, tmp_path)


def test_joint_maps_are_built_by_name_and_lose_nothing():
    assert joint_map(JOINTS) == list(range(17))
    assert sorted(MULTIVIEW_TO_WS3D) == list(range(17)) and sorted(TEST_TO_WS3D) == list(range(17))
    assert len(set(TRAIN_TO_WS3D)) == 17 and None not in TRAIN_TO_WS3D  # 17 of 3DHP's 28 joints
    assert MPII_TO_WS3D.count(None) == 1 and MPII_TO_WS3D[JOINTS.index("spine")] is None
    assert MPII_JOINTS[MPII_TO_WS3D[JOINTS.index("l_wrist")]] == "l_wrist"
