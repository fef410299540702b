"""Calibration files written the way their public writers write them, read back into ws3d's convention.

Each file is built from known cameras (R from a Rodrigues vector, a centre in world mm, K,
distortion) by reproducing its writer's code (named at each builder), then read; R, t (mm),
K and distortion must come back, and world points must project (cv2.projectPoints, the
independent reference) to the pixels the known cameras give.
"""

import math

import cv2
import numpy as np
import pytest

from ws3d.data.calibration_files import (
    CameraCalibration,
    read_calibration,
    read_opencv,
    read_qualisys,
    read_toml,
    undistort_points,
    write_toml,
)
from ws3d.errors import InputError, MissingFileError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

KNOWN = [
    dict(
        name="cam_a",
        rvec=[0.3, -1.2, 0.2],
        centre=[2500.0, -400.0, 1500.0],  # world mm
        K=[[1450.0, 0.0, 962.3], [0.0, 1448.5, 541.7], [0.0, 0.0, 1.0]],
        dist=[-0.12, 0.05, 0.001, -0.0007, 0.0],
        size=(1920, 1080),
    ),
    dict(
        name="cam_b",
        rvec=[-0.4, 2.1, -0.1],
        centre=[-2100.0, 300.0, 1800.0],
        K=[[1010.0, 0.0, 640.5], [0.0, 1012.0, 360.2], [0.0, 0.0, 1.0]],
        dist=[0.08, -0.02, -0.0004, 0.0009, 0.0],
        size=(1280, 720),
    ),
]
FISHEYE_DIST = [0.05, -0.01, 0.003, -0.001]
# Points in front of a camera, in its own frame (mm); _world_points moves them to the world.
IN_VIEW = np.array([[-400.0, -300.0, 2500.0], [350.0, 200.0, 3100.0], [0.0, 0.0, 4000.0], [600.0, -350.0, 2800.0]])


def _truth(c):
    """A known camera: R (3, 3), t (3,) mm, K (3, 3), dist (5,)."""
    R = cv2.Rodrigues(np.array(c["rvec"]))[0]
    return R, -R @ np.array(c["centre"]), np.array(c["K"]), np.array(c["dist"])


def _world_points(c):
    R, t, _, _ = _truth(c)
    return (IN_VIEW - t) @ R  # R^T (x - t) for each row


def _assert_same_camera(cam, c, dist=None, fisheye=False):
    R, t, K, true_dist = _truth(c)
    true_dist = true_dist if dist is None else np.asarray(dist)
    np.testing.assert_allclose(cam.R, R, atol=1e-9)
    np.testing.assert_allclose(cam.t, t, atol=1e-6)
    np.testing.assert_allclose(cam.K, K, atol=1e-9)
    np.testing.assert_allclose(cam.dist, true_dist, atol=1e-12)
    assert cam.fisheye == fisheye
    X = _world_points(c).reshape(-1, 1, 3)
    project = cv2.fisheye.projectPoints if fisheye else cv2.projectPoints
    expected = project(X, cv2.Rodrigues(R)[0], t, K, true_dist)[0]
    got = project(X, cv2.Rodrigues(cam.R)[0], cam.t, cam.K, cam.dist)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)


# -- Pose2Sim / anipose TOML --------------------------------------------------------------------


def _pose2sim_toml(C, S, D, K, R, T):
    """perfanalytics/pose2sim Pose2Sim/calibration.py ``toml_write``, its f-strings verbatim.
    R: Rodrigues vectors; T: metres (Pose2Sim divides mm by 1000 before writing)."""
    text = ""
    for c in range(len(C)):
        cam = f"[{C[c]}]\n"
        name = f'name = "{C[c]}"\n'
        size = f"size = [ {S[c][0]}, {S[c][1]}]\n"
        mat = f"matrix = [ [ {K[c][0, 0]}, 0.0, {K[c][0, 2]}], [ 0.0, {K[c][1, 1]}, {K[c][1, 2]}], [ 0.0, 0.0, 1.0]]\n"
        dist = f"distortions = [ {D[c][0]}, {D[c][1]}, {D[c][2]}, {D[c][3]}]\n"
        rot = f"rotation = [ {R[c][0]}, {R[c][1]}, {R[c][2]}]\n"
        tran = f"translation = [ {T[c][0]}, {T[c][1]}, {T[c][2]}]\n"
        fish = "fisheye = false\n\n"
        text += cam + name + size + mat + dist + rot + tran + fish
    return text + "[metadata]\nadjusted = false\nerror = 0.0\n"


