"""Multi-camera calibration files: Pose2Sim / anipose TOML, Qualisys ``.qca.txt``, OpenCV FileStorage.

Every reader returns a list of :class:`CameraCalibration` in one convention (ws3d/camera.py's):
``x_cam = R @ X_world + t`` with the camera's x right, y down, z forward; ``t`` in
MILLIMETRES whatever the file's units; ``K`` in pixels (u = column, v = row, integer values
at pixel centres); ``dist`` OpenCV's coefficients ``(k1, k2, p1, p2[, k3, ...])``, or the
four ``(k1, k2, k3, k4)`` of ``cv2.fisheye`` when ``fisheye`` is set.

Units. Only a Qualisys file states them (millimetres). The others do not, so each reader
takes ``units`` ("m", "cm" or "mm") with a documented default:

- TOML: Pose2Sim writes metres (``Pose2Sim/calibration.py``: ``toml_write`` after
  ``calib_qca_fun`` and the board calibration both divide mm by 1000) and reads every TOML,
  anipose's included, as metres. anipose (aniposelib ``CameraGroup.dump``) writes the
  translation in the unit the board's square length was given in, often mm, and records no
  unit. So: an explicit ``units`` wins; else a ``units`` key in ``[metadata]`` (written by
  :func:`write_toml`; neither tool reads it); else metres. Read an anipose file with the
  board's unit, e.g. ``units="mm"``. A ``units`` argument that contradicts the metadata is
  an error.
- OpenCV FileStorage: no convention exists (EasyMocap's ``extri.yml`` is in metres, OpenCV's
  multiview sample in the board's unit); ``units`` defaults to "mm".

Sources of each layout: perfanalytics/pose2sim ``Pose2Sim/calibration.py`` (``toml_write``,
``calib_qca_fun``, ``read_qca``) and ``Pose2Sim/Utilities/calib_toml_to_qca.py``;
lambdaloop/aniposelib ``aniposelib/cameras.py`` (``Camera.get_dict``, ``FisheyeCamera``,
``CameraGroup.dump`` / ``load``); zju3dv/EasyMocap ``easymocap/mytools/camera_utils.py``
(``write_intri``, ``write_extri``); opencv/opencv ``samples/python/multiview_calibration.py``
(``saveToFile``) and the calibration tutorial's ``saveCameraParams``.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: tomllib is tomli, adopted into the stdlib in 3.11
    import tomli as tomllib

from ws3d.errors import InputError, MissingFileError, read_input

MM_PER_UNIT = {"m": 1000.0, "cm": 10.0, "mm": 1.0}

# Tables of a calibration TOML that are not cameras (Pose2Sim's computeP skips the same ones:
# Caliscope and FreeMoCap add their board and capture volume).
_TOML_NOT_CAMERAS = ("metadata", "capture_volume", "charuco", "checkerboard")
_TOML_KEYS = ("matrix", "distortions", "rotation", "translation")

# OpenCV node names, first match wins.
_K_NAMES = ("camera_matrix", "cameraMatrix", "K")
_DIST_NAMES = ("distortion_coefficients", "distCoeffs", "dist_coeffs", "dist", "D")
_R_NAMES = ("R", "rotation_matrix", "rvec")
_T_NAMES = ("T", "t", "tvec")
_FISHEYE_NAMES = ("fisheye", "is_fisheye", "fisheye_model")

# Enough iterations that undistortion inverts strong distortion to well below a pixel;
# OpenCV's default stops after 5.
_UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


@dataclass(eq=False)
class CameraCalibration:
    """One calibrated camera.

    Attributes:
        name: the camera's name in the file.
        size: (width, height) in pixels, or None when the file does not give it.
        K: (3, 3) float64 intrinsics in pixels.
        dist: (k,) float64 OpenCV distortion coefficients (k1, k2, p1, p2[, k3, ...]); with
            ``fisheye``, the 4 coefficients of ``cv2.fisheye``.
        R: (3, 3) float64 world-to-camera rotation.
        t: (3,) float64 world-to-camera translation in mm: ``x_cam = R @ X_world + t``.
        fisheye: whether ``dist`` is the fisheye model.
    """

    name: str
    size: tuple[int, int] | None
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray
    fisheye: bool = False

    @property
    def centre(self) -> np.ndarray:
        """(3,) the camera centre in world mm."""
        return -self.R.T @ self.t


def read_calibration(path: str | os.PathLike, units: str | None = None) -> list[CameraCalibration]:
    """Read any supported calibration file, picking the reader by content and extension.

    Args:
        path: a Pose2Sim / anipose ``.toml``, a Qualisys ``.qca.txt`` or an OpenCV
            FileStorage ``.yml`` / ``.yaml`` / ``.xml`` / ``.json``.
        units: the file's length unit, "m", "cm" or "mm"; None takes the reader's default
            (module docstring). A Qualisys file is always mm.

    Returns:
        The cameras, in the file's order (Qualisys: natural order of serial numbers).

    Raises:
        MissingFileError: no such file.
        InputError: an unknown format, or a malformed file (the message names it).
    """
    path = _existing(path)
    text = read_input(path, lambda p: p.read_text(errors="replace"), "text file")
    suffix = path.name.lower()
    if "<opencv_storage" in text or text.lstrip().startswith("%YAML") or suffix.endswith((".yml", ".yaml", ".json")):
        return read_opencv(path, units=units or "mm")
    if suffix.endswith(".qca.txt") or "<calibration" in text:
        if units not in (None, "mm"):
            raise InputError(f"{path}: a Qualisys calibration is in mm, not units={units!r}")
        return read_qualisys(path)
    if suffix.endswith(".toml"):
        return read_toml(path, units=units)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise InputError(
            f"{path}: unknown calibration format (expected a Pose2Sim/anipose TOML, a Qualisys .qca.txt "
            "or an OpenCV FileStorage YAML/XML/JSON)"
        ) from None
    return read_toml(path, units=units)


def read_toml(path: str | os.PathLike, units: str | None = None) -> list[CameraCalibration]:
    """Read a Pose2Sim or anipose calibration TOML.

    Each camera is a table with ``name``, ``size`` [w, h], ``matrix`` (3x3), ``distortions``,
    ``rotation`` (Rodrigues vector, world-to-camera), ``translation`` and optionally
    ``fisheye``; ``[metadata]`` and Caliscope's board tables are skipped.

    Args:
        path: the TOML file.
        units: the translation's unit; None: ``[metadata] units`` if present, else metres
            (Pose2Sim's). anipose files are in the board's unit: pass it.

    Returns:
        The cameras in the file's order.
    """
    path = _existing(path)
    data = read_input(path, lambda p: tomllib.loads(p.read_text()), "TOML file")
    metadata = data.get("metadata")
    in_file = metadata.get("units") if isinstance(metadata, dict) else None
    scale = MM_PER_UNIT[_resolve_units(path, units, in_file, default="m")]
    cameras = []
    for key, table in data.items():
        if key in _TOML_NOT_CAMERAS or not isinstance(table, dict) or not any(k in table for k in _TOML_KEYS):
            continue
        for k in _TOML_KEYS:
            if k not in table:
                raise InputError(f"{path}: camera table [{key}] has no {k!r} key")
        name = str(table.get("name", key))
        where = f"{path}: camera {name!r}"
        cameras.append(
            _camera(
                where,
                name,
                size=table.get("size"),
                K=_numbers(where, "matrix", table["matrix"]),
                dist=_numbers(where, "distortions", table["distortions"]),
                R=_rotation(where, "rotation", _numbers(where, "rotation", table["rotation"])),
                t=_numbers(where, "translation", table["translation"]) * scale,
                fisheye=bool(table.get("fisheye", False)),
            )
        )
    if not cameras:
        raise InputError(f"{path}: no camera table (one with {', '.join(_TOML_KEYS)})")
    return cameras


def read_qualisys(
    path: str | os.PathLike, binning_factor: int = 1, scale_distortion: bool = True, video_only: bool = True
) -> list[CameraCalibration]:
    """Read a Qualisys QTM ``.qca.txt`` calibration, as Pose2Sim's ``calib_qca_fun`` does.

    ``<calibration><cameras><camera serial=.. model=..>`` holds ``<fov_video left top right
    bottom>`` (the video crop on the sensor, inclusive pixel bounds), ``<transform x y z r11
    .. r33>`` and ``<intrinsic focalLengthU focalLengthV centerPointU centerPointV
    radialDistortion1..3 tangentalDistortion1..2>``. Following Pose2Sim:

    - intrinsics are in 64x subpixels of the full sensor: ``fx = focalLengthU / 64 /
      binning``, ``cx = centerPointU / 64 / binning - left`` (the crop moves the principal
      point); ``size = ((right - left + 1), (bottom - top + 1)) / binning``.
    - ``(x, y, z)`` is the camera centre in world mm and ``Q[i, j] = r{i+1}{j+1}`` rotates world
      offsets into a camera frame whose y and z point the other way from OpenCV's; Pose2Sim's
      rotation by pi about x flips them: ``R = diag(1, -1, -1) @ Q``, ``t = -R @ centre``.
    - the distortion is ``(k1, k2, p1, p2, k3)``; Pose2Sim drops ``radialDistortion3`` (k3),
      which is 0 in the files seen, and it is kept here.
    - ``viewrotation`` is ignored: K describes the unrotated sensor image.

    Args:
        path: the ``.qca.txt`` file.
        binning_factor: 2 when the video was binned (e.g. 540p from a 1080p sensor).
        scale_distortion: divide the distortion coefficients by ``64 * binning_factor`` too,
            as Pose2Sim does, so a file reads as Pose2Sim converts it. Real files hold
            coefficients of the size of plain normalised ones (tenths), which would argue
            for False; Qualisys does not document it.
        video_only: keep only video cameras (``model`` containing "video", or "none" as
            Pose2Sim's ``calib_toml_to_qca`` writes), as Pose2Sim does.

    Returns:
        The cameras in natural order of their serial numbers.
    """
    path = _existing(path)
    root = read_input(path, lambda p: ET.parse(p).getroot(), "Qualisys XML calibration")
    calibration = root if root.tag == "calibration" else root.find(".//calibration")
    if calibration is None:
        raise InputError(f"{path}: no <calibration> element")
    elements = calibration.findall("cameras/camera")
    if video_only:
        elements = [e for e in elements if any(m in e.get("model", "").lower() for m in ("video", "none"))]
    if not elements:
        kind = "video camera (model containing 'video')" if video_only else "camera"
        raise InputError(f"{path}: no {kind} in <calibration><cameras>")
    subpixels = 64.0 * binning_factor
    cameras = []
    for element in elements:
        name = element.get("serial")
        if name is None:
            raise InputError(f"{path}: a <camera> has no 'serial' attribute")
        where = f"{path}: camera {name!r}"
        fov, intrinsic, transform = (_child(where, element, tag) for tag in ("fov_video", "intrinsic", "transform"))
        left, top, right, bottom = (_attr(where, fov, k) for k in ("left", "top", "right", "bottom"))
        fx, fy, cx, cy = (
            _attr(where, intrinsic, k) / subpixels
            for k in ("focalLengthU", "focalLengthV", "centerPointU", "centerPointV")
        )
        # Qualisys spells it "tangental"; take the dictionary spelling too.
        radial = [_attr(where, intrinsic, f"radialDistortion{i}", default=0.0 if i == 3 else None) for i in (1, 2, 3)]
        tangential = [_attr(where, intrinsic, f"tangentalDistortion{i}", f"tangentialDistortion{i}") for i in (1, 2)]
        dist = np.array([radial[0], radial[1], *tangential, radial[2]])
        centre = np.array([_attr(where, transform, k) for k in "xyz"])
        Q = np.array([[_attr(where, transform, f"r{i}{j}") for j in (1, 2, 3)] for i in (1, 2, 3)])
        R = _rotation(where, "transform r11..r33", np.diag([1.0, -1.0, -1.0]) @ Q)
        cameras.append(
            _camera(
                where,
                name,
                size=((right - left + 1) / binning_factor, (bottom - top + 1) / binning_factor),
                K=np.array([[fx, 0.0, cx - left], [0.0, fy, cy - top], [0.0, 0.0, 1.0]]),
                dist=dist / subpixels if scale_distortion else dist,
                R=R,
                t=-R @ centre,
            )
        )
    return sorted(cameras, key=lambda c: _natural_key(c.name))


def read_opencv(
    path: str | os.PathLike, units: str = "mm", extrinsics: str | os.PathLike | None = None
) -> list[CameraCalibration]:
    """Read an OpenCV ``cv::FileStorage`` file (YAML, XML or JSON) with ``cv2.FileStorage``.

    Three layouts, tried in this order:

    1. OpenCV's multiview sample (``samples/python/multiview_calibration.py``): stacked
       ``Ks`` (N, 3, 3), ``distortions``, ``rvecs`` (Rodrigues), ``Ts``, optional
       ``image_sizes`` (N, 2), ``is_fisheye`` (N,) and ``cam_ids`` ("a,b,c").
    2. EasyMocap: ``names`` (a list) with ``K_<name>``, ``dist_<name>`` (in ``intri.yml``) and
       ``Rot_<name>`` (3x3) or ``R_<name>`` (Rodrigues), ``T_<name>`` (in ``extri.yml``: pass it
       as ``extrinsics``). EasyMocap works in metres: pass ``units="m"``.
    3. One map per camera (named by its key), or the top level as a single camera named after
       the file: the intrinsics ``camera_matrix`` | ``cameraMatrix`` | ``K`` and
       ``distortion_coefficients`` | ``distCoeffs`` | ``dist_coeffs`` | ``dist`` | ``D``; the
       extrinsics ``R`` | ``rotation_matrix`` (3x3, or a Rodrigues 3-vector) | ``rvec`` and
       ``T`` | ``t`` | ``tvec``; the size ``image_width`` and ``image_height``, or
       ``image_size`` [w, h]; ``fisheye`` | ``is_fisheye`` | ``fisheye_model`` (non-zero for
       fisheye). A camera with neither R nor T (an intrinsics-only file, as OpenCV's
       calibration sample writes) gets R = I, t = 0: the world frame is the camera's.

    Args:
        path: the FileStorage file.
        units: the unit of T, "m", "cm" or "mm" (default "mm"; the files do not say).
        extrinsics: a second FileStorage file whose top-level nodes join the first's
            (EasyMocap's ``extri.yml``).

    Returns:
        The cameras in the file's order.
    """
    files = [_existing(path)] + ([_existing(extrinsics)] if extrinsics is not None else [])
    scale = MM_PER_UNIT[_resolve_units(files[0], units, None, default="mm")]
    storages = [read_input(file, _open_storage, "OpenCV FileStorage file") for file in files]
    try:  # a FileNode reads through its FileStorage: keep them open until the cameras are built
        return _opencv_cameras(files, storages, scale)
    finally:
        for storage in storages:
            storage.release()


def write_toml(path: str | os.PathLike, cameras: list[CameraCalibration], units: str = "m") -> None:
    """Write cameras as a calibration TOML that Pose2Sim and anipose read.

    The layout of Pose2Sim's ``toml_write`` (one table per camera with ``name``, ``size``,
    ``matrix``, ``distortions``, ``rotation`` as a Rodrigues vector, ``translation``,
    ``fisheye``; then ``[metadata]`` with ``adjusted`` and ``error``), plus ``units`` in the
    metadata so :func:`read_toml` needs no argument. Tables are ``cam_1``, ``cam_2``, ...
    zero-padded so that anipose's ``CameraGroup.load``, which sorts the table names, keeps
    the order. Four non-fisheye coefficients are padded to five (k3 = 0): anipose unpacks
    five.

    Args:
        path: the file to write.
        cameras: the cameras; each needs a ``size`` (both tools read it).
        units: the unit to write translations in, "m" (Pose2Sim's, the default), "cm" or
            "mm" (for an anipose project whose board was measured in mm).
    """
    scale = MM_PER_UNIT[_resolve_units(Path(path), units, None, default="m")]
    width = len(str(len(cameras)))
    lines = []
    for i, cam in enumerate(cameras, 1):
        if cam.size is None:
            raise InputError(f"{path}: camera {cam.name!r} has no image size, which Pose2Sim and anipose need")
        dist = cam.dist if cam.fisheye or len(cam.dist) != 4 else np.append(cam.dist, 0.0)
        lines += [
            f"[cam_{i:0{width}d}]",
            f"name = {json.dumps(cam.name)}",  # a JSON string is a valid TOML basic string
            f"size = [ {int(cam.size[0])}, {int(cam.size[1])}]",
            "matrix = [ " + ", ".join(_toml_list(row) for row in cam.K) + "]",
            f"distortions = {_toml_list(dist)}",
            f"rotation = {_toml_list(cv2.Rodrigues(cam.R)[0].ravel())}",
            f"translation = {_toml_list(cam.t / scale)}",
            f"fisheye = {'true' if cam.fisheye else 'false'}",
            "",
        ]
    lines += ["[metadata]", "adjusted = false", "error = 0.0", f'units = "{units}"', ""]
    Path(path).write_text("\n".join(lines))


def undistort_points(uv: np.ndarray, camera: CameraCalibration) -> np.ndarray:
    """Remove lens distortion from pixel coordinates, keeping the same K.

    Args:
        uv: (..., 2) distorted pixels (u = column, v = row).
        camera: the camera whose ``K`` and ``dist`` (and ``fisheye``) apply.

    Returns:
        (..., 2) float64 pixels where an ideal pinhole camera with the same K would see
        them: ``cv2.undistortPoints(.., P=K)``, or ``cv2.fisheye.undistortPoints``. A copy of
        ``uv`` when ``dist`` is all zero.
    """
    uv = np.asarray(uv, np.float64)
    if uv.shape[-1:] != (2,):
        raise ValueError(f"uv must have shape (..., 2), got {uv.shape}")
    if uv.size == 0 or not np.any(camera.dist):
        return uv.copy()
    points = np.ascontiguousarray(uv.reshape(-1, 1, 2))
    if camera.fisheye:
        out = cv2.fisheye.undistortPoints(points, camera.K, camera.dist, P=camera.K)
    elif hasattr(cv2, "undistortPointsIter"):  # OpenCV 4 takes the criteria in a separate function
        out = cv2.undistortPointsIter(points, camera.K, camera.dist, None, camera.K, _UNDISTORT_CRITERIA)
    else:
        out = cv2.undistortPoints(points, camera.K, camera.dist, P=camera.K, criteria=_UNDISTORT_CRITERIA)
    return out.reshape(uv.shape)


# -- checks shared by the readers -------------------------------------------------------------


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    return path


def _resolve_units(path: Path, given: str | None, in_file: str | None, default: str) -> str:
    if in_file is not None and in_file not in MM_PER_UNIT:
        raise InputError(f"{path}: metadata units {in_file!r} is not one of {', '.join(MM_PER_UNIT)}")
    if given is None:
        return in_file or default
    if given not in MM_PER_UNIT:
        raise InputError(f"{path}: units={given!r} is not one of {', '.join(MM_PER_UNIT)}")
    if in_file is not None and given != in_file:
        raise InputError(f"{path}: units={given!r} was given but the file's metadata says {in_file!r}")
    return given


def _numbers(where: str, key: str, value) -> np.ndarray:
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {key} is not a numeric array ({value!r:.60})") from None


def _rotation(where: str, key: str, value: np.ndarray) -> np.ndarray:
    """A Rodrigues 3-vector or a 3x3 matrix -> (3, 3), checked to be a rotation."""
    if value.size != 3 and value.shape != (3, 3):
        raise InputError(f"{where}: {key} has shape {value.shape}, not a Rodrigues 3-vector or a 3x3 matrix")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{where}: {key} has non-finite values")
    if value.size == 3:
        return cv2.Rodrigues(value.reshape(3, 1))[0]
    # Files print rotations to about 6 decimals, so a rotation is orthonormal to ~1e-6.
    error = np.abs(value @ value.T - np.eye(3)).max()
    if error > 1e-4 or np.linalg.det(value) < 0:
        raise InputError(
            f"{where}: {key} is not a rotation (|R R^T - I| = {error:.2g}, det = {np.linalg.det(value):.3g})"
        )
    return value


def _camera(where, name, size, K, dist, R, t, fisheye=False) -> CameraCalibration:
    K, dist, t = (np.asarray(a, np.float64) for a in (K, dist, t))
    dist = dist.reshape(-1)
    t = t.reshape(-1) if t.size == 3 else t  # (3, 1) columns are common; other shapes fail below
    for key, value in (("K", K), ("distortion", dist), ("translation", t)):
        if not np.all(np.isfinite(value)):
            raise InputError(f"{where}: {key} has non-finite values")
    if K.shape != (3, 3):
        raise InputError(f"{where}: camera matrix has shape {K.shape}, expected (3, 3)")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{where}: camera matrix is not [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0")
    allowed = (4,) if fisheye else (4, 5, 8, 12, 14)
    if dist.size not in allowed:
        model = "fisheye" if fisheye else "OpenCV"
        raise InputError(f"{where}: {dist.size} distortion coefficients; the {model} model takes {allowed}")
    if t.shape != (3,):
        raise InputError(f"{where}: translation has shape {t.shape}, expected 3 values")
    if size is not None:
        size = _numbers(where, "size", size).reshape(-1)
        if size.shape != (2,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise InputError(f"{where}: image size {size.tolist()} is not two positive numbers (width, height)")
        size = (int(round(size[0])), int(round(size[1])))
    return CameraCalibration(str(name), size, K, dist, np.asarray(R, np.float64), t, bool(fisheye))


# -- Qualisys ----------------------------------------------------------------------------------


def _child(where: str, element: ET.Element, tag: str) -> ET.Element:
    child = element.find(tag)
    if child is None:
        raise InputError(f"{where}: no <{tag}> element")
    return child


def _attr(where: str, element: ET.Element, *names: str, default: float | None = None) -> float:
    for name in names:
        if name in element.attrib:
            try:
                return float(element.attrib[name])
            except ValueError:
                raise InputError(f"{where}: <{element.tag} {name}={element.attrib[name]!r}> is not a number") from None
    if default is not None:
        return default
    raise InputError(f"{where}: <{element.tag}> has no {names[0]!r} attribute")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


# -- OpenCV FileStorage ------------------------------------------------------------------------


def _open_storage(path: Path) -> cv2.FileStorage:
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as error:  # the binding wraps OpenCV's parse error in a SystemError
        cause = error.__cause__ or error
        # OpenCV's message: "OpenCV(x) <source>:<line>: error: (-212:Parsing error) <what>"; keep <what>.
        raise ValueError(" ".join(str(cause).split("error: ", 1)[-1].split())) from error
    if not storage.isOpened():
        raise ValueError("cv2.FileStorage could not open it")
    return storage


def _children(node: cv2.FileNode) -> dict:
    return {key: node.getNode(key) for key in node.keys()}


def _pick(nodes: dict, names: tuple[str, ...]):
    for name in names:
        if name in nodes and not nodes[name].empty():
            return name, nodes[name]
    return None, None


def _node_array(where: str, key: str, node: cv2.FileNode) -> np.ndarray:
    """A matrix, a number or a (nested) sequence of numbers -> float64 array."""
    if node.isSeq():
        return np.array([_node_array(where, key, node.at(i)) for i in range(node.size())], np.float64)
    if node.isInt() or node.isReal():
        return np.array(node.real())
    matrix = node.mat() if node.isMap() else None
    if matrix is None:
        raise InputError(f"{where}: node {key!r} is not a matrix or a number")
    return np.asarray(matrix, np.float64)


def _opencv_cameras(files: list[Path], storages: list[cv2.FileStorage], scale: float) -> list[CameraCalibration]:
    nodes = {}
    for storage in storages:
        root = storage.root()
        for key in root.keys():
            nodes.setdefault(key, root.getNode(key))
    where = " + ".join(str(file) for file in files)
    if "Ks" in nodes:
        cameras = _opencv_multiview(where, nodes, scale)
    elif "names" in nodes and nodes["names"].isSeq():
        cameras = _opencv_easymocap(where, nodes, scale)
    else:
        maps = {k: _children(n) for k, n in nodes.items() if n.isMap() and _pick(_children(n), _K_NAMES)[1] is not None}
        if not maps and _pick(nodes, _K_NAMES)[1] is not None:
            maps = {files[0].name.split(".")[0]: nodes}
        if not maps:
            raise InputError(
                f"{where}: no camera found (expected per-camera maps with {' | '.join(_K_NAMES)}, "
                "EasyMocap 'names' + K_<name>, or OpenCV multiview 'Ks')"
            )
        cameras = [_opencv_map(f"{where}: camera {name!r}", name, d, scale) for name, d in maps.items()]
    return cameras


def _opencv_map(where: str, name: str, nodes: dict, scale: float) -> CameraCalibration:
    k_key, k_node = _pick(nodes, _K_NAMES)
    d_key, d_node = _pick(nodes, _DIST_NAMES)
    if d_node is None:
        raise InputError(f"{where}: no distortion node ({' | '.join(_DIST_NAMES)})")
    r_key, r_node = _pick(nodes, _R_NAMES)
    t_key, t_node = _pick(nodes, _T_NAMES)
    if (r_node is None) != (t_node is None):
        missing = " | ".join(_T_NAMES) if t_node is None else " | ".join(_R_NAMES)
        raise InputError(f"{where}: has {r_key or t_key!r} but no {missing}")
    R, t = np.eye(3), np.zeros(3)
    if r_node is not None:
        R = _rotation(where, r_key, _node_array(where, r_key, r_node))
        t = _node_array(where, t_key, t_node) * scale
    size = None
    if "image_width" in nodes and "image_height" in nodes:
        size = [_node_array(where, k, nodes[k]) for k in ("image_width", "image_height")]
    elif _pick(nodes, ("image_size", "size"))[1] is not None:
        size = _node_array(where, "image_size", _pick(nodes, ("image_size", "size"))[1])
    f_key, f_node = _pick(nodes, _FISHEYE_NAMES)
    fisheye = f_node is not None and bool(_node_array(where, f_key, f_node))
    K = _node_array(where, k_key, k_node)
    return _camera(where, name, size, K, _node_array(where, d_key, d_node), R, t, fisheye)


def _opencv_easymocap(where: str, nodes: dict, scale: float) -> list[CameraCalibration]:
    names_node = nodes["names"]
    names = []
    for i in range(names_node.size()):  # EasyMocap reads numeric names as integers
        item = names_node.at(i)
        names.append(item.string() if item.isString() else str(int(item.real())))
    cameras = []
    for name in names:
        per_camera = {}
        for key, prefix in (("K", "K_"), ("dist", "dist_"), ("T", "T_")):
            if f"{prefix}{name}" not in nodes:
                raise InputError(f"{where}: camera {name!r} has no node '{prefix}{name}'")
            per_camera[key] = nodes[f"{prefix}{name}"]
        rotation = nodes.get(f"Rot_{name}", nodes.get(f"R_{name}"))
        if rotation is None:
            raise InputError(f"{where}: camera {name!r} has neither 'Rot_{name}' nor 'R_{name}'")
        per_camera["R"] = rotation
        cameras.append(_opencv_map(f"{where}: camera {name!r}", name, per_camera, scale))
    return cameras


def _opencv_multiview(where: str, nodes: dict, scale: float) -> list[CameraCalibration]:
    for key in ("distortions", "rvecs", "Ts"):
        if key not in nodes:
            raise InputError(f"{where}: has 'Ks' but no {key!r} (OpenCV multiview layout)")
    Ks = _node_array(where, "Ks", nodes["Ks"]).reshape(-1, 3, 3)
    n = len(Ks)
    dists = _node_array(where, "distortions", nodes["distortions"]).reshape(n, -1)
    rvecs = _node_array(where, "rvecs", nodes["rvecs"]).reshape(n, -1)
    Ts = _node_array(where, "Ts", nodes["Ts"]).reshape(n, -1)
    sizes = _node_array(where, "image_sizes", nodes["image_sizes"]).reshape(n, 2) if "image_sizes" in nodes else None
    fisheye = _node_array(where, "is_fisheye", nodes["is_fisheye"]).reshape(n) if "is_fisheye" in nodes else None
    ids = nodes["cam_ids"].string().split(",") if "cam_ids" in nodes else []
    names = ids if len(ids) == n else [f"cam_{i}" for i in range(n)]
    cameras = []
    for i, name in enumerate(names):
        w = f"{where}: camera {name!r}"
        cameras.append(
            _camera(
                w,
                name,
                size=None if sizes is None else sizes[i],
                K=Ks[i],
                dist=dists[i],
                R=_rotation(w, "rvecs", rvecs[i]),
                t=Ts[i] * scale,
                fisheye=fisheye is not None and bool(fisheye[i]),
            )
        )
    return cameras


def _toml_list(values) -> str:
    # repr keeps every digit of a float and is valid TOML (1.5, 1e-05, -0.0).
    return "[ " + ", ".join(repr(float(v)) for v in values) + "]"
