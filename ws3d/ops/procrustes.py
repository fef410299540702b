"""Batched weighted Procrustes: the rigid (or similarity) alignment of pose pairs.

For each pair n, minimise sum_j w_j ||s R X_j + t - Y_j||^2 over proper rotations R::

    Xbar = sum_j w_j X_j / sum_j w_j      (the weights are used once, not squared)
    H    = sum_j w_j (X_j - Xbar)(Y_j - Ybar)^T = U S V^T
    R    = V diag(1, 1, det(V U^T)) U^T,  t = Ybar - s R Xbar
    s    = trace(diag(1, 1, det) S) / sum_j w_j ||X_j - Xbar||^2     (scale=True; else 1)

The reference solves the 3x3 SVD with torch.linalg.svd. The Triton kernel gives each
pair one lane and solves Horn's quaternion eigenproblem in registers instead: the
optimal rotation is the eigenvector of the largest eigenvalue of a symmetric 4x4
matrix N built from H, found by cyclic Jacobi sweeps. The eigenvalues of N are
+-s1 +- s2 +- d s3 (d = sign det H), so R is proper by construction (a reflected target
still gives det R = +1) and trace(diag(1, 1, d) S) is N's largest eigenvalue.

The rotation is unique iff s2 + d s3 > 0 (the gap between N's two largest
eigenvalues); ``valid`` is False where that gap is below ``PROCRUSTES_REL_TOL * s1`` (collinear or
coincident points, fewer than three points with weight), where every weight is 0, or
where a row holds NaN or inf. Every invalid row gets the same defined result on every
backend: R = I, s = 1 and t = Ybar - Xbar (t = 0 for a row with NaN or inf). Without
that rule, rounding noise left by centring coincident points would pick an arbitrary
rotation.

R, t and s are differentiable in X, Y and w. The backward solves the same eigenproblem
again and differentiates it (``_reference_backward`` derives it): the top eigenvector
moves by sum_k v_k v_k^T dN q / (lam0 - lam_k), so its gradient is finite wherever the
row is valid (the smallest gap lam0 - lam_1 is the one ``valid`` tests), and an invalid
row passes no gradient, never a NaN. Near the threshold the gradient is large (it grows
like 1 / gap) and, in float32, loses digits with the square of s1 / gap. The paper stops
the gradient at R, t: ws3d's L_MC detaches the poses it fits them to unless
``loss.procrustes_grad`` is set.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._backend import (
    HAS_TRITON,
    accumulation_dtype,
    native_inputs,
    on_device_of,
    select_backend,
    tl,
    triton,
    triton_accumulation_dtype,
)
from ._constants import JACOBI_SWEEPS, PROCRUSTES_REL_TOL
from ._ext import native
from ._validate import check_float_tensor, check_same_dtype_device, value_checks_active

__all__ = ["weighted_procrustes", "weighted_procrustes_reference"]



# --------------------------------------------------------------------------- reference


def _finite_rows(X: Tensor, Y: Tensor, w: Tensor) -> Tensor:
    return torch.isfinite(X).all(-1).all(-1) & torch.isfinite(Y).all(-1).all(-1) & torch.isfinite(w).all(-1)


def _moments(X: Tensor, Y: Tensor, w: Tensor, keep: Tensor):
    """The weighted centroids and centred moments of the (N,) rows in ``keep`` (the others
    zeroed), in the accumulation dtype: w, total, Xbar, Ybar, Xc, Yc, H and var."""
    acc = accumulation_dtype(X.dtype)
    X = torch.where(keep[:, None, None], X.to(acc), 0.0)
    Y = torch.where(keep[:, None, None], Y.to(acc), 0.0)
    w = torch.where(keep[:, None], w.to(acc), 0.0)
    total = w.sum(-1)
    total_safe = torch.where(total > 0, total, 1.0)
    X_bar = (w[..., None] * X).sum(1) / total_safe[:, None]
    Y_bar = (w[..., None] * Y).sum(1) / total_safe[:, None]
    Xc, Yc = X - X_bar[:, None], Y - Y_bar[:, None]
    H = torch.einsum("nj,nja,njb->nab", w, Xc, Yc)
    var = (w * (Xc * Xc).sum(-1)).sum(-1)
    return w, total, X_bar, Y_bar, Xc, Yc, H, var


def weighted_procrustes_reference(
    X: Tensor, Y: Tensor, w: Tensor, scale: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Pure-PyTorch weighted Procrustes (SVD); the tests' ground truth.

    Args:
        X, Y: (N, J, 3) point sets; the result maps X onto Y.
        w: (N, J) non-negative weights.
        scale: also solve for the similarity scale s.

    Returns:
        R (N, 3, 3), t (N, 3), s (N,) (ones when ``scale`` is False), valid (N,) bool.
    """
    dtype, acc = X.dtype, accumulation_dtype(X.dtype)
    finite = _finite_rows(X, Y, w)
    w, total, X_bar, Y_bar, Xc, Yc, H, var = _moments(X, Y, w, finite)
    U, S, Vh = torch.linalg.svd(H)
    V = Vh.transpose(-1, -2)
    d = torch.where(torch.linalg.det(V @ U.transpose(-1, -2)) < 0, -1.0, 1.0).to(acc)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    valid = finite & (total > 0) & (S[:, 1] + d * S[:, 2] > PROCRUSTES_REL_TOL * S[:, 0])
    eye = torch.eye(3, dtype=acc, device=X.device)
    R = torch.where(valid[:, None, None], V @ D @ U.transpose(-1, -2), eye)
    s = torch.ones_like(total)
    if scale:
        trace = S[:, 0] + S[:, 1] + d * S[:, 2]
        s = torch.where(valid & (var > 0), trace / torch.where(var > 0, var, 1.0), s)
    t = Y_bar - s[:, None] * (R @ X_bar[..., None]).squeeze(-1)
    return R.to(dtype), t.to(dtype), s.to(dtype), valid