def _pose2sim_utility_toml(C, S, D, K, R, T):
    """Pose2Sim/Utilities/calib_qca_to_toml.py ``toml_write``: [cam_N] tables, trailing commas."""
    text = ""
    for c in range(len(C)):
        text += f"[cam_{c + 1}]\n" + f'name = "{C[c]}"\n' + f"size = [ {S[c][0]}, {S[c][1]},]\n"
        text += f"matrix = [ [ {K[c][0, 0]}, 0.0, {K[c][0, 2]},], [ 0.0, {K[c][1, 1]}, {K[c][1, 2]},], "
        text += "[ 0.0, 0.0, 1.0,],]\n"
        text += f"distortions = [ {D[c][0]}, {D[c][1]}, {D[c][2]}, {D[c][3]},]\n"
        text += f"rotation = [ {R[c][0]}, {R[c][1]}, {R[c][2]},]\n"
        text += f"translation = [ {T[c][0]}, {T[c][1]}, {T[c][2]},]\n" + "fisheye = false\n\n"
    return text + "[metadata]\nadjusted = false\nerror = 0.0\n"


def _pose2sim_args():
    truths = [_truth(c) for c in KNOWN]
    return (
        [c["name"] for c in KNOWN],
        [[float(s) for s in c["size"]] for c in KNOWN],  # calib_qca_fun gives float sizes
        [d[:4] for _, _, _, d in truths],
        [K for _, _, K, _ in truths],
        [cv2.Rodrigues(R)[0].ravel() for R, _, _, _ in truths],
        [t / 1000 for _, t, _, _ in truths],
    )


@pytest.mark.parametrize("writer", [_pose2sim_toml, _pose2sim_utility_toml])
def test_pose2sim_toml_is_read_in_metres(tmp_path, writer):
    path = tmp_path / "Calib_qualisys.toml"
    path.write_text(writer(*_pose2sim_args()))
    cameras = read_calibration(path)
    assert [cam.name for cam in cameras] == ["cam_a", "cam_b"]
    assert [cam.size for cam in cameras] == [(1920, 1080), (1280, 720)]
    for cam, c in zip(cameras, KNOWN, strict=True):
        _assert_same_camera(cam, c, dist=c["dist"][:4])  # Pose2Sim keeps k1, k2, p1, p2


def _anipose_toml(units_per_mm):
    """lambdaloop/aniposelib aniposelib/cameras.py ``CameraGroup.dump``: ``toml.dump`` of
    {'cam_0': Camera.get_dict(), ..., 'metadata': ...}, translation in the board's unit; a
    FisheyeCamera adds ``fisheye = true``. ``toml.dump`` writes arrays as ``[ a, b,]``."""
    text = ""
    for i, c in enumerate(KNOWN):
        R, t, K, dist = _truth(c)
        fisheye = i == 1
        dist = FISHEYE_DIST if fisheye else dist

        def array(values):
            return "[ " + ", ".join(repr(float(v)) for v in values) + ",]"

        text += f'[cam_{i}]\nname = "{c["name"]}"\nsize = [ {c["size"][0]}, {c["size"][1]},]\n'
        text += "matrix = [ " + " ".join(array(row) + "," for row in K) + "]\n"
        text += f"distortions = {array(dist)}\nrotation = {array(cv2.Rodrigues(R)[0].ravel())}\n"
        text += f"translation = {array(t * units_per_mm)}\n" + ("fisheye = true\n" if fisheye else "") + "\n"
    return text + "[metadata]\nadjusted = false\nerror = 0.84\n"


