"""A static rig's calibration from the people it films: no calibration object, no initial guess.

Studio cameras stay put for thousands of frames. Pooled over those frames, the 2D joints of
the people walking through the capture volume fill it with correspondences, which pin
down every camera's pose far better than one frame's 17 joints of a person 4 m away
(nearly an affine view) can. :func:`calibrate_rig` finds the rig in four steps:

1. two views: the essential matrix (RANSAC) of the pair of cameras that see the most
   joints together, its relative pose, and those joints triangulated;
2. every other camera from those 3D joints (PnP with RANSAC);
3. rounds of: left/right swaps resolved view by view (a detector's swap makes a view's
   joints fit better mirrored, against the joints the other views triangulate), a robust
   bundle adjustment of the cameras (Cauchy loss in pixels, scale set from the residuals;
   Levenberg-Marquardt with the joints eliminated by the Schur complement, batched over
   every frame), optionally each camera's frame offset (the shift of its stream that its
   joints fit best) and focal length;
4. the scale: the skeleton's mean bone lengths over the median of the triangulated ones.

Conventions: world-to-camera ``P_c = R_c P + t_c`` with camera 0's frame as the world
(``R[0] = I``, ``t[0] = 0``), millimetres; pixels as in ws3d.camera. Everything is float64
torch on the CPU; joints are the 17 of ws3d.skeleton.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from ws3d.geometry import rays, rodrigues, rotation_angle_deg, skew
from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, MIRRORED, NUM_JOINTS

RANSAC_PX = 10.0  # inlier threshold of the two-view and PnP RANSAC, pixels
MIN_SCALE_PX = 1.0  # the robust loss's scale never drops below this many pixels
ROUNDS = 4  # rounds of swap resolution and bundle adjustment
BA_ITERS = 20  # Levenberg-Marquardt iterations per round
INLIER_SCALES = 3.0  # a joint is an inlier within this many robust scales of its fit
RANSAC_SAMPLES = 20000  # correspondences that RANSAC draws from (the rest are only more of the same)
START_PAIRS = 3  # camera pairs a starting rig is tried from


@dataclass(frozen=True)
class RigCalibration:
    """What :func:`calibrate_rig` found (C cameras, F frames in camera 0's time).

    Attributes:
        R: (C, 3, 3) world-to-camera rotations, camera 0's frame is the world (R[0] = I).
        t: (C, 3) world-to-camera translations, mm (t[0] = 0).
        K: (C, 3, 3) intrinsics (the given ones, focal lengths refined when asked).
        reprojection_px: (C,) median distance of each camera's detected joints from the
            fitted joints' projections, pixels.
        inlier_share: (C,) share of each camera's detected joints within ``inlier_px``.
        inlier_px: the inlier threshold: ``INLIER_SCALES`` times the robust scale of the
            final residuals.
        offsets: (C,) int, frames by which each camera's stream runs late against camera
            0's (its frame f shows camera 0's frame f + offsets[c]); zeros unless searched.
        swapped: (F, C) bool, the views found with left and right exchanged, relative to
            the others (a frame whose views all agree is not flipped).
        X: (F, 17, 3) the fitted joints in camera 0's frame, mm; NaN where fewer than two
            cameras saw the joint.
    """

    R: Tensor
    t: Tensor
    K: Tensor
    reprojection_px: Tensor
    inlier_share: Tensor
    inlier_px: float
    offsets: Tensor
    swapped: Tensor
    X: Tensor


def calibrate_rig(uv, w, K, *, resolve_swaps: bool = True, max_offset: int = 0, refine_focal: bool = False,
                  max_frames: int = 1000, seed: int = 0) -> RigCalibration:  # fmt: skip
    """Every camera's pose from the 2D joints of the people it films over many frames.

    Args:
        uv: (F, C, 17, 2) detected joints, pixels; torch tensor or numpy array.
        w: (F, C, 17) >= 0 detection weights (0 = missed); confidences work too.
        K: (C, 3, 3) intrinsics of undistorted images.
        resolve_swaps: find the views whose left and right are exchanged and use them
            mirrored (a detector's swap otherwise pulls the fit).
        max_offset: search each camera's frame offset against camera 0 within +-this
            many frames (streams out of step); 0 assumes them in step.
        refine_focal: also fit each camera's focal length (fx = fy scaled together).
        max_frames: the most frames (evenly spread) that the pose solves use; swaps, the
            fitted joints and the statistics cover them all.
        seed: RANSAC's random seed.

    Returns:
        :class:`RigCalibration`.

    Raises:
        ValueError: shapes, fewer than 2 cameras, NaN or inf in a detected joint, negative
            weights, or cameras that share too few joints to be placed.
    """
    uv, w, K = _check(uv, w, K)
    F, C, J, _ = uv.shape
    cv2.setRNGSeed(seed)
    flip = torch.zeros(F, C, dtype=torch.bool)
    offsets = torch.zeros(C, dtype=torch.long)
    # The solves use at most max_frames frames, evenly spread over the footage; swaps, the
    # fitted joints and the statistics cover every frame.
    rows = torch.linspace(0, F - 1, min(F, max_frames)).round().long().unique()
    R, t = _initial_rig(uv[rows], w[rows], K)
    scale = RANSAC_PX
    for round_ in range(ROUNDS):
        if resolve_swaps:
            flip = _swaps(uv, w, offsets, R, t, K, scale)
        u, v = (a[rows] for a in _aligned(uv, w, flip, offsets))
        X = _triangulate(rays(u, K), v, R, t, K, u, scale)
        R, t, K, X, scale = _bundle_adjust(u, v, K, R, t, X, refine_focal)
        if max_offset and round_ < ROUNDS - 1:  # each round's better rig places the streams better
            offsets = _offsets(uv, w, flip, K, R, t, scale, max_offset, rows)
    u, v = _aligned(uv, w, flip, offsets)
    X = _triangulate(rays(u, K), v, R, t, K, u, scale)
    s = _metric_scale(X)
    R, t, X = R, t * s, X * s
    error = _reprojection(X, R, t, K, u)
    return _summary(R, t, K, X, error, v, scale, offsets, flip)


def compare_rigs(R, t, R_ref, t_ref) -> tuple[Tensor, Tensor, Tensor]:
    """How far a rig is from a reference rig of the same cameras, both in any world frame:
    each seen from its own camera 0.

    Args:
        R, t: (C, 3, 3), (C, 3) world-to-camera, the rig to judge (mm or any unit).
        R_ref, t_ref: the same cameras' reference (a calibration file's, the truth's).

    Returns:
        For cameras 1..C-1: the rotation error (degrees) of each camera's rotation relative
        to camera 0, the angle (degrees) between its baseline from camera 0 and the
        reference's, and the ratio of the two baselines' lengths (the scale).
    """
    R, t, R_ref, t_ref = (torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).double()
                          for a in (R, t, R_ref, t_ref))  # fmt: skip

    def from_camera_0(R, t):  # rotations relative to camera 0, and camera centres in its frame
        R_rel = R @ R[0].T
        centres = -torch.einsum("cba,cb->ca", R_rel, t - torch.einsum("cab,b->ca", R_rel, t[0]))
        return R_rel[1:], centres[1:]

    (R, centres), (R_ref, centres_ref) = from_camera_0(R, t), from_camera_0(R_ref, t_ref)
    cos = (centres * centres_ref).sum(-1) / (centres.norm(dim=-1) * centres_ref.norm(dim=-1))
    baseline = torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))
    return rotation_angle_deg(R @ R_ref.mT), baseline, centres.norm(dim=-1) / centres_ref.norm(dim=-1)


def _check(uv, w, K) -> tuple[Tensor, Tensor, Tensor]:
    uv, w, K = (torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a).double() for a in (uv, w, K))
    if uv.dim() != 4 or uv.shape[2:] != (NUM_JOINTS, 2):
        raise ValueError(f"uv must have shape (F, C, {NUM_JOINTS}, 2), got {tuple(uv.shape)}")
    F, C = uv.shape[:2]
    if w.shape != (F, C, NUM_JOINTS):
        raise ValueError(f"w must have shape (F, C, {NUM_JOINTS}) = {(F, C, NUM_JOINTS)}, got {tuple(w.shape)}")
    if K.shape != (C, 3, 3):
        raise ValueError(f"K must have shape (C, 3, 3) = {(C, 3, 3)}, got {tuple(K.shape)}")
    if C < 2:
        raise ValueError(f"a rig needs at least 2 cameras, got {C}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("w must be finite and >= 0")
    bad = (~torch.isfinite(uv).all(-1)) & (w > 0)
    if bad.any():
        f, c, j = bad.nonzero()[0].tolist()
        raise ValueError(f"uv has a NaN or inf where w > 0 (frame {f}, camera {c}, joint {j}); give it w = 0")
    if not torch.isfinite(K).all():
        raise ValueError("K must be finite")
    return torch.where(w[..., None] > 0, uv, 0.0), w, K


def _aligned(uv: Tensor, w: Tensor, flip: Tensor, offsets: Tensor) -> tuple[Tensor, Tensor]:
    """The detections in camera 0's time, with flipped views mirrored: camera c's row f is
    its frame f - offsets[c] (weight 0 where that frame does not exist)."""
    uv = torch.where(flip[..., None, None], uv[:, :, MIRRORED], uv)
    w = torch.where(flip[..., None], w[:, :, MIRRORED], w)
    F = len(uv)
    frames = torch.arange(F)[:, None] - offsets[None, :]  # (F, C)
    inside = (frames >= 0) & (frames < F)
    index = frames.clamp(0, F - 1)
    cams = torch.arange(uv.shape[1])[None, :]
    return uv[index, cams], w[index, cams] * inside[..., None]


def _initial_rig(uv: Tensor, w: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Rotations and translations (unit baseline of the starting pair): from each of the
    START_PAIRS camera pairs that share the most joints, two views and PnP; of those
    starts, the one whose triangulated joints reproject best (Cauchy cost, RANSAC_PX).

    One pair is not enough: people in a volume a few metres across, seen from 4-6 m, fill
    a narrow field of view, where an essential matrix trades rotation for translation, and
    noise plus a few outlier joints can tip it tens of degrees off.
    """
    F, C, J, _ = uv.shape
    x = rays(uv, K)
    seen = w > 0
    shared = torch.einsum("fcj,fdj->cd", seen.double(), seen.double()).triu(1)
    order = shared.flatten().argsort(descending=True)[: min(START_PAIRS, C * (C - 1) // 2)]
    best, failures = None, []
    for index in order.tolist():
        a, b = divmod(index, C)
        try:
            R, t = _rig_from_pair(x, uv, w, K, a, b)
        except ValueError as error:
            failures.append(str(error))
            continue
        X = _triangulate(x, w, R, t, K, uv, RANSAC_PX)
        error = _reprojection(X, R, t, K, uv)
        use = (w > 0) & torch.isfinite(error)
        cost = float(torch.log1p((error[use] / RANSAC_PX).square()).mean()) if use.any() else np.inf
        if best is None or cost < best[0]:
            best = (cost, R, t)
    if best is None:
        raise ValueError("no camera pair gave a starting rig: " + "; ".join(failures))
    return best[1], best[2]


def _rig_from_pair(x: Tensor, uv: Tensor, w: Tensor, K: Tensor, a: int, b: int) -> tuple[Tensor, Tensor]:
    """A starting rig from cameras a and b: their essential matrix (OpenCV's USAC, which
    refines its model on the inliers, where plain RANSAC keeps a five-point minimal one),
    the joints they triangulate, then every other camera by PnP (RANSAC, refined on its
    inliers) from the joints the cameras placed so far triangulate. Camera 0 is the world."""
    C = uv.shape[1]
    seen = w > 0
    both = (seen[:, a] & seen[:, b]).reshape(-1)
    if both.sum() < 8:
        raise ValueError(f"cameras {a} and {b} share {int(both.sum())} joints: a rig needs its cameras to see the "
                         "same people")  # fmt: skip
    focal = float(K[:, [0, 1], [0, 1]].mean())
    pa, pb = (_sample(x[:, c].reshape(-1, 3)[both][:, :2]) for c in (a, b))
    E, mask = cv2.findEssentialMat(pa, pb, np.eye(3), method=cv2.USAC_ACCURATE, prob=0.9999,
                                   threshold=RANSAC_PX / focal)  # fmt: skip
    if E is None:
        raise ValueError(f"no essential matrix between cameras {a} and {b}")
    _, R_ab, t_ab, _ = cv2.recoverPose(E[:3], pa, pb, np.eye(3), mask=mask)
    R = torch.eye(3, dtype=torch.float64).repeat(C, 1, 1)
    t = torch.zeros(C, 3, dtype=torch.float64)
    R[b], t[b] = torch.from_numpy(R_ab) @ R[a], torch.from_numpy(t_ab[:, 0])
    placed = torch.zeros(C, dtype=torch.bool)
    placed[[a, b]] = True
    while not placed.all():
        X = _triangulate(x, w * placed[None, :, None], R, t, K, uv, RANSAC_PX)
        ok = torch.isfinite(X).all(-1)  # (F, J)
        counts = torch.stack([(ok & seen[:, c]).sum() for c in range(C)]).masked_fill(placed, -1)
        c = int(counts.argmax())
        use = (ok & seen[:, c]).reshape(-1)
        if use.sum() < 6:
            raise ValueError(f"camera {c} sees {int(use.sum())} of the joints the others triangulate: too few")
        objects = _sample(X.reshape(-1, 3)[use])
        images = _sample(x[:, c].reshape(-1, 3)[use][:, :2])
        found, rvec, tvec, inliers = cv2.solvePnPRansac(objects, images, np.eye(3), None, iterationsCount=2000,
                                                        reprojectionError=RANSAC_PX / focal, confidence=0.9999,
                                                        flags=cv2.SOLVEPNP_EPNP)  # fmt: skip
        if not found or inliers is None or len(inliers) < 6:
            raise ValueError(f"camera {c} could not be placed from the joints the others triangulate")
        inliers = inliers[:, 0]
        rvec, tvec = cv2.solvePnPRefineLM(objects[inliers], images[inliers], np.eye(3), None, rvec, tvec)
        R[c] = torch.from_numpy(cv2.Rodrigues(rvec)[0])
        t[c] = torch.from_numpy(tvec[:, 0])
        placed[c] = True
    R0, t0 = R[0].clone(), t[0].clone()
    return R @ R0.T, t - torch.einsum("cab,b->ca", R @ R0.T, t0)


def _sample(points: Tensor) -> np.ndarray:
    """At most RANSAC_SAMPLES rows, evenly spread, as a contiguous numpy array."""
    step = max(len(points) // RANSAC_SAMPLES, 1)
    return np.ascontiguousarray(points[::step].numpy())


def _project(X: Tensor, R: Tensor, t: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels (F, C, J, 2) of joints X (F, J, 3) in every camera, and their depths (F, C, J)."""
    P = torch.einsum("cab,fjb->fcja", R, X) + t[None, :, None]
    h = torch.einsum("cab,fcjb->fcja", K, P)
    return h[..., :2] / h[..., 2:], P[..., 2]


def _reprojection(X: Tensor, R: Tensor, t: Tensor, K: Tensor, uv: Tensor) -> Tensor:
    """Distances (F, C, J) in pixels between detections and projected joints (inf behind a camera or NaN joints)."""
    projected, depth = _project(torch.nan_to_num(X), R, t, K)
    error = (projected - uv).norm(dim=-1)
    return torch.where((depth > 0) & torch.isfinite(X).all(-1)[:, None], error, torch.inf)


def _triangulate(x: Tensor, w: Tensor, R: Tensor, t: Tensor, K: Tensor, uv: Tensor, scale: float,
                 iters: int = 3) -> Tensor:  # fmt: skip
    """Joints (F, J, 3) closest to their rays, robustly: each view's squared distance to the
    joint, in pixels at the joint's depth, with Cauchy weights of scale ``scale`` px from
    the previous estimate. NaN where fewer than two views see a joint."""
    unit = x / x.norm(dim=-1, keepdim=True)
    r = torch.einsum("cba,fcjb->fcja", R, unit)  # rays in the world frame
    centre = -torch.einsum("cba,cb->ca", R, t)  # camera centres
    proj = torch.eye(3, dtype=x.dtype) - r[..., :, None] * r[..., None, :]  # (F, C, J, 3, 3)
    focal = K[:, [0, 1], [0, 1]].mean(-1)  # px per unit distance / depth
    weight = w.clone()
    X = None
    for _ in range(iters):
        A = (weight[..., None, None] * proj).sum(1)
        # A joint one view sees has a singular A; the ridge keeps its solve finite (it is NaN below).
        A = A + (1e-9 * A.diagonal(dim1=-2, dim2=-1).sum(-1) + 1e-30)[..., None, None] * torch.eye(3, dtype=x.dtype)
        b = (weight[..., None, None] * proj @ centre[None, :, None, :, None]).sum(1)[..., 0]
        X = torch.linalg.solve(A, b)
        depth = torch.einsum("cab,fjb->fcja", R, X)[..., 2] + t[None, :, None, 2]
        error = _reprojection(X, R, t, K, uv)
        pixel = (focal[None, :, None] / depth.abs().clamp_min(1e-9)) ** 2  # distance^2 -> pixels^2
        robust = 1 / (1 + (error / scale).square())
        weight = w * pixel * torch.nan_to_num(robust, nan=0.0)
    views = ((w > 0) & (weight > 0)).sum(1)
    return torch.where((views >= 2)[..., None], X, torch.nan)


def _fundamental(R: Tensor, t: Tensor, K: Tensor, c: int, d: int) -> Tensor:
    """The fundamental matrix (3, 3) of cameras c and d: x_d^T F x_c = 0 for pixels x."""
    R_cd = R[d] @ R[c].T
    t_cd = t[d] - R_cd @ t[c]
    return torch.linalg.inv(K[d]).T @ skew(t_cd) @ R_cd @ torch.linalg.inv(K[c])


def _epipolar_cost(x_c: Tensor, x_d: Tensor, fundamental: Tensor, use: Tensor, scale: float) -> Tensor:
    """Cauchy cost (...) of the symmetric epipolar distances of homogeneous pixels x_c, x_d
    (..., J, 3), summed over the joints ``use`` (..., J) marks."""
    line_d = x_c @ fundamental.T  # epipolar lines in view d
    line_c = x_d @ fundamental  # ... and in view c
    algebraic = (x_d * line_d).sum(-1)
    distance2 = algebraic.square() * (1 / line_d[..., :2].square().sum(-1).clamp_min(1e-30)
                                      + 1 / line_c[..., :2].square().sum(-1).clamp_min(1e-30))  # fmt: skip
    return (torch.log1p(distance2 / scale**2) * use).sum(-1)


def _homogeneous(uv: Tensor) -> Tensor:
    return torch.cat([uv, torch.ones_like(uv[..., :1])], -1)


def _swaps(uv: Tensor, w: Tensor, offsets: Tensor, R: Tensor, t: Tensor, K: Tensor, scale: float) -> Tensor:
    """(F, C) bool: the views to mirror, so that every pair of views agrees best.

    For each pair of cameras and frame, the Cauchy cost of the symmetric epipolar distances
    of the joints both see, as labelled and with one view mirrored; then, per frame, the
    assignment of mirrored views (all 2^C) whose pairs cost least, of an assignment and its
    complement the one that mirrors fewer views.
    """
    u, v = _aligned(uv, w, torch.zeros(uv.shape[:2], dtype=torch.bool), offsets)
    F, C = u.shape[:2]
    h = _homogeneous(u)
    mirrored = list(MIRRORED)
    pairs = [(c, d) for c in range(C) for d in range(c + 1, C)]
    costs = torch.zeros(len(pairs), 2, F, dtype=u.dtype)  # (pair, same / one mirrored, frame)
    for i, (c, d) in enumerate(pairs):
        fundamental = _fundamental(R, t, K, c, d)
        both = (v[:, c] > 0) & (v[:, d] > 0) & (v[:, d, mirrored] > 0)  # the same joints either way
        for k, order in enumerate((list(range(NUM_JOINTS)), mirrored)):
            costs[i, k] = _epipolar_cost(h[:, c], h[:, d, order], fundamental, both, scale)
    assignments = torch.tensor([[(a >> c) & 1 for c in range(C)] for a in range(2**C)], dtype=torch.bool)
    index = torch.tensor([[int(a[c] ^ a[d]) for c, d in pairs] for a in assignments.tolist()])  # (2^C, pairs)
    total = costs[torch.arange(len(pairs))[None, :], index].sum(1)  # (2^C, F)
    total = total + 1e-9 * assignments.sum(1, keepdim=True)  # ties: mirror fewer views
    aligned = assignments[total.argmin(0)]  # (F, C), in camera 0's time
    # Back to each camera's own frames.
    flip = torch.zeros(F, C, dtype=torch.bool)
    for c in range(C):
        frame = torch.arange(F) - offsets[c]
        inside = (frame >= 0) & (frame < F)
        flip[frame[inside], c] = aligned[inside, c]
    return flip


def _bundle_adjust(uv: Tensor, w: Tensor, K: Tensor, R: Tensor, t: Tensor, X: Tensor,
                   refine_focal: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:  # fmt: skip
    """Levenberg-Marquardt on the Cauchy reprojection error over every camera but camera 0
    (rotation, translation, optionally the focal length) and every joint, the joints
    eliminated by the Schur complement. The loss's scale is set once, from the residuals
    at the start. Returns R, t, K, X and that scale."""
    F, C, J, _ = uv.shape
    k = 7 if refine_focal else 6
    fitted = torch.isfinite(X).all(-1)  # (F, J): joints that two or more views see
    w = w * fitted[:, None]
    X = torch.nan_to_num(X)
    error = _reprojection(X, R, t, K, uv)
    seen = (w > 0) & torch.isfinite(error)
    scale = max(float(error[seen].median()) * 2.0, MIN_SCALE_PX) if seen.any() else RANSAC_PX

    def cost(X, R, t, K):
        e = _reprojection(X, R, t, K, uv)
        return float((w * torch.log1p((e / scale).square())).nan_to_num(posinf=1e6).sum())

    current = cost(X, R, t, K)
    free = torch.ones(C, k, dtype=torch.bool)
    free[0, :6] = False  # camera 0 is the world: its pose stays (its focal length may not)
    free = free.reshape(-1)
    lam = 1e-3
    for _ in range(BA_ITERS):
        P = torch.einsum("cab,fjb->fcja", R, X) + t[None, :, None]
        h = torch.einsum("cab,fcjb->fcja", K, P)
        z = h[..., 2].clamp_min(1e-9)
        e = h[..., :2] / z[..., None] - uv
        robust = w / (1 + e.square().sum(-1) / scale**2)  # IRLS weights of the Cauchy loss
        robust = torch.where(P[..., 2] > 0, robust, 0.0)
        dpi = torch.zeros(F, C, J, 2, 3, dtype=uv.dtype)
        dpi[..., 0, 0] = dpi[..., 1, 1] = 1 / z
        dpi[..., :, 2] = -h[..., :2] / z[..., None] ** 2
        A = dpi @ K[None, :, None]  # d pixel / d P: (F, C, J, 2, 3)
        J_X = A @ R[None, :, None]  # (F, C, J, 2, 3)
        RX = torch.einsum("cab,fjb->fcja", R, X)
        blocks = [-A @ skew(RX), A]
        if refine_focal:
            blocks.append((h[..., :2] / z[..., None] - K[None, :, None, :2, 2])[..., None])
        J_c = torch.cat(blocks, -1)  # (F, C, J, 2, k)
        s = robust[..., None, None]
        H_pp = (s * J_X.mT @ J_X).sum(1)  # (F, J, 3, 3)
        H_pc = s * J_X.mT @ J_c  # (F, C, J, 3, k)
        g_p = (s * J_X.mT @ e[..., None]).sum(1)[..., 0]  # (F, J, 3)
        H_cc = (s * J_c.mT @ J_c).sum((0, 2))  # (C, k, k)
        g_c = (s * J_c.mT @ e[..., None]).sum((0, 2))[..., 0]  # (C, k)
        while True:
            damp_p = H_pp + lam * torch.diag_embed(H_pp.diagonal(dim1=-2, dim2=-1)) + 1e-9 * torch.eye(3, dtype=X.dtype)
            inv = torch.linalg.inv(damp_p)  # (F, J, 3, 3)
            Y = torch.einsum("fcjak,fjab->fcjkb", H_pc, inv)  # H_cp H_pp^-1: (F, C, J, k, 3)
            S = -torch.einsum("fcjkb,fdjbl->cdkl", Y, H_pc)  # (C, C, k, k)
            S[range(C), range(C)] += H_cc + lam * torch.diag_embed(H_cc.diagonal(dim1=-2, dim2=-1))
            rhs = g_c - torch.einsum("fcjkb,fjb->ck", Y, g_p)
            S = S.permute(0, 2, 1, 3).reshape(C * k, C * k)[free][:, free]
            step_c = torch.zeros(C * k, dtype=X.dtype)
            step_c[free] = -torch.linalg.solve(S + 1e-12 * torch.eye(len(S), dtype=X.dtype), rhs.reshape(-1)[free])
            step_c = step_c.reshape(C, k)
            step_p = -torch.einsum("fjab,fjb->fja", inv, g_p + torch.einsum("fcjak,ck->fja", H_pc, step_c))
            R_new = rodrigues(step_c[:, :3]) @ R
            t_new = t + step_c[:, 3:6]
            K_new = K.clone()
            if refine_focal:
                K_new[:, :2, :2] = K[:, :2, :2] * step_c[:, 6].exp()[:, None, None]
            X_new = X + step_p
            new = cost(X_new, R_new, t_new, K_new)
            if new < current:
                converged = current - new <= 1e-10 * current
                R, t, K, X, current = R_new, t_new, K_new, X_new, new
                lam = max(lam / 3, 1e-9)
                break
            lam *= 4
            if lam > 1e8:
                converged = True
                break
        if converged:
            break
    return R, t, K, torch.where(fitted[..., None], X, torch.nan), scale


def _offsets(uv: Tensor, w: Tensor, flip: Tensor, K: Tensor, R: Tensor, t: Tensor, scale: float,
             max_offset: int, rows: Tensor) -> Tensor:  # fmt: skip
    """(C,) each camera's frame offset against camera 0, within +-max_offset.

    Every pair of cameras scores every relative shift by the epipolar agreement of its
    joints (camera c's frames ``rows`` against camera d's, shifted); the offsets are those
    whose pairwise shifts score best in total: all combinations where they are few, else
    coordinate descent from each camera's best shift against camera 0. Pairs, not a
    triangulation from the other cameras: those may be out of step themselves.
    """
    u = _homogeneous(torch.where(flip[..., None, None], uv[:, :, MIRRORED], uv))
    v = torch.where(flip[..., None], w[:, :, MIRRORED], w)
    F, C = uv.shape[:2]
    shifts = range(-2 * max_offset, 2 * max_offset + 1)
    table = torch.full((C, C, len(shifts)), np.inf, dtype=uv.dtype)  # (c, d, o_d - o_c)
    for c in range(C):
        for d in range(c + 1, C):
            fundamental = _fundamental(R, t, K, c, d)
            for i, delta in enumerate(shifts):
                g = rows[(rows - delta >= 0) & (rows - delta < F)]  # camera c's frame g meets d's g - delta
                use = (v[g, c] > 0) & (v[g - delta, d] > 0)
                if use.any():
                    cost = _epipolar_cost(u[g, c], u[g - delta, d], fundamental, use, scale)
                    table[c, d, i] = cost.sum() / use.sum()
    pairs = [(c, d) for c in range(C) for d in range(c + 1, C)]

    def total(offsets: Tensor) -> Tensor:  # offsets (..., C) -> (...)
        return sum(table[c, d, offsets[..., d] - offsets[..., c] + 2 * max_offset] for c, d in pairs)

    choices = torch.arange(-max_offset, max_offset + 1)
    if len(choices) ** (C - 1) <= 100_000:
        grid = torch.cartesian_prod(*[choices] * (C - 1)).reshape(-1, C - 1)
        candidates = torch.cat([torch.zeros(len(grid), 1, dtype=torch.long), grid], 1)
        return candidates[total(candidates).argmin()]
    offsets = torch.zeros(C, dtype=torch.long)
    offsets[1:] = choices[table[0, 1:, max_offset : 3 * max_offset + 1].argmin(-1)]
    for _ in range(10):
        before = offsets.clone()
        for c in range(1, C):
            trials = offsets.repeat(len(choices), 1)
            trials[:, c] = choices
            offsets = trials[total(trials).argmin()]
        if torch.equal(offsets, before):
            break
    return offsets


def _metric_scale(X: Tensor) -> float:
    """Millimetres per rig unit: the median over frames and bones of mean length / fitted length."""
    child, parent = (list(x) for x in zip(*BONES, strict=True))
    lengths = (X[:, child] - X[:, parent]).norm(dim=-1)  # (F, bones)
    ratio = torch.tensor(MEAN_BONE_LENGTHS_MM, dtype=X.dtype) / lengths
    ratio = ratio[torch.isfinite(ratio) & (ratio > 0)]
    if not len(ratio):
        raise ValueError("no bone was triangulated: the scale cannot be set")
    return float(ratio.median())


def _summary(R, t, K, X, error, w, scale, offsets, flip) -> RigCalibration:
    seen = (w > 0) & torch.isfinite(X).all(-1)[:, None]
    inlier_px = INLIER_SCALES * scale
    median, share = [], []
    for c in range(len(R)):
        e = error[:, c][seen[:, c]]
        median.append(float(e.median()) if len(e) else float("nan"))
        share.append(float((e <= inlier_px).double().mean()) if len(e) else 0.0)
    return RigCalibration(R=R, t=t, K=K, reprojection_px=torch.tensor(median, dtype=torch.float64),
                          inlier_share=torch.tensor(share, dtype=torch.float64), inlier_px=inlier_px,
                          offsets=offsets, swapped=flip, X=X)  # fmt: skip
