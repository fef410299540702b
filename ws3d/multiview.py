"""3D poses of multi-view groups from their 2D joints alone: rotations, triangulation, bundle adjustment.

A group is one static person seen by V cameras whose intrinsics K are known and whose
extrinsics may not be. Given each view's 2D joints and their weights, this module finds
the person's 3D joints and every camera's pose, without any 3D label:

1. rotations: the true relative rotations where the extrinsics are known; otherwise a
   scaled-orthographic factorisation of the centred 2D joints (Tomasi-Kanade, rank 3,
   with the metric upgrade), which needs three or more views and is determined only up
   to a reflection in depth, so both candidates go on;
2. linear triangulation with those rotations: the 3D joints and the camera
   translations solve one homogeneous linear system (the scale is free);
3. bundle adjustment (Levenberg-Marquardt, batched over groups): the reprojection error
   in pixels, robust (Cauchy) against wrong 2D joints, plus a prior that every bone has
   its mean length (within about 10 %); estimated rotations are refined too. Of the two
   reflections, the one with the lower final cost wins.

The trainer uses the result as pseudo-targets for the relative depths of every view
(:func:`depth_targets`); this is ws3d's deviation from the paper, which aligns the
network's own poses instead. Everything is float64 torch, on the CPU.

Shapes: G groups padded to V views of J joints. ``uv`` (G, V, J, 2) pixels, ``K``
(G, V, 3, 3), ``w`` (G, V, J) >= 0 (0 for a missing joint or a padded view).
Rotations ``R`` (G, V, 3, 3) map camera 0's frame into camera c's: P_c = R_c P_0 + t_c.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ws3d.data.sampling import group_indices
from ws3d.geometry import nearest_rotation, rays, rodrigues, skew
from ws3d.losses import relative_depths
from ws3d.skeleton import BONES, MEAN_BONE_LENGTHS_MM, REFERENCE_BONE

ALLOW = 1e-3  # the metric upgrade's smallest eigenvalue over its largest, at least
CIRCLE = 48  # candidate upgrades tried on the circle of the two smallest singular vectors
PIXEL_SCALE = 4.0  # Cauchy scale of the reprojection error, pixels: 2D joints further off count less
BONE_TOLERANCE = 0.1  # the bone prior's standard deviation, as a fraction of each mean length
_D = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # the reflection in depth


def factorise_rotations(x: Tensor, observed: Tensor, iters: int = 50) -> tuple[Tensor, Tensor]:
    """Relative rotations from 2D joints alone, under scaled orthographic projection.

    Args:
        x: (G, V, J, 3) normalised rays (:func:`rays`).
        observed: (G, V, J) bool, joints to use; a padded view has none.
        iters: rounds of alternating least squares.

    Returns:
        R (G, V, 3, 3), camera 0 -> camera c (one of the two reflections; the other is
        D R D with D = diag(1, 1, -1)), and ok (G,): three or more views and a metric
        upgrade that is not degenerate.
    """
    G, V, J, _ = x.shape
    xy = x[..., :2] / x[..., 2:]
    views = observed.any(-1)  # (G, V)
    # Rows are the 2V image coordinates, columns the J joints: rows ~ M S + b with M
    # (2V, 3) the scaled camera axes and S (3, J) the shape. Alternating least squares
    # over the observed entries only (centring would need every joint in every view).
    y = xy.permute(0, 1, 3, 2).reshape(G, 2 * V, J)
    m = observed[:, :, None, :].expand(-1, -1, 2, -1).reshape(G, 2 * V, J).to(y.dtype)
    centroid = (y * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1)
    start = torch.where(m > 0, y, centroid) - centroid  # missing joints start at their view's centroid
    U, S_, Vh = torch.linalg.svd(start, full_matrices=False)
    shape = S_[:, :3, None].sqrt() * Vh[:, :3]  # (G, 3, J)
    ridge = 1e-9 * torch.eye(4, dtype=y.dtype)
    for _ in range(iters):
        s1 = torch.cat([shape, torch.ones_like(shape[:, :1])], 1)  # (G, 4, J)
        A = torch.einsum("grj,gaj,gbj->grab", m, s1, s1) + ridge
        c = torch.einsum("grj,grj,gaj->gra", m, y, s1)
        Mb = torch.linalg.solve(A, c)  # (G, 2V, 4): rows of M and their offsets b
        M, b = Mb[..., :3], Mb[..., 3]
        A = torch.einsum("grj,gra,grb->gjab", m, M, M) + ridge[:3, :3]
        c = torch.einsum("grj,grj,gra->gja", m, y - b[..., None], M)
        shape = torch.linalg.solve(A, c).mT
    M = M.reshape(G, V, 2, 3)
    a, b = M[:, :, 0], M[:, :, 1]

    def coef(p, q):
        return torch.stack([p[..., 0] * q[..., 0], p[..., 0] * q[..., 1] + p[..., 1] * q[..., 0],
                            p[..., 0] * q[..., 2] + p[..., 2] * q[..., 0], p[..., 1] * q[..., 1],
                            p[..., 1] * q[..., 2] + p[..., 2] * q[..., 1], p[..., 2] * q[..., 2]], -1)  # fmt: skip

    eqs = torch.cat([coef(a, a) - coef(b, b), coef(a, b)], 1) * torch.cat([views, views], 1)[..., None]
    # The metric upgrade L = Q Q^T makes every view's two axes orthogonal and equally long:
    # linear in L, solved by its null vector. Cameras that all turn about one axis (people
    # filmed from around them at one height) leave a second null direction, so the best
    # L is sought on the circle of the two smallest singular vectors, scored by those
    # axis conditions and by how well the bone lengths of the shape match the mean
    # skeleton's proportions.
    null = torch.linalg.svd(eqs).Vh[:, -2:]  # (G, 2, 6)
    angle = torch.linspace(0, torch.pi, CIRCLE + 1, dtype=y.dtype)[:-1]
    l = torch.cos(angle)[None, :, None] * null[:, None, 1] + torch.sin(angle)[None, :, None] * null[:, None, 0]
    L = torch.stack([l[..., [0, 1, 2]], l[..., [1, 3, 4]], l[..., [2, 4, 5]]], -2)  # the symmetric 3x3
    L = L * torch.sign(L.diagonal(dim1=-2, dim2=-1).sum(-1))[..., None, None]  # (G, C, 3, 3)
    lam, E = torch.linalg.eigh(L)
    definite = lam[..., 0] > ALLOW * lam[..., 2]
    Q = E * lam.clamp_min(1e-9 * lam[..., 2:3].clamp_min(1e-30)).sqrt()[..., None, :]
    MQ = M[:, None] @ Q[:, :, None]  # (G, C, V, 2, 3)
    n1, n2 = MQ[..., 0, :].square().sum(-1), MQ[..., 1, :].square().sum(-1)
    axes = (((n1 - n2) / (n1 + n2)).square() + (2 * (MQ[..., 0, :] * MQ[..., 1, :]).sum(-1) / (n1 + n2)).square())
    axes = (axes * views[:, None]).sum(-1) / views.sum(-1, keepdim=True).clamp_min(1)
    child, parent, mu = _bone_index()
    S = torch.linalg.solve(Q, shape[:, None])  # (G, C, 3, J)
    lengths = (S[..., child] - S[..., parent]).norm(dim=-2).clamp_min(1e-12)
    twice = observed.sum(1) >= 2
    seen = (twice[:, child] & twice[:, parent]).to(y.dtype)[:, None]  # (G, 1, bones)
    log_ratio = (lengths / mu).log()
    mean = (log_ratio * seen).sum(-1, keepdim=True) / seen.sum(-1, keepdim=True).clamp_min(1)
    bones = ((log_ratio - mean).square() * seen).sum(-1) / seen.sum(-1).clamp_min(1)
    score = torch.where(definite, axes + bones, torch.inf)
    best = score.argmin(1)
    pick = torch.arange(G)
    ok = (views.sum(1) >= 3) & definite[pick, best]
    M = MQ[pick, best]
    r1, r2 = M[:, :, 0], M[:, :, 1]
    r1 = r1 / r1.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    r2 = r2 / r2.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    R = nearest_rotation(torch.stack([r1, r2, torch.linalg.cross(r1, r2)], -2))
    R = R @ R[:, :1].mT  # relative to camera 0
    eye = torch.eye(3, dtype=R.dtype)
    R = torch.where((views & ok[:, None])[..., None, None], R, eye)
    return R, ok


def _bone_index() -> tuple[Tensor, Tensor, Tensor]:
    child, parent = (torch.tensor(x) for x in zip(*BONES, strict=True))
    return child, parent, torch.tensor(MEAN_BONE_LENGTHS_MM, dtype=torch.float64)


def distances(x: Tensor, w: Tensor) -> Tensor:
    """Each view's distance to the person in millimetres, from its 2D bone lengths.

    A bone of mean length mu whose 2D length (in normalised coordinates) is l lies at a
    distance of at most about mu / l (foreshortening only shortens l); the median of
    that bound over the bones that a view sees, times 0.8, is within about 20 % of the
    truth for upright people. x: (G, V, J, 3) rays, w: (G, V, J). Returns (G, V).
    """
    child, parent, mu = _bone_index()
    xy = x[..., :2] / x[..., 2:]
    seen = (w[..., child] > 0) & (w[..., parent] > 0)
    bound = mu / (xy[..., child, :] - xy[..., parent, :]).norm(dim=-1).clamp_min(1e-9)
    bound = torch.where(seen, bound, torch.nan)
    fallback = mu.sum() / 2.0  # a view with no bone: the person ~4 m away
    return torch.nan_to_num(bound.nanmedian(-1).values * 0.8, nan=float(fallback))


def triangulate(x: Tensor, w: Tensor, R: Tensor, views: Tensor) -> tuple[Tensor, Tensor]:
    """Starting 3D joints and camera translations for given rotations.

    Each camera is placed at its :func:`distances` from the person's centre along the
    mean ray of its joints; every joint is then the point closest (least squares,
    weighted) to its rays. A joint that only one view sees lands on its ray nearest the
    person's centre, one that no view sees at the centre.

    Args:
        x: (G, V, J, 3) rays; w: (G, V, J) weights; R: (G, V, 3, 3); views: (G, V) bool, real views.

    Returns:
        X (G, J, 3) mm in camera 0's frame, t (G, V, 3) mm (t_0 = 0).
    """
    G, V, J, _ = x.shape
    unit = x / x.norm(dim=-1, keepdim=True)
    seen = w.sum(-1, keepdim=True)
    mean = (w[..., None] * unit).sum(2) / seen.clamp_min(1e-12)
    mean = torch.where(seen > 0, mean, unit.mean(2))
    mean = mean / mean.norm(dim=-1, keepdim=True)  # (G, V, 3)
    centre_c = distances(x, w)[..., None] * mean  # the person's centre in each camera's frame
    centre = centre_c[:, 0]  # ... and in camera 0's
    t = centre_c - torch.einsum("gcab,gb->gca", R, centre)
    t = torch.where(views[..., None], t, 0.0)
    C = -torch.einsum("gcba,gcb->gca", R, t)  # camera centres in camera 0's frame
    r = torch.einsum("gcba,gcjb->gcja", R, unit)  # rays in camera 0's frame
    proj = torch.eye(3, dtype=x.dtype) - r[..., :, None] * r[..., None, :]  # (G, V, J, 3, 3)
    eps = 1e-6
    A = (w[..., None, None] * proj).sum(1) + eps * torch.eye(3, dtype=x.dtype)
    b = (w[..., None, None] * proj @ C[:, :, None, :, None]).sum(1)[..., 0] + eps * centre[:, None]
    X = torch.linalg.solve(A, b)
    return X, t


def _residuals(X: Tensor, t: Tensor, R: Tensor, uv: Tensor, K: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Reprojection errors (..., V, J, 2) in pixels (unweighted) and bone-prior residuals (..., bones)."""
    P = torch.einsum("...cab,...jb->...cja", R, X) + t[..., None, :]
    h = torch.einsum("...cab,...cjb->...cja", K, P)
    z = h[..., 2:].clamp_min(1e-6)
    child, parent, mu = _bone_index()
    bones = ((X[..., child, :] - X[..., parent, :]).norm(dim=-1) - mu) / (BONE_TOLERANCE * mu)
    return h[..., :2] / z - uv, bones