def test_anipose_toml_takes_the_board_unit(tmp_path):
    path = tmp_path / "calibration.toml"
    path.write_text(_anipose_toml(units_per_mm=1.0))  # board measured in mm
    cameras = read_toml(path, units="mm")
    _assert_same_camera(cameras[0], KNOWN[0])
    _assert_same_camera(cameras[1], KNOWN[1], dist=FISHEYE_DIST, fisheye=True)
    # Without units the file reads as Pose2Sim reads it, in metres: 1000x too far.
    np.testing.assert_allclose(read_toml(path)[0].t, _truth(KNOWN[0])[1] * 1000, rtol=1e-12)
    path.write_text(_anipose_toml(units_per_mm=0.1))  # board in cm
    _assert_same_camera(read_calibration(path, units="cm")[0], KNOWN[0])


def _known_cameras(fisheye_second=False):
    cameras = []
    for i, c in enumerate(KNOWN):
        R, t, K, dist = _truth(c)
        fisheye = fisheye_second and i == 1
        cameras.append(
            CameraCalibration(c["name"], c["size"], K, np.array(FISHEYE_DIST) if fisheye else dist, R, t, fisheye)
        )
    return cameras


@pytest.mark.parametrize("units", ["m", "mm"])
def test_write_toml_round_trip(tmp_path, units):
    path = tmp_path / "Calib.toml"
    write_toml(path, _known_cameras(fisheye_second=True), units=units)
    cameras = read_toml(path)  # the metadata says the unit
    _assert_same_camera(cameras[0], KNOWN[0])
    _assert_same_camera(cameras[1], KNOWN[1], dist=FISHEYE_DIST, fisheye=True)
    assert [cam.size for cam in cameras] == [(1920, 1080), (1280, 720)]
    with pytest.raises(InputError, match="metadata"):
        read_toml(path, units="cm")


def test_write_toml_is_what_pose2sim_and_anipose_read(tmp_path):
    path = tmp_path / "Calib.toml"
    many = [  # half of them with Pose2Sim's four coefficients (k3 is 0 in KNOWN)
        CameraCalibration(f"c{i}", cam.size, cam.K, cam.dist[: 4 + i % 2], cam.R, cam.t)
        for i, cam in enumerate(_known_cameras() * 6)
    ]
    write_toml(path, many)
    data = tomllib.loads(path.read_text())
    # anipose's CameraGroup.load takes the tables in sorted order, without 'metadata'.
    assert [data[k]["name"] for k in sorted(data) if k != "metadata"] == [f"c{i}" for i in range(12)]
    assert data["metadata"]["adjusted"] is False and data["metadata"]["error"] == 0.0
    # Pose2Sim's computeP: P = K [Rodrigues(rotation) | translation], world in metres.
    for table, c in zip([data[k] for k in sorted(data) if k != "metadata"], KNOWN * 6, strict=True):
        assert set(table) >= {"name", "size", "matrix", "distortions", "rotation", "translation", "fisheye"}
        assert len(table["distortions"]) == 5  # anipose unpacks five
        H = np.hstack([cv2.Rodrigues(np.array(table["rotation"]))[0], np.array(table["translation"])[:, None]])
        P = np.array(table["matrix"]) @ H
        X = np.hstack([_world_points(c) / 1000, np.ones((len(IN_VIEW), 1))])
        uv = (X @ P.T)[:, :2] / (X @ P.T)[:, 2:]
        pinhole = IN_VIEW @ np.array(c["K"]).T
        np.testing.assert_allclose(uv, pinhole[:, :2] / pinhole[:, 2:], atol=1e-6)


# -- Qualisys .qca.txt ---------------------------------------------------------------------------