def _horn_matrix(H: Tensor) -> Tensor:
    """Horn's symmetric (N, 4, 4) matrix of (N, 3, 3) H: q^T N(H) q = trace(R(q) H) for a unit
    quaternion q = (w, x, y, z), so N's top eigenvector is the rotation maximising trace(R H)."""
    h = H.unbind(-1)
    (h00, h10, h20), (h01, h11, h21), (h02, h12, h22) = (c.unbind(-1) for c in h)
    rows = [
        [h00 + h11 + h22, h12 - h21, h20 - h02, h01 - h10],
        [h12 - h21, h00 - h11 - h22, h01 + h10, h20 + h02],
        [h20 - h02, h01 + h10, h11 - h00 - h22, h12 + h21],
        [h01 - h10, h20 + h02, h12 + h21, h22 - h00 - h11],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _quaternion_bilinear(a: Tensor, q: Tensor) -> Tensor:
    """The symmetric bilinear form B(a, q) (N, 3, 3) whose diagonal B(q, q) is the rotation
    matrix of the unit quaternion q (N, 4): R_cd(q) = q^T A_cd q, B_cd(a, q) = a^T A_cd q."""
    aw, ax, ay, az = a.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    xy, xz, yz = ax * qy + ay * qx, ax * qz + az * qx, ay * qz + az * qy
    wx, wy, wz = aw * qx + ax * qw, aw * qy + ay * qw, aw * qz + az * qw
    ww, xx, yy, zz = aw * qw, ax * qx, ay * qy, az * qz
    rows = [
        [ww + xx - yy - zz, xy - wz, xz + wy],
        [xy + wz, ww - xx + yy - zz, yz - wx],
        [xz - wy, yz + wx, ww - xx - yy + zz],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _reference_backward(grad_R: Tensor, grad_t: Tensor, grad_s: Tensor, X: Tensor, Y: Tensor, w: Tensor,
                        valid: Tensor, scale: bool) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Gradients of (R, t, s) with respect to (X, Y, w), from the quaternion eigenproblem.

    R = R(q) with q the top eigenvector of N(H) (eigenvalue lam0 = trace(R H)), s = lam0 / var,
    t = Ybar - s R Xbar. With (lam_k, v_k) N's other eigenpairs, first-order perturbation gives
    d lam0 = q^T dN q and dq = sum_k v_k v_k^T dN q / (lam0 - lam_k); dN is linear in dH, so the
    gradient on H is B(a, q)^T with a = g_lam q + sum_k v_k (v_k . g_q) / (lam0 - lam_k), where
    g_q = 2 N(G^T) q is the gradient on q of trace(R(q) G^T) (``_quaternion_bilinear``).
    The smallest gap lam0 - lam_1 = 2 (s2 + d s3) is what ``valid`` tests, so a valid row's
    gradient is finite; an invalid row passes no gradient.
    """
    dtype, acc = X.dtype, accumulation_dtype(X.dtype)
    keep = valid[:, None]
    w, total, X_bar, Y_bar, Xc, Yc, H, var = _moments(X, Y, w, valid)
    total_safe = torch.where(total > 0, total, 1.0)
    gR, gt, gs = grad_R.to(acc), grad_t.to(acc), grad_s.to(acc)
    lam, V = torch.linalg.eigh(_horn_matrix(H))  # ascending: the top pair is the last
    q, lam0 = V[..., -1], lam[..., -1]
    R = _quaternion_bilinear(q, q)
    use_s = valid & (var > 0) if scale else torch.zeros_like(valid)
    var_safe = torch.where(use_s, var, 1.0)
    s = torch.where(use_s, lam0 / var_safe, 1.0)
    R_X_bar = (R @ X_bar[..., None]).squeeze(-1)
    # t = Ybar - s R Xbar, then s = lam0 / var.
    G = gR - s[:, None, None] * gt[:, :, None] * X_bar[:, None, :]
    g_X_bar = -s[:, None] * (R.mT @ gt[..., None]).squeeze(-1)
    g_s = gs - (gt * R_X_bar).sum(-1)
    g_lam = torch.where(use_s, g_s / var_safe, 0.0)
    g_var = torch.where(use_s, -g_s * s / var_safe, 0.0)
    # The eigenproblem: q and lam0 as functions of H.
    g_q = 2 * (_horn_matrix(G.mT) @ q[..., None]).squeeze(-1)
    gap = lam0[:, None] - lam
    along = torch.where(gap > 0, (V.mT @ g_q[..., None]).squeeze(-1) / torch.where(gap > 0, gap, 1.0), 0.0)
    a = g_lam[:, None] * q + (V @ along[..., None]).squeeze(-1)
    g_H = _quaternion_bilinear(a, q).mT
    # H = sum_j w_j Xc_j Yc_j^T and var = sum_j w_j |Xc_j|^2; the centroids' own terms vanish
    # (sum_j w_j Xc_j = 0), leaving only their direct use in t.
    wj = w[..., None]
    g_X = wj * (Yc @ g_H.mT + 2 * g_var[:, None, None] * Xc + (g_X_bar / total_safe[:, None])[:, None])
    g_Y = wj * (Xc @ g_H + (gt / total_safe[:, None])[:, None])
    g_w = (((Xc @ g_H) * Yc).sum(-1) + g_var[:, None] * (Xc * Xc).sum(-1)
           + ((Xc * g_X_bar[:, None]).sum(-1) + (Yc * gt[:, None]).sum(-1)) / total_safe[:, None])
    return (torch.where(keep[..., None], g_X, 0.0).to(dtype), torch.where(keep[..., None], g_Y, 0.0).to(dtype),
            torch.where(keep, g_w, 0.0).to(dtype))


# ------------------------------------------------------------------------------ triton

if HAS_TRITON:

    @triton.jit
    def _jacobi_rotation(app, aqq, apq, arp, arq, asp, asq, v0p, v0q, v1p, v1q, v2p, v2q, v3p, v3q):
        """One Jacobi rotation zeroing a_pq of a symmetric 4x4 (r, s = the other two
        indices), applied to the matrix entries it changes and to columns p, q of V."""
        rotate = apq != 0
        theta = (aqq - app) / (2.0 * tl.where(rotate, apq, 1.0))
        # The smaller rotation angle; theta^2 may overflow to inf, which gives t = 0.
        t = tl.where(theta >= 0, 1.0, -1.0) / (tl.abs(theta) + tl.sqrt(1.0 + theta * theta))
        t = tl.where(rotate, t, 0.0)
        c = 1.0 / tl.sqrt(1.0 + t * t)
        s = t * c
        return (
            app - t * apq, aqq + t * apq,
            c * arp - s * arq, s * arp + c * arq,
            c * asp - s * asq, s * asp + c * asq,
            c * v0p - s * v0q, s * v0p + c * v0q,
            c * v1p - s * v1q, s * v1p + c * v1q,
            c * v2p - s * v2q, s * v2p + c * v2q,
            c * v3p - s * v3q, s * v3p + c * v3q,
        )

    @triton.jit
    def _keep_top(top, second, qw, qx, qy, qz, lam, c0, c1, c2, c3):
        """Fold eigenpair (lam, c) into the running largest / second-largest eigenvalue."""
        better = lam > top
        second = tl.where(better, top, tl.maximum(second, lam))
        top = tl.where(better, lam, top)
        return (top, second, tl.where(better, c0, qw), tl.where(better, c1, qx),
                tl.where(better, c2, qy), tl.where(better, c3, qz))

    @triton.jit
    def _horn_entries(h00, h01, h02, h10, h11, h12, h20, h21, h22):
        """The 10 entries (n00, n01, n02, n03, n11, n12, n13, n22, n23, n33) of Horn's
        symmetric 4x4: q^T N(H) q = trace(R(q) H), see ``_horn_matrix`` above."""
        return (h00 + h11 + h22, h12 - h21, h20 - h02, h01 - h10, h00 - h11 - h22, h01 + h10, h20 + h02,
                h11 - h00 - h22, h12 + h21, h22 - h00 - h11)

    @triton.jit
    def _bilinear_entries(aw, ax, ay, az, qw, qx, qy, qz):
        """B(a, q) row-major, see ``_quaternion_bilinear`` above; B(q, q) = R(q)."""
        xy, xz, yz = ax * qy + ay * qx, ax * qz + az * qx, ay * qz + az * qy
        wx, wy, wz = aw * qx + ax * qw, aw * qy + ay * qw, aw * qz + az * qw
        ww, xx, yy, zz = aw * qw, ax * qx, ay * qy, az * qz
        return (ww + xx - yy - zz, xy - wz, xz + wy,
                xy + wz, ww - xx + yy - zz, yz - wx,
                xz - wy, yz + wx, ww - xx - yy + zz)

    @triton.jit
    def _load_joint(X_ptr, Y_ptr, w_ptr, rows64, ok, j, X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn, w_sj,
                    ACC: tl.constexpr):  # fmt: skip
        """X_j, Y_j and w_j of each lane's pair (0 where ``ok`` is False)."""
        X_at = X_ptr + rows64 * X_sn + j * X_sj
        Y_at = Y_ptr + rows64 * Y_sn + j * Y_sj
        return (tl.load(X_at, mask=ok, other=0.0).to(ACC), tl.load(X_at + X_sc, mask=ok, other=0.0).to(ACC),
                tl.load(X_at + 2 * X_sc, mask=ok, other=0.0).to(ACC), tl.load(Y_at, mask=ok, other=0.0).to(ACC),
                tl.load(Y_at + Y_sc, mask=ok, other=0.0).to(ACC), tl.load(Y_at + 2 * Y_sc, mask=ok, other=0.0).to(ACC),
                tl.load(w_ptr + rows64 * w_sn + j * w_sj, mask=ok, other=0.0).to(ACC))

    @triton.jit
    def _pair_moments(X_ptr, Y_ptr, w_ptr, rows64, row_ok, J, X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn, w_sj,
                      ACC: tl.constexpr):  # fmt: skip
        """One pair per lane: whether the pair is finite, its total weight and weighted
        centroids, then H = sum_j w_j Xc_j Yc_j^T and var = sum_j w_j |Xc_j|^2 of the
        centred points. Two loops over the joints (the second re-reads X, Y, w from cache):
        a lane holds sums, never a row of points, so nothing spills. A row with NaN or inf
        takes the all-weights-zero path."""
        zero = tl.zeros(rows64.shape, ACC)
        total, sx0, sx1, sx2, sy0, sy1, sy2 = zero, zero, zero, zero, zero, zero, zero
        bad = tl.zeros(rows64.shape, tl.int32)
        for j in range(J):
            x0, x1, x2, y0, y1, y2, w = _load_joint(X_ptr, Y_ptr, w_ptr, rows64, row_ok, j, X_sn, X_sj, X_sc, Y_sn,
                                                    Y_sj, Y_sc, w_sn, w_sj, ACC)  # fmt: skip
            probe = x0 + x1 + x2 + y0 + y1 + y2 + w
            bad = tl.where(probe - probe == 0, bad, 1)
            total += w
            sx0, sx1, sx2 = sx0 + w * x0, sx1 + w * x1, sx2 + w * x2
            sy0, sy1, sy2 = sy0 + w * y0, sy1 + w * y1, sy2 + w * y2
        finite = bad == 0
        total = tl.where(finite, total, 0.0)
        inv_total = 1.0 / tl.where(total > 0, total, 1.0)
        xb0, xb1, xb2 = tl.where(finite, sx0 * inv_total, 0.0), tl.where(finite, sx1 * inv_total, 0.0), \
            tl.where(finite, sx2 * inv_total, 0.0)
        yb0, yb1, yb2 = tl.where(finite, sy0 * inv_total, 0.0), tl.where(finite, sy1 * inv_total, 0.0), \
            tl.where(finite, sy2 * inv_total, 0.0)
        # Centre before forming H: raw second moments would cancel catastrophically for
        # poses far from the origin (camera coordinates in millimetres).
        h00, h01, h02, h10, h11, h12, h20, h21, h22, var = zero, zero, zero, zero, zero, zero, zero, zero, zero, zero
        for j in range(J):
            x0, x1, x2, y0, y1, y2, w = _load_joint(X_ptr, Y_ptr, w_ptr, rows64, row_ok & finite, j, X_sn, X_sj, X_sc,
                                                    Y_sn, Y_sj, Y_sc, w_sn, w_sj, ACC)  # fmt: skip
            x0, x1, x2, y0, y1, y2 = x0 - xb0, x1 - xb1, x2 - xb2, y0 - yb0, y1 - yb1, y2 - yb2
            wx0, wx1, wx2 = w * x0, w * x1, w * x2
            h00, h01, h02 = h00 + wx0 * y0, h01 + wx0 * y1, h02 + wx0 * y2
            h10, h11, h12 = h10 + wx1 * y0, h11 + wx1 * y1, h12 + wx1 * y2
            h20, h21, h22 = h20 + wx2 * y0, h21 + wx2 * y1, h22 + wx2 * y2
            var += wx0 * x0 + wx1 * x1 + wx2 * x2
        return h00, h01, h02, h10, h11, h12, h20, h21, h22, var, xb0, xb1, xb2, yb0, yb1, yb2, total, inv_total, finite

    @triton.jit
    def _horn_eigen(h00, h01, h02, h10, h11, h12, h20, h21, h22, SWEEPS: tl.constexpr):
        """Every eigenpair of N(H / h_scale) (h_scale = max |H|: a scale-free eigenproblem,
        no overflow for huge inputs) by cyclic Jacobi sweeps: eigenvalues n00..n33,
        eigenvectors in the columns of V. Also h_scale, the largest and second-largest
        eigenvalue and the unit top q."""
        h_max = tl.maximum(tl.maximum(tl.maximum(tl.abs(h00), tl.abs(h01)), tl.maximum(tl.abs(h02), tl.abs(h10))),
                           tl.maximum(tl.maximum(tl.abs(h11), tl.abs(h12)), tl.maximum(tl.abs(h20), tl.abs(h21))))
        h_max = tl.maximum(h_max, tl.abs(h22))
        h_scale = tl.where(h_max > 0, h_max, 1.0)
        r = 1.0 / h_scale
        n00, n01, n02, n03, n11, n12, n13, n22, n23, n33 = _horn_entries(
            h00 * r, h01 * r, h02 * r, h10 * r, h11 * r, h12 * r, h20 * r, h21 * r, h22 * r)
        one = tl.full(h00.shape, 1.0, h00.dtype)
        zero = tl.zeros(h00.shape, h00.dtype)
        v00, v01, v02, v03 = one, zero, zero, zero
        v10, v11, v12, v13 = zero, one, zero, zero
        v20, v21, v22, v23 = zero, zero, one, zero
        v30, v31, v32, v33 = zero, zero, zero, one
        for _ in range(SWEEPS):
            n00, n11, n02, n12, n03, n13, v00, v01, v10, v11, v20, v21, v30, v31 = _jacobi_rotation(
                n00, n11, n01, n02, n12, n03, n13, v00, v01, v10, v11, v20, v21, v30, v31)
            n01 = zero
            n00, n22, n01, n12, n03, n23, v00, v02, v10, v12, v20, v22, v30, v32 = _jacobi_rotation(
                n00, n22, n02, n01, n12, n03, n23, v00, v02, v10, v12, v20, v22, v30, v32)
            n02 = zero
            n00, n33, n01, n13, n02, n23, v00, v03, v10, v13, v20, v23, v30, v33 = _jacobi_rotation(
                n00, n33, n03, n01, n13, n02, n23, v00, v03, v10, v13, v20, v23, v30, v33)
            n03 = zero
            n11, n22, n01, n02, n13, n23, v01, v02, v11, v12, v21, v22, v31, v32 = _jacobi_rotation(
                n11, n22, n12, n01, n02, n13, n23, v01, v02, v11, v12, v21, v22, v31, v32)
            n12 = zero
            n11, n33, n01, n03, n12, n23, v01, v03, v11, v13, v21, v23, v31, v33 = _jacobi_rotation(
                n11, n33, n13, n01, n03, n12, n23, v01, v03, v11, v13, v21, v23, v31, v33)
            n13 = zero
            n22, n33, n02, n03, n12, n13, v02, v03, v12, v13, v22, v23, v32, v33 = _jacobi_rotation(
                n22, n33, n23, n02, n03, n12, n13, v02, v03, v12, v13, v22, v23, v32, v33)
            n23 = zero
        top, second = n00, tl.full(h00.shape, float("-inf"), h00.dtype)
        qw, qx, qy, qz = v00, v10, v20, v30
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n11, v01, v11, v21, v31)
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n22, v02, v12, v22, v32)
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n33, v03, v13, v23, v33)
        norm = tl.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        return (h_scale, n00, n11, n22, n33, v00, v01, v02, v03, v10, v11, v12, v13, v20, v21, v22, v23,
                v30, v31, v32, v33, top, second, qw / norm, qx / norm, qy / norm, qz / norm)

    @triton.jit
    def _procrustes_kernel(
        X_ptr, Y_ptr, w_ptr, R_ptr, t_ptr, s_ptr, valid_ptr, N, J,
        X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn, w_sj,
        SCALE: tl.constexpr, ACC: tl.constexpr, REL_TOL: tl.constexpr, SWEEPS: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok, rows64 = rows < N, rows.to(tl.int64)
        (h00, h01, h02, h10, h11, h12, h20, h21, h22, var, xb0, xb1, xb2, yb0, yb1, yb2, total, _,
         finite) = _pair_moments(X_ptr, Y_ptr, w_ptr, rows64, row_ok, J, X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn,
                                 w_sj, ACC)  # fmt: skip
        (h_scale, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _,
         top, second, qw, qx, qy, qz) = _horn_eigen(h00, h01, h02, h10, h11, h12, h20, h21, h22, SWEEPS)

        # top - second = 2 (s2 + d s3) and top + second = 2 s1, in units of h_scale.
        valid = finite & (total > 0) & (top - second > REL_TOL * (top + second))
        # Invalid rows take the identity quaternion, hence R = I.
        qw = tl.where(valid, qw, 1.0)
        qx, qy, qz = tl.where(valid, qx, 0.0), tl.where(valid, qy, 0.0), tl.where(valid, qz, 0.0)
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = _bilinear_entries(qw, qx, qy, qz, qw, qx, qy, qz)

        s = tl.full([BLOCK_N], 1.0, ACC)
        if SCALE:
            s = tl.where(valid & (var > 0), top * h_scale / tl.where(var > 0, var, 1.0), s)
        t0 = yb0 - s * (r00 * xb0 + r01 * xb1 + r02 * xb2)
        t1 = yb1 - s * (r10 * xb0 + r11 * xb1 + r12 * xb2)
        t2 = yb2 - s * (r20 * xb0 + r21 * xb1 + r22 * xb2)

        ty = R_ptr.dtype.element_ty
        R_at = R_ptr + rows64 * 9
        tl.store(R_at, r00.to(ty), mask=row_ok)
        tl.store(R_at + 1, r01.to(ty), mask=row_ok)
        tl.store(R_at + 2, r02.to(ty), mask=row_ok)
        tl.store(R_at + 3, r10.to(ty), mask=row_ok)
        tl.store(R_at + 4, r11.to(ty), mask=row_ok)
        tl.store(R_at + 5, r12.to(ty), mask=row_ok)
        tl.store(R_at + 6, r20.to(ty), mask=row_ok)
        tl.store(R_at + 7, r21.to(ty), mask=row_ok)
        tl.store(R_at + 8, r22.to(ty), mask=row_ok)
        t_at = t_ptr + rows64 * 3
        tl.store(t_at, t0.to(ty), mask=row_ok)
        tl.store(t_at + 1, t1.to(ty), mask=row_ok)
        tl.store(t_at + 2, t2.to(ty), mask=row_ok)
        tl.store(s_ptr + rows64, s.to(ty), mask=row_ok)
        tl.store(valid_ptr + rows64, valid, mask=row_ok)

    @triton.jit
    def _eigen_coefficient(gap, dot):
        """(v_k . g_q) / (lam0 - lam_k), eigenpair k's share of the eigenvector derivative;
        none for the top pair itself, whose gap is 0."""
        return tl.where(gap > 0, dot / tl.where(gap > 0, gap, 1.0), 0.0)

    @triton.jit
    def _procrustes_backward_kernel(
        X_ptr, Y_ptr, w_ptr, valid_ptr, gR_ptr, gt_ptr, gs_ptr, gX_ptr, gY_ptr, gw_ptr, N, J,
        X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn, w_sj,
        SCALE: tl.constexpr, ACC: tl.constexpr, SWEEPS: tl.constexpr, BLOCK_N: tl.constexpr,
    ):
        """Gradients on X, Y, w with the forward recomputed; the derivation is in
        ``_reference_backward``. gR (N, 9), gt (N, 3), gs (N,) and the outputs are contiguous.
        One pair per lane: the per-pair terms first, then a loop over the joints writes
        each joint's gradients."""
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok, rows64 = rows < N, rows.to(tl.int64)
        (h00, h01, h02, h10, h11, h12, h20, h21, h22, var, xb0, xb1, xb2, yb0, yb1, yb2, _, inv_total,
         finite) = _pair_moments(X_ptr, Y_ptr, w_ptr, rows64, row_ok, J, X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn,
                                 w_sj, ACC)  # fmt: skip
        (h_scale, n00, n11, n22, n33, v00, v01, v02, v03, v10, v11, v12, v13, v20, v21, v22, v23,
         v30, v31, v32, v33, top, _, qw, qx, qy, qz) = _horn_eigen(h00, h01, h02, h10, h11, h12, h20, h21, h22,
                                                                    SWEEPS)  # fmt: skip
        valid = tl.load(valid_ptr + rows64, mask=row_ok, other=0) != 0
        r00, r01, r02, r10, r11, r12, r20, r21, r22 = _bilinear_entries(qw, qx, qy, qz, qw, qx, qy, qz)
        gR_at = gR_ptr + rows64 * 9
        g00 = tl.load(gR_at, mask=row_ok, other=0.0).to(ACC)
        g01 = tl.load(gR_at + 1, mask=row_ok, other=0.0).to(ACC)
        g02 = tl.load(gR_at + 2, mask=row_ok, other=0.0).to(ACC)
        g10 = tl.load(gR_at + 3, mask=row_ok, other=0.0).to(ACC)
        g11 = tl.load(gR_at + 4, mask=row_ok, other=0.0).to(ACC)
        g12 = tl.load(gR_at + 5, mask=row_ok, other=0.0).to(ACC)
        g20 = tl.load(gR_at + 6, mask=row_ok, other=0.0).to(ACC)
        g21 = tl.load(gR_at + 7, mask=row_ok, other=0.0).to(ACC)
        g22 = tl.load(gR_at + 8, mask=row_ok, other=0.0).to(ACC)
        gt0 = tl.load(gt_ptr + rows64 * 3, mask=row_ok, other=0.0).to(ACC)
        gt1 = tl.load(gt_ptr + rows64 * 3 + 1, mask=row_ok, other=0.0).to(ACC)
        gt2 = tl.load(gt_ptr + rows64 * 3 + 2, mask=row_ok, other=0.0).to(ACC)
        gs = tl.load(gs_ptr + rows64, mask=row_ok, other=0.0).to(ACC)

        # t = Ybar - s R Xbar, then s = lam0 / var.
        use_s = (var > 0) & SCALE
        var_safe = tl.where(use_s, var, 1.0)
        s = tl.where(use_s, top * h_scale / var_safe, 1.0)
        g00, g01, g02 = g00 - s * gt0 * xb0, g01 - s * gt0 * xb1, g02 - s * gt0 * xb2
        g10, g11, g12 = g10 - s * gt1 * xb0, g11 - s * gt1 * xb1, g12 - s * gt1 * xb2
        g20, g21, g22 = g20 - s * gt2 * xb0, g21 - s * gt2 * xb1, g22 - s * gt2 * xb2
        gxb0 = -s * (r00 * gt0 + r10 * gt1 + r20 * gt2)
        gxb1 = -s * (r01 * gt0 + r11 * gt1 + r21 * gt2)
        gxb2 = -s * (r02 * gt0 + r12 * gt1 + r22 * gt2)
        g_s = gs - (gt0 * (r00 * xb0 + r01 * xb1 + r02 * xb2) + gt1 * (r10 * xb0 + r11 * xb1 + r12 * xb2)
                    + gt2 * (r20 * xb0 + r21 * xb1 + r22 * xb2))
        g_lam = tl.where(use_s, g_s / var_safe, 0.0)
        g_var = tl.where(use_s, -g_s * s / var_safe, 0.0)

        # The eigenproblem: g_q = 2 N(G^T) q, a = g_lam q + sum_k v_k (v_k . g_q) / (lam0 - lam_k).
        m00, m01, m02, m03, m11, m12, m13, m22, m23, m33 = _horn_entries(g00, g10, g20, g01, g11, g21, g02, g12, g22)
        gqw = 2.0 * (m00 * qw + m01 * qx + m02 * qy + m03 * qz)
        gqx = 2.0 * (m01 * qw + m11 * qx + m12 * qy + m13 * qz)
        gqy = 2.0 * (m02 * qw + m12 * qx + m22 * qy + m23 * qz)
        gqz = 2.0 * (m03 * qw + m13 * qx + m23 * qy + m33 * qz)
        dot0 = v00 * gqw + v10 * gqx + v20 * gqy + v30 * gqz
        dot1 = v01 * gqw + v11 * gqx + v21 * gqy + v31 * gqz
        dot2 = v02 * gqw + v12 * gqx + v22 * gqy + v32 * gqz
        dot3 = v03 * gqw + v13 * gqx + v23 * gqy + v33 * gqz
        c0, c1 = _eigen_coefficient((top - n00) * h_scale, dot0), _eigen_coefficient((top - n11) * h_scale, dot1)
        c2, c3 = _eigen_coefficient((top - n22) * h_scale, dot2), _eigen_coefficient((top - n33) * h_scale, dot3)
        aw = g_lam * qw + c0 * v00 + c1 * v01 + c2 * v02 + c3 * v03
        ax = g_lam * qx + c0 * v10 + c1 * v11 + c2 * v12 + c3 * v13
        ay = g_lam * qy + c0 * v20 + c1 * v21 + c2 * v22 + c3 * v23
        az = g_lam * qz + c0 * v30 + c1 * v31 + c2 * v32 + c3 * v33
        # The gradient on H is B(a, q)^T: k_ab below is the gradient on H_ba.
        k00, k01, k02, k10, k11, k12, k20, k21, k22 = _bilinear_entries(aw, ax, ay, az, qw, qx, qy, qz)

        # H = sum_j w_j Xc_j Yc_j^T, var = sum_j w_j |Xc_j|^2; the centroids' own terms vanish.
        gv2 = 2.0 * g_var
        ty = gX_ptr.dtype.element_ty
        for j in range(J):
            x0, x1, x2, y0, y1, y2, w = _load_joint(X_ptr, Y_ptr, w_ptr, rows64, row_ok & finite, j, X_sn, X_sj, X_sc,
                                                    Y_sn, Y_sj, Y_sc, w_sn, w_sj, ACC)  # fmt: skip
            x0, x1, x2, y0, y1, y2 = x0 - xb0, x1 - xb1, x2 - xb2, y0 - yb0, y1 - yb1, y2 - yb2
            Hy0 = k00 * y0 + k10 * y1 + k20 * y2
            Hy1 = k01 * y0 + k11 * y1 + k21 * y2
            Hy2 = k02 * y0 + k12 * y1 + k22 * y2
            Htx0 = k00 * x0 + k01 * x1 + k02 * x2
            Htx1 = k10 * x0 + k11 * x1 + k12 * x2
            Htx2 = k20 * x0 + k21 * x1 + k22 * x2
            gx0 = tl.where(valid, w * (Hy0 + gv2 * x0 + gxb0 * inv_total), 0.0)
            gx1 = tl.where(valid, w * (Hy1 + gv2 * x1 + gxb1 * inv_total), 0.0)
            gx2 = tl.where(valid, w * (Hy2 + gv2 * x2 + gxb2 * inv_total), 0.0)
            gy0 = tl.where(valid, w * (Htx0 + gt0 * inv_total), 0.0)
            gy1 = tl.where(valid, w * (Htx1 + gt1 * inv_total), 0.0)
            gy2 = tl.where(valid, w * (Htx2 + gt2 * inv_total), 0.0)
            gw = (x0 * Hy0 + x1 * Hy1 + x2 * Hy2 + g_var * (x0 * x0 + x1 * x1 + x2 * x2)
                  + (gxb0 * x0 + gxb1 * x1 + gxb2 * x2 + gt0 * y0 + gt1 * y1 + gt2 * y2) * inv_total)
            at = rows64 * (3 * J) + j * 3
            tl.store(gX_ptr + at, gx0.to(ty), mask=row_ok)
            tl.store(gX_ptr + at + 1, gx1.to(ty), mask=row_ok)
            tl.store(gX_ptr + at + 2, gx2.to(ty), mask=row_ok)
            tl.store(gY_ptr + at, gy0.to(ty), mask=row_ok)
            tl.store(gY_ptr + at + 1, gy1.to(ty), mask=row_ok)
            tl.store(gY_ptr + at + 2, gy2.to(ty), mask=row_ok)
            tl.store(gw_ptr + rows64 * J + j, tl.where(valid, gw, 0.0).to(ty), mask=row_ok)


# One pair per lane, 128 pairs (4 warps) per program: a lane loops over its pair's joints and
# keeps only sums and the 4x4 eigenproblem in registers (a tile of whole rows per program
# spilled hundreds of bytes per thread, benchmarks/results/kernel_resources.md).
_PAIRS_PER_PROGRAM, _WARPS = 128, 4


def _triton_forward(X: Tensor, Y: Tensor, w: Tensor, scale: bool):
    N, J = w.shape
    R = torch.empty(N, 3, 3, device=X.device, dtype=X.dtype)
    t = torch.empty(N, 3, device=X.device, dtype=X.dtype)
    s = torch.empty(N, device=X.device, dtype=X.dtype)
    valid = torch.empty(N, device=X.device, dtype=torch.bool)
    with on_device_of(X):
        _procrustes_kernel[(triton.cdiv(N, _PAIRS_PER_PROGRAM),)](
            X, Y, w, R, t, s, valid, N, J, *X.stride(), *Y.stride(), *w.stride(),
            SCALE=scale, ACC=triton_accumulation_dtype(X.dtype), REL_TOL=PROCRUSTES_REL_TOL,
            SWEEPS=JACOBI_SWEEPS, BLOCK_N=_PAIRS_PER_PROGRAM, num_warps=_WARPS,
        )
    return R, t, s, valid


def _triton_backward(grad_R, grad_t, grad_s, X, Y, w, valid, scale):
    N, J = w.shape
    g_X = torch.empty(N, J, 3, device=X.device, dtype=X.dtype)
    g_Y, g_w = torch.empty_like(g_X), torch.empty(N, J, device=X.device, dtype=X.dtype)
    with on_device_of(X):
        _procrustes_backward_kernel[(triton.cdiv(N, _PAIRS_PER_PROGRAM),)](
            X, Y, w, valid.contiguous(), grad_R.contiguous(), grad_t.contiguous(), grad_s.contiguous(),
            g_X, g_Y, g_w, N, J, *X.stride(), *Y.stride(), *w.stride(),
            SCALE=scale, ACC=triton_accumulation_dtype(X.dtype), SWEEPS=JACOBI_SWEEPS,
            BLOCK_N=_PAIRS_PER_PROGRAM, num_warps=_WARPS,
        )
    return g_X, g_Y, g_w


# ------------------------------------------------------------------------------ native
# ws3d/csrc/procrustes_cpu.cpp and procrustes_cuda.cu (the solver: ws3d/csrc/procrustes_solver.h).


def _native_forward(X: Tensor, Y: Tensor, w: Tensor, scale: bool):
    X_, Y_, w_ = native_inputs(X, Y, w)
    N = X.shape[0]
    R, t, s = X_.new_empty(N, 3, 3), X_.new_empty(N, 3), X_.new_empty(N)
    valid = torch.empty(N, dtype=torch.bool, device=X.device)
    native().procrustes(X_, Y_, w_, scale, R, t, s, valid)
    return R.to(X.dtype), t.to(X.dtype), s.to(X.dtype), valid


def _native_backward(grad_R, grad_t, grad_s, X, Y, w, valid, scale):
    X_, Y_, w_, gR, gt, gs = native_inputs(X, Y, w, grad_R, grad_t, grad_s)
    g_X, g_Y, g_w = torch.empty_like(X_), torch.empty_like(Y_), torch.empty_like(w_)
    native().procrustes_backward(X_, Y_, w_, valid.contiguous(), gR, gt, gs, scale, g_X, g_Y, g_w)
    return g_X.to(X.dtype), g_Y.to(Y.dtype), g_w.to(w.dtype)


# ------------------------------------------------------------------ op + dispatcher

_IMPLEMENTATIONS = {
    "reference": (weighted_procrustes_reference, _reference_backward),
    "triton": (_triton_forward, _triton_backward),
    "native": (_native_forward, _native_backward),
}


@torch.library.custom_op("ws3d::weighted_procrustes", mutates_args=())
def _procrustes_op(X: Tensor, Y: Tensor, w: Tensor, scale: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (R, t, s, valid); s is all ones when ``scale`` is False."""
    if X.shape[0] == 0:
        return weighted_procrustes_reference(X, Y, w, scale)
    forward, _ = _IMPLEMENTATIONS[select_backend(X.device)]
    return forward(X, Y, w, scale)


@_procrustes_op.register_fake
def _(X, Y, w, scale):
    N = X.shape[0]
    return X.new_empty(N, 3, 3), X.new_empty(N, 3), X.new_empty(N), X.new_empty(N, dtype=torch.bool)


@torch.library.custom_op("ws3d::weighted_procrustes_backward", mutates_args=())
def _procrustes_backward_op(
    grad_R: Tensor, grad_t: Tensor, grad_s: Tensor, X: Tensor, Y: Tensor, w: Tensor, valid: Tensor, scale: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients on (X, Y, w); the forward is recomputed (a few hundred flops per pair)
    rather than its eigenvectors saved."""
    if X.shape[0] == 0:
        return torch.zeros_like(X), torch.zeros_like(Y), torch.zeros_like(w)
    _, backward = _IMPLEMENTATIONS[select_backend(X.device)]
    return backward(grad_R, grad_t, grad_s, X, Y, w, valid, scale)


@_procrustes_backward_op.register_fake
def _(grad_R, grad_t, grad_s, X, Y, w, valid, scale):
    return torch.empty_like(X), torch.empty_like(Y), torch.empty_like(w)


def _setup_context(ctx, inputs, output):
    X, Y, w, scale = inputs
    ctx.save_for_backward(X, Y, w, output[3])
    ctx.scale = scale
    ctx.mark_non_differentiable(output[3])


def _backward(ctx, grad_R, grad_t, grad_s, _grad_valid):
    X, Y, w, valid = ctx.saved_tensors
    N = X.shape[0]
    grad_R = X.new_zeros(N, 3, 3) if grad_R is None else grad_R
    grad_t = X.new_zeros(N, 3) if grad_t is None else grad_t
    grad_s = X.new_zeros(N) if grad_s is None else grad_s
    grad_X, grad_Y, grad_w = _procrustes_backward_op(grad_R, grad_t, grad_s, X, Y, w, valid, ctx.scale)
    return grad_X, grad_Y, grad_w, None


_procrustes_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------ public API


def weighted_procrustes(
    X: Tensor, Y: Tensor, w: Tensor | None = None, scale: bool = False, return_valid: bool = False
) -> tuple[Tensor, ...]:
    """Best rotation (and translation, and optionally scale) taking X onto Y, per pair.

    Minimises sum_j w_j ||s R X_j + t - Y_j||^2 with det R = +1, so that
    ``Y ~ s * X @ R.mT + t[:, None]``. R, t and s are differentiable in X, Y and w
    (rows with ``valid`` False pass no gradient); detach the inputs to stop the gradient
    at the fit, as the paper's L_MC does.

    Args:
        X: (N, J, 3) source points.
        Y: (N, J, 3) target points, same dtype and device.
        w: (N, J) non-negative weights (the paper: phi * phi); ``None`` = all ones.
        scale: also solve for the similarity scale s.
        return_valid: also return the (N,) bool flag, False where the rotation is
            undetermined: all weights 0, fewer than 3 weighted points, collinear or
            coincident points, or NaN / inf in the row. Such rows get R = I, s = 1,
            t = Ybar - Xbar (0 for a row with NaN or inf).

    Returns:
        ``(R, t)``, ``(R, t, s)`` with ``scale=True``, and ``valid`` appended with
        ``return_valid=True``: R (N, 3, 3), t (N, 3), s (N,), valid (N,).

    Raises:
        TypeError: non-float inputs or dtypes that differ.
        ValueError: wrong shapes, devices that differ, and (value checks, eager mode
            only) negative weights.

    Example:
        >>> X = torch.eye(3).expand(1, 3, 3)          # three points on the axes
        >>> Y = X @ torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]).mT + 2.0
        >>> R, t = weighted_procrustes(X, Y)
        >>> R.round().tolist(), t.tolist()
        ([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], [[2.0, 2.0, 2.0]])
    """
    check_float_tensor("X", X, 3, "(N, J, 3)")
    check_float_tensor("Y", Y, 3, "(N, J, 3)")
    if X.shape[-1] != 3 or Y.shape != X.shape:
        raise ValueError(f"X and Y must both have shape (N, J, 3), got {tuple(X.shape)} and {tuple(Y.shape)}")
    if w is None:
        w = X.new_ones(X.shape[:2])
    check_float_tensor("w", w, 2, "(N, J)")
    check_same_dtype_device({"X": X, "Y": Y, "w": w})
    if w.shape != X.shape[:2]:
        raise ValueError(f"w must have shape (N, J) = {tuple(X.shape[:2])}, got {tuple(w.shape)}")
    if X.shape[1] == 0:
        raise ValueError("X must hold at least one joint (J >= 1)")
    if value_checks_active() and w.numel() and bool(w.amin() < 0):  # no (N, J) mask unless one is negative
        index = tuple(torch.nonzero(w < 0)[0].tolist())
        raise ValueError(f"w must be non-negative, got {w[index].item()} at index {index}")
    R, t, s, valid = _procrustes_op(X, Y, w, bool(scale))
    out = (R, t, s) if scale else (R, t)
    return (*out, valid) if return_valid else out