def _cost(X, t, R, uv, K, w) -> Tensor:
    """Robust reprojection cost plus the bone prior, per group."""
    e, bones = _residuals(X, t, R, uv, K, w)
    c2 = PIXEL_SCALE**2
    return (w * c2 * torch.log1p(e.square().sum(-1) / c2)).sum((-2, -1)) + bones.square().sum(-1)


def bundle_adjust(uv: Tensor, K: Tensor, w: Tensor, X: Tensor, t: Tensor, R: Tensor, views: Tensor,
                  rotations_fixed: Tensor, iters: int = 40) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Levenberg-Marquardt on the robust reprojection error plus the bone prior.

    Args:
        uv, K, w: the groups' 2D joints, intrinsics and weights (module docstring).
        X (G, J, 3) mm, t (G, V, 3) mm, R (G, V, 3, 3): the starting point (camera 0's frame).
        views: (G, V) bool, real views. rotations_fixed: (G,) bool, keep R (known extrinsics).
        iters: LM iterations.

    Returns:
        X, t, R refined, and the final cost (G,).
    """
    G, V, J, _ = uv.shape
    n = 3 * J + 6 * V
    free = torch.ones(G, n, dtype=torch.bool)
    free[:, 3 * J : 3 * J + 3] = False  # t_0 = 0: the frame is camera 0's
    free[:, 3 * J : 3 * J + 3 * V] &= views.repeat_interleave(3, 1)
    free[:, 3 * J + 3 * V :] = (views & ~rotations_fixed[:, None]).repeat_interleave(3, 1)
    free[:, 3 * J + 3 * V : 3 * J + 3 * V + 3] = False  # R_0 = I
    obs_index, bone_index = _hessian_layout(V, J, n)
    child, parent, mu = _bone_index()
    lam = torch.full((G,), 1e-3, dtype=uv.dtype)
    cost = _cost(X, t, R, uv, K, w)
    for _ in range(iters):
        if bool((lam >= 1e8).all()):  # no group can take a step any more
            break
        # Gauss-Newton normal equations at the current point, the rotations perturbed as
        # (I + [omega]x) R (so omega = 0 here); the Cauchy loss enters as IRLS weights.
        # Each 2D error touches 9 parameters (its joint, its camera's t and omega), each
        # bone 6: their blocks are scattered into the dense (n, n) system.
        P = torch.einsum("gcab,gjb->gcja", R, X) + t[:, :, None]
        h = torch.einsum("gcab,gcjb->gcja", K, P)
        z = h[..., 2].clamp_min(1e-6)
        e = h[..., :2] / z[..., None] - uv
        sw = (w / (1 + e.square().sum(-1) / PIXEL_SCALE**2)).sqrt()[..., None, None]
        dpi = torch.zeros(G, V, J, 2, 3, dtype=uv.dtype)
        dpi[..., 0, 0] = dpi[..., 1, 1] = 1 / z
        dpi[..., :, 2] = -h[..., :2] / z[..., None] ** 2
        A = sw * (dpi @ K[:, :, None])  # d e / d P, weighted: (G, V, J, 2, 3)
        RX = torch.einsum("gcab,gjb->gcja", R, X)
        D = torch.cat([A @ R[:, :, None], A, -A @ skew(RX)], -1)  # (G, V, J, 2, 9)
        r = sw[..., 0] * e
        d = X[:, child] - X[:, parent]
        length = d.norm(dim=-1).clamp_min(1e-9)
        unit = d / (length * BONE_TOLERANCE * mu)[..., None]
        Db = torch.cat([unit, -unit], -1)  # (G, B, 6)
        rb = (length - mu) / (BONE_TOLERANCE * mu)
        H = uv.new_zeros(G, n * n)
        H.index_add_(1, obs_index[0], (D.mT @ D).reshape(G, -1))
        H.index_add_(1, bone_index[0], (Db[..., :, None] * Db[..., None, :]).reshape(G, -1))
        g = uv.new_zeros(G, n)
        g.index_add_(1, obs_index[1], (D.mT @ r[..., None]).reshape(G, -1))
        g.index_add_(1, bone_index[1], (Db * rb[..., None]).reshape(G, -1))
        H = H.reshape(G, n, n) * (free[:, :, None] & free[:, None, :])
        g = g * free
        # Marquardt's damping, floored so that directions the data leave flat (a joint that
        # only a bone holds) still get a step of a sensible size.
        diag = H.diagonal(dim1=-2, dim2=-1)
        floor = 1e-4 * (diag.sum(-1, keepdim=True) / free.sum(-1, keepdim=True).clamp_min(1))
        damping = lam[:, None] * torch.maximum(diag, floor) + (~free).to(H.dtype)
        step = -torch.linalg.solve(H + torch.diag_embed(damping), g[..., None])[..., 0] * free
        X_new = X + step[:, : 3 * J].reshape(G, J, 3)
        t_new = t + step[:, 3 * J : 3 * J + 3 * V].reshape(G, V, 3)
        R_new = rodrigues(step[:, 3 * J + 3 * V :].reshape(G, V, 3)) @ R
        new_cost = _cost(X_new, t_new, R_new, uv, K, w)
        better = (new_cost < cost) & torch.isfinite(new_cost)
        converged = better & (cost - new_cost <= 1e-9 * cost)
        X = torch.where(better[:, None, None], X_new, X)
        t = torch.where(better[:, None, None], t_new, t)
        R = torch.where(better[:, None, None, None], R_new, R)
        cost = torch.where(better, new_cost, cost)
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9)
        lam = torch.where(converged, 1e9, lam)  # converged: it takes no more steps
    return X, t, R, cost


def _hessian_layout(V: int, J: int, n: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Where the blocks of the bundle adjustment's normal equations go.

    Parameters: X (3J), then t (3V), then omega (3V). Returns, for the 2D errors (per view
    and joint, 9 parameters each) and for the bones (6 parameters each), the flat
    indices into the (n, n) matrix and into the (n,) gradient.
    """
    c = torch.arange(V)[:, None, None]
    j = torch.arange(J)[None, :, None]
    k = torch.arange(3)[None, None, :]
    params = torch.cat([(3 * j + k).expand(V, J, 3), (3 * J + 3 * c + k).expand(V, J, 3),
                        (3 * J + 3 * V + 3 * c + k).expand(V, J, 3)], -1)  # fmt: skip
    child, parent, _ = _bone_index()
    k = torch.arange(3)[None, :]
    bones = torch.cat([3 * child[:, None] + k, 3 * parent[:, None] + k], -1)

    def flat(p):
        return (p[..., :, None] * n + p[..., None, :]).reshape(-1), p.reshape(-1)

    return flat(params), flat(bones)


def solve_groups(uv: Tensor, K: Tensor, w: Tensor, views: Tensor, R_known: Tensor | None = None,
                 known: Tensor | None = None, iters: int = 40) -> dict[str, Tensor]:  # fmt: skip
    """Every group's 3D joints and camera poses from its 2D joints (module docstring).

    Args:
        uv (G, V, J, 2), K (G, V, 3, 3), w (G, V, J): 2D joints, intrinsics, weights.
        views: (G, V) bool, real views.
        R_known: (G, V, 3, 3) world-to-camera rotations, used for groups whose ``known``
            (G,) is True (WS+R); other groups' rotations are estimated.
        iters: bundle-adjustment iterations.

    Returns:
        dict with ``X`` (G, J, 3) mm in camera 0's frame, ``R`` (G, V, 3, 3), ``t``
        (G, V, 3) mm, ``P`` (G, V, J, 3) every view's joints in its camera frame (mm),
        ``cost`` (G,) and ``ok`` (G,) bool: the rotations could be found (known, or
        estimated from three or more views).
    """
    x = rays(uv, K)
    observed = (w > 0) & views[..., None]
    R, ok = factorise_rotations(x, observed)
    fixed = torch.zeros(len(uv), dtype=torch.bool) if known is None else known.clone()
    if R_known is not None and fixed.any():
        R = torch.where(fixed[:, None, None, None], R_known @ R_known[:, :1].mT, R)
        ok = ok | fixed
    X, t = triangulate(x, w, R, views)
    cost = torch.full((len(uv),), torch.inf, dtype=uv.dtype)
    i = ok.nonzero()[:, 0]  # only groups with rotations are adjusted
    best = None
    for candidate in (R[i], _D @ R[i] @ _D):  # the factorisation's two reflections (the same where known)
        X_c, t_c = triangulate(x[i], w[i], candidate, views[i])
        result = bundle_adjust(uv[i], K[i], w[i], X_c, t_c, candidate, views[i], fixed[i], iters)
        if best is not None:
            pick = (result[3] < best[3]) & ~fixed[i]
            result = tuple(torch.where(pick.view(-1, *[1] * (a.dim() - 1)), a, b)
                           for a, b in zip(result, best, strict=True))  # fmt: skip
        best = result
        if fixed[i].all():
            break
    X[i], t[i], R[i], cost[i] = best
    P = torch.einsum("gcab,gjb->gcja", R, X) + t[:, :, None]
    return {"X": X, "R": R, "t": t, "P": P, "cost": cost, "ok": ok}


def depth_targets(uv: np.ndarray, w: np.ndarray, K: np.ndarray, group: np.ndarray, R: np.ndarray | None = None,
                  known: np.ndarray | None = None, iters: int = 40) -> dict[str, np.ndarray]:  # fmt: skip
    """Scale-normalised relative depth targets for every view of a multi-view set.

    Groups are solved together by view count (:func:`solve_groups`, no padding). A target
    z_j = (Z_j - Z_root) / ||P_neck - P_pelvis|| (the convention of ``reconstruct_3d``)
    gets weight 1 where it is determined: the group's rotations were found, joint j and
    both joints of the reference bone are seen by two or more views, and the joint's
    fitted reprojection error in this view is within ``2 * PIXEL_SCALE`` pixels.

    Args:
        uv: (N, J, 2) pixels; w: (N, J) >= 0 weights (0: not seen); K: (N, 3, 3);
        group: (N,) group ids; R: (N, 3, 3) world-to-camera rotations and known: (N,)
        bool, used for groups whose every view is known (WS+R).

    Returns:
        dict of numpy arrays: ``z`` (N, J) float32, ``weight`` (N, J) float32, ``ok``
        (N,) bool (the view's group was solved), ``uv`` (N, J, 2) float32 the fitted joints
        projected into the view (NaN where the group was not solved or the joint lies
        behind the camera), ``reprojection`` (N, J) float32 their distance from ``uv`` in
        pixels (NaN where they are).
    """
    N, J = w.shape
    z = np.zeros((N, J), np.float32)
    weight = np.zeros((N, J), np.float32)
    ok_view = np.zeros(N, bool)
    error = np.full((N, J), np.nan, np.float32)
    fitted = np.full((N, J, 2), np.nan, np.float32)
    groups = group_indices(group)
    sizes = np.array([len(g) for g in groups])
    neck, pelvis = REFERENCE_BONE
    for V in np.unique(sizes):
        if V < 2:
            continue
        index = np.stack([g for g, n in zip(groups, sizes, strict=True) if n == V])  # (G, V)

        uv_g, w_g, K_g = (torch.as_tensor(np.asarray(a)[index], dtype=torch.float64) for a in (uv, w, K))
        views = torch.ones(index.shape, dtype=torch.bool)
        fixed = R_g = None
        if R is not None and known is not None:
            fixed = torch.as_tensor(np.asarray(known)[index]).all(1)
            R_g = torch.as_tensor(np.asarray(R)[index], dtype=torch.float64)
        out = solve_groups(uv_g, K_g, w_g, views, R_g, fixed, iters)
        P = out["P"]
        z_g = relative_depths(P.flatten(0, 1)).reshape(index.shape + (J,))
        h = torch.einsum("gcab,gcjb->gcja", K_g, P)
        projected = torch.where(h[..., 2:] > 0, h[..., :2] / h[..., 2:], torch.nan)
        projected[~out["ok"]] = torch.nan
        e = (projected - uv_g).norm(dim=-1)  # NaN fails every test below
        seen = (w_g > 0).sum(1) >= 2  # (G, J)
        good = out["ok"][:, None, None] & seen[:, None, :] & seen[:, None, [neck]] & seen[:, None, [pelvis]]
        good = good & (e <= 2 * PIXEL_SCALE) & (w_g > 0)
        z[index] = z_g.float().numpy()
        weight[index] = good.float().numpy()
        ok_view[index] = out["ok"][:, None].expand(index.shape).numpy()
        error[index] = e.float().numpy()
        fitted[index] = projected.float().numpy()
    return {"z": z, "weight": weight, "ok": ok_view, "uv": fitted, "reprojection": error}


# The rig a group's cameras belong to is solved in its own module, and belongs here by topic.
from ws3d.rig_calibration import RigCalibration, calibrate_rig, compare_rigs  # noqa: E402, F401