QCA_CAMERA = """  <camera active="1" calibrated="true" message="" point-count="2241" avg-residual="0.512"
   serial="{serial}" model="{model}" viewrotation="0" video_resolution="">
   <fov_marker left="0" top="0" right="1919" bottom="1087"/>
   <fov_marker_max left="0" top="0" right="1919" bottom="1087"/>
   <fov_video left="{left}" top="{top}" right="{right}" bottom="{bottom}"/>
   <fov_video_max left="0" top="0" right="1919" bottom="1087"/>
   <transform x="{x!r}" y="{y!r}" z="{z!r}" r11="{r11!r}" r12="{r12!r}" r13="{r13!r}" r21="{r21!r}" r22="{r22!r}"
    r23="{r23!r}" r31="{r31!r}" r32="{r32!r}" r33="{r33!r}"/>
   <intrinsic focallength="9.27" sensorMinU="0.000000" sensorMaxU="122879.000000" sensorMinV="0.000000"
    sensorMaxV="69631.000000" focalLengthU="{fu!r}" focalLengthV="{fv!r}" centerPointU="{cu!r}" centerPointV="{cv!r}"
    skew="0.000000" radialDistortion1="{k1!r}" radialDistortion2="{k2!r}" radialDistortion3="0.000000"
    tangentalDistortion1="{p1!r}" tangentalDistortion2="{p2!r}"/>
  </camera>
"""


def _qca_camera(c, serial, model, left=0, top=0, **override):
    """One <camera> as Pose2Sim's calib_qca_fun / read_qca reads it. The conversion from an
    OpenCV camera replays Pose2Sim/Utilities/calib_toml_to_qca.py: rotate_cam(ang_x=pi), then
    world_to_camera_persp, then qca_write (R transposed, K and D times 64). Its fov_video is
    (0, 0, w, h); real QTM files give inclusive bounds (right = left + w - 1), which is what
    read_qca's "+1" expects, so that is what is written here, with a crop (left, top) that
    QTM leaves in centerPointU/V (full-sensor subpixels)."""
    R, t, K, D = _truth(c)
    ang_x = math.pi  # rotate_cam
    r_ax_x = np.array([[1, 0, 0], [0, math.cos(ang_x), -math.sin(ang_x)], [0, math.sin(ang_x), math.cos(ang_x)]])
    r, T = r_ax_x @ R, r_ax_x @ t
    r, T = r.T, -r.T @ T  # world_to_camera_persp
    r = r.T  # qca_write: R = [r.T for r in R]
    w, h = c["size"]
    entries = {f"r{i + 1}{j + 1}": float(r[i, j]) for i in range(3) for j in range(3)}
    entries |= dict(x=float(T[0]), y=float(T[1]), z=float(T[2]))
    entries |= dict(fu=K[0, 0] * 64, fv=K[1, 1] * 64, cu=(K[0, 2] + left) * 64, cv=(K[1, 2] + top) * 64)
    entries |= dict(k1=D[0] * 64, k2=D[1] * 64, p1=D[2] * 64, p2=D[3] * 64)
    entries = {k: float(v) for k, v in (entries | override).items()}
    return QCA_CAMERA.format(
        serial=serial, model=model, left=left, top=top, right=left + w - 1, bottom=top + h - 1, **entries
    )


def _qca(cameras):
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<calibration source="Calib.qtm" created="2024-03-01 10:12:40" '
        'qtm-version="2023.3" type="wand" wandLength="601.0000" maximumFrames="1000" shortArmEnd="75.0000" '
        'longArmEnd="500.0000" longArmMiddle="200.0000">\n <results std-dev="0.42" min-max-diff="1.2"/>\n <cameras>\n'
    )
    return head + "".join(cameras) + " </cameras>\n</calibration>\n"


def test_qualisys_cameras_in_opencv_convention(tmp_path):
    path = tmp_path / "calib.qca.txt"
    path.write_text(
        _qca(
            [
                _qca_camera(KNOWN[0], "12", "Miqus Video", left=16, top=8),
                _qca_camera(KNOWN[1], "9", "Miqus Video UnderWater"),
                _qca_camera(KNOWN[0], "30001", "Oqus 700+"),  # a marker camera: no video
            ]
        )
    )
    cameras = read_calibration(path)
    assert [cam.name for cam in cameras] == ["9", "12"]  # Pose2Sim's natural order of serials
    assert [cam.size for cam in cameras] == [(1280, 720), (1920, 1080)]
    _assert_same_camera(cameras[0], KNOWN[1], dist=KNOWN[1]["dist"])
    _assert_same_camera(cameras[1], KNOWN[0], dist=KNOWN[0]["dist"])
    np.testing.assert_allclose(cameras[1].centre, KNOWN[0]["centre"], atol=1e-6)
    raw = read_qualisys(path, scale_distortion=False, video_only=False)
    assert [cam.name for cam in raw] == ["9", "12", "30001"]
    np.testing.assert_allclose(raw[0].dist, np.array(KNOWN[1]["dist"]) * 64, atol=1e-12)


# -- OpenCV FileStorage --------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "units", "mm_per_unit"), [(".yml", None, 1.0), (".xml", "m", 1000.0)])
def test_opencv_per_camera_maps(tmp_path, suffix, units, mm_per_unit):
    path = tmp_path / f"cameras{suffix}"
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for c in KNOWN:
        R, t, K, dist = _truth(c)
        fs.startWriteStruct(c["name"], cv2.FileNode_MAP)
        fs.write("image_width", c["size"][0])
        fs.write("image_height", c["size"][1])
        fs.write("camera_matrix", K)
        fs.write("distortion_coefficients", dist[None])  # 1x5, as cv2.calibrateCamera returns it
        fs.write("R", R)
        fs.write("T", (t / mm_per_unit)[:, None])
        fs.endWriteStruct()
    fs.release()
    cameras = read_calibration(path, units=units)
    assert [(cam.name, cam.size) for cam in cameras] == [("cam_a", (1920, 1080)), ("cam_b", (1280, 720))]
    for cam, c in zip(cameras, KNOWN, strict=True):
        _assert_same_camera(cam, c)


def test_opencv_calibration_sample_file_is_one_camera_at_the_origin(tmp_path):
    """The keys of opencv/opencv samples/cpp/tutorial_code/calib3d/camera_calibration
    camera_calibration.cpp ``saveCameraParams``; ``extrinsic_parameters`` are board poses."""
    path = tmp_path / "out_camera_data.xml"
    _, _, K, dist = _truth(KNOWN[0])
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    saved = dict(calibration_time="Mon Mar  4 10:00:00 2024", nr_of_frames=25, image_width=1920, image_height=1080)
    saved |= dict(board_width=9, board_height=6, square_size=50.0, flags=0, fisheye_model=0, camera_matrix=K)
    saved |= dict(distortion_coefficients=dist[:, None], avg_reprojection_error=0.3)
    saved |= dict(extrinsic_parameters=np.ones((25, 6)))  # one board pose per view
    for key, value in saved.items():
        fs.write(key, value)
    fs.release()
    (cam,) = read_calibration(path)
    assert (cam.name, cam.size, cam.fisheye) == ("out_camera_data", (1920, 1080), False)
    np.testing.assert_allclose(cam.K, K)
    np.testing.assert_allclose(cam.dist, dist)
    np.testing.assert_allclose(cam.R, np.eye(3))
    np.testing.assert_allclose(cam.t, np.zeros(3))


def _easymocap_write(path, values):
    """zju3dv/EasyMocap easymocap/mytools/camera_utils.py FileStorage.write (OpenCV 4 branch)."""
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for key, (value, dt) in values.items():
        if dt == "mat":
            fs.write(key, value)
        else:
            fs.startWriteStruct(key, cv2.FileNode_SEQ)
            for elem in value:
                fs.write("", elem)
            fs.endWriteStruct()
    fs.release()


def test_easymocap_intri_and_extri(tmp_path):
    names = ["01", "02"]
    intri, extri = {"names": (names, "list")}, {"names": (names, "list")}
    for key, c in zip(names, KNOWN, strict=True):  # write_intri and write_extri; EasyMocap works in metres
        R, t, K, dist = _truth(c)
        intri |= {f"K_{key}": (K, "mat"), f"dist_{key}": (dist.reshape(1, 5), "mat")}
        extri |= {
            f"R_{key}": (cv2.Rodrigues(R)[0], "mat"),
            f"Rot_{key}": (R, "mat"),
            f"T_{key}": ((t / 1000)[:, None], "mat"),
        }
    _easymocap_write(tmp_path / "intri.yml", intri)
    _easymocap_write(tmp_path / "extri.yml", extri)
    cameras = read_opencv(tmp_path / "intri.yml", units="m", extrinsics=tmp_path / "extri.yml")
    assert [cam.name for cam in cameras] == names
    for cam, c in zip(cameras, KNOWN, strict=True):
        _assert_same_camera(cam, c)


def test_opencv_multiview_sample_file(tmp_path):
    """opencv/opencv samples/python/multiview_calibration.py ``saveToFile``: stacked arrays."""
    path = tmp_path / "multiview.yaml"
    truths = [_truth(c) for c in KNOWN]
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("rvecs", np.array([cv2.Rodrigues(R)[0] for R, _, _, _ in truths]))
    fs.write("distortions", np.array([np.array(FISHEYE_DIST)[None], truths[1][3][None, :4]]))
    fs.write("Ks", np.array([K for _, _, K, _ in truths]))
    fs.write("Ts", np.array([(t / 1000)[:, None] for _, t, _, _ in truths]))  # its patterns are in metres
    fs.write("is_fisheye", np.array([True, False], dtype=int))
    fs.write("image_sizes", np.array([c["size"] for c in KNOWN]))
    fs.write("cam_ids", ",".join(["left", "right"]))
    fs.release()
    cameras = read_calibration(path, units="m")
    assert [(cam.name, cam.size) for cam in cameras] == [("left", (1920, 1080)), ("right", (1280, 720))]
    _assert_same_camera(cameras[0], KNOWN[0], dist=FISHEYE_DIST, fisheye=True)
    _assert_same_camera(cameras[1], KNOWN[1], dist=KNOWN[1]["dist"][:4])


# -- bad files ------------------------------------------------------------------------------------


def _toml_with(old, new):
    def write(path):
        text = _pose2sim_toml(*_pose2sim_args())
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return write


def _opencv_with_rotation(R):
    def write(path):
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
        fs.startWriteStruct("cam", cv2.FileNode_MAP)
        fs.write("K", np.array(KNOWN[0]["K"]))
        fs.write("dist", np.zeros(5))
        fs.write("R", R)
        fs.write("T", np.zeros(3))
        fs.endWriteStruct()
        fs.release()

    return write


def _qca_with(old="", new="", **override):
    def write(path):
        text = _qca([_qca_camera(KNOWN[0], "12", "Miqus Video", **override)])
        assert old in text
        path.write_text(text.replace(old, new, 1))

    return write


BAD_FILES = {
    "missing key": ("Calib.toml", _toml_with("translation = ", "translations = "), "no 'translation' key"),
    "matrix shape": ("Calib.toml", _toml_with("[ 0.0, 0.0, 1.0]]", "]"), "shape (2, 3)"),
    "non-finite": ("Calib.toml", _toml_with("translation = [ ", "translation = [ nan, "), "non-finite"),
    "not toml": ("Calib.toml", lambda p: p.write_text("[cam_1\nname = "), "not a readable TOML"),
    "no camera": ("Calib.toml", lambda p: p.write_text("[metadata]\nerror = 0.0\n"), "no camera table"),
    "scaled rotation": ("cams.yml", _opencv_with_rotation(2 * np.eye(3)), "not a rotation"),
    "mirror": ("cams.yml", _opencv_with_rotation(np.diag([1.0, 1.0, -1.0])), "not a rotation"),
    "rotation shape": ("cams.yml", _opencv_with_rotation(np.eye(2)), "shape (2, 2)"),
    "broken yaml": ("cams.yml", lambda p: p.write_text("%YAML:1.0\n---\ncam: {K: [1, 2\n"), "not a readable OpenCV"),
    "no opencv camera": ("cams.yml", lambda p: p.write_text("%YAML:1.0\n---\nfoo: 3\n"), "no camera found"),
    "qca rotation": ("c.qca.txt", _qca_with(r11=3.0), "not a rotation"),
    "qca attribute": ("c.qca.txt", _qca_with("focalLengthU=", "focalLength_U="), "'focalLengthU'"),
    "qca truncated": (
        "c.qca.txt",
        lambda p: p.write_text(_qca([_qca_camera(KNOWN[0], "1", "Miqus Video")])[:900]),
        "not a readable Qualisys",
    ),
    "qca no video": ("c.qca.txt", lambda p: p.write_text(_qca([_qca_camera(KNOWN[0], "1", "Oqus 700+")])), "no video"),
    "unknown": ("calib.txt", lambda p: p.write_text("camera 1: f=1200 cx=640\n"), "unknown calibration format"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_files_name_the_file_and_the_problem(tmp_path, case):
    filename, write, says = BAD_FILES[case]
    path = tmp_path / filename
    write(path)
    with pytest.raises(InputError) as error:
        read_calibration(path)
    message = str(error.value)
    assert str(path) in message and says in message and "\n" not in message, message


def test_missing_file_and_bad_units(tmp_path):
    with pytest.raises(MissingFileError, match="nope.toml"):
        read_calibration(tmp_path / "nope.toml")
    assert issubclass(MissingFileError, FileNotFoundError)
    path = tmp_path / "Calib.toml"
    path.write_text(_pose2sim_toml(*_pose2sim_args()))
    with pytest.raises(InputError, match="units='inch'"):
        read_toml(path, units="inch")
    with pytest.raises(InputError, match="no image size"):
        write_toml(
            tmp_path / "out.toml", [CameraCalibration("x", None, np.eye(3), np.zeros(5), np.eye(3), np.zeros(3))]
        )


# -- undistortion -------------------------------------------------------------------------------


@pytest.mark.parametrize("fisheye", [False, True])
def test_undistort_points_inverts_projection(fisheye):
    K = np.array(KNOWN[0]["K"])
    dist = np.array(FISHEYE_DIST) if fisheye else np.array([-0.28, 0.09, 0.0012, -0.0009, -0.01])
    camera = CameraCalibration("c", (1920, 1080), K, dist, np.eye(3), np.zeros(3), fisheye)
    grid = np.stack(np.meshgrid(np.linspace(-0.6, 0.6, 7), np.linspace(-0.35, 0.35, 5)), -1)  # x/z, y/z
    X = np.concatenate([grid, np.ones(grid.shape[:-1] + (1,))], -1) * 3000.0  # (5, 7, 3) camera mm
    project = cv2.fisheye.projectPoints if fisheye else cv2.projectPoints
    distorted = project(X.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, dist)[0].reshape(5, 7, 2)
    pinhole = np.stack([K[0, 0] * grid[..., 0] + K[0, 2], K[1, 1] * grid[..., 1] + K[1, 2]], -1)
    assert np.abs(distorted - pinhole).max() > 5  # the distortion is real
    np.testing.assert_allclose(undistort_points(distorted, camera), pinhole, atol=1e-6)


def test_undistort_points_without_distortion_is_identity():
    camera = CameraCalibration("c", None, np.array(KNOWN[0]["K"]), np.zeros(5), np.eye(3), np.zeros(3))
    uv = np.arange(12.0).reshape(2, 3, 2) * 100
    out = undistort_points(uv, camera)
    assert out is not uv
    np.testing.assert_array_equal(out, uv)
