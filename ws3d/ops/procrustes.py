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
eigenvalues); ``valid`` is False where that gap is below ``REL_TOL * s1`` (collinear or
coincident points, fewer than three points with weight), where every weight is 0, or
where a row holds NaN or inf. Every invalid row gets the same defined result on every
backend: R = I, s = 1 and t = Ybar - Xbar (t = 0 for a row with NaN or inf). Without
that rule, rounding noise left by centring coincident points would pick an arbitrary
rotation. R, t and s carry no gradient: the paper stops it, and the loss applies them
to differentiable poses.
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
from ._ext import native
from ._validate import check_float_tensor, check_same_dtype_device, value_checks_active

__all__ = ["weighted_procrustes", "weighted_procrustes_reference"]

REL_TOL = 1e-5  # s2 + d s3 below REL_TOL * s1 leaves the rotation undetermined
JACOBI_SWEEPS = 8  # cyclic Jacobi on 4x4 converges quadratically; 8 sweeps reach float64


# --------------------------------------------------------------------------- reference


def _finite_rows(X: Tensor, Y: Tensor, w: Tensor) -> Tensor:
    return torch.isfinite(X).all(-1).all(-1) & torch.isfinite(Y).all(-1).all(-1) & torch.isfinite(w).all(-1)


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
    keep = finite[:, None]
    X = torch.where(keep[..., None], X.to(acc), 0.0)
    Y = torch.where(keep[..., None], Y.to(acc), 0.0)
    w = torch.where(keep, w.to(acc), 0.0)
    total = w.sum(-1)
    total_safe = torch.where(total > 0, total, 1.0)
    X_bar = (w[..., None] * X).sum(1) / total_safe[:, None]
    Y_bar = (w[..., None] * Y).sum(1) / total_safe[:, None]
    Xc, Yc = X - X_bar[:, None], Y - Y_bar[:, None]
    H = torch.einsum("nj,nja,njb->nab", w, Xc, Yc)
    U, S, Vh = torch.linalg.svd(H)
    V = Vh.transpose(-1, -2)
    d = torch.where(torch.linalg.det(V @ U.transpose(-1, -2)) < 0, -1.0, 1.0).to(acc)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    valid = finite & (total > 0) & (S[:, 1] + d * S[:, 2] > REL_TOL * S[:, 0])
    eye = torch.eye(3, dtype=acc, device=X.device)
    R = torch.where(valid[:, None, None], V @ D @ U.transpose(-1, -2), eye)
    s = torch.ones_like(total)
    if scale:
        var = (w * (Xc * Xc).sum(-1)).sum(-1)
        trace = S[:, 0] + S[:, 1] + d * S[:, 2]
        s = torch.where(valid & (var > 0), trace / torch.where(var > 0, var, 1.0), s)
    t = Y_bar - s[:, None] * (R @ X_bar[..., None]).squeeze(-1)
    return R.to(dtype), t.to(dtype), s.to(dtype), valid


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
    def _procrustes_kernel(
        X_ptr, Y_ptr, w_ptr, R_ptr, t_ptr, s_ptr, valid_ptr, N, J,
        X_sn, X_sj, X_sc, Y_sn, Y_sj, Y_sc, w_sn, w_sj,
        SCALE: tl.constexpr, ACC: tl.constexpr, REL_TOL: tl.constexpr, SWEEPS: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_J: tl.constexpr,
    ):
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        joints = tl.arange(0, BLOCK_J)
        row_ok = rows < N
        tile_ok = row_ok[:, None] & (joints < J)[None, :]
        rows64 = rows.to(tl.int64)
        X_at = X_ptr + rows64[:, None] * X_sn + joints[None, :] * X_sj
        Y_at = Y_ptr + rows64[:, None] * Y_sn + joints[None, :] * Y_sj
        x0 = tl.load(X_at, mask=tile_ok, other=0.0).to(ACC)
        x1 = tl.load(X_at + X_sc, mask=tile_ok, other=0.0).to(ACC)
        x2 = tl.load(X_at + 2 * X_sc, mask=tile_ok, other=0.0).to(ACC)
        y0 = tl.load(Y_at, mask=tile_ok, other=0.0).to(ACC)
        y1 = tl.load(Y_at + Y_sc, mask=tile_ok, other=0.0).to(ACC)
        y2 = tl.load(Y_at + 2 * Y_sc, mask=tile_ok, other=0.0).to(ACC)
        w = tl.load(w_ptr + rows64[:, None] * w_sn + joints[None, :] * w_sj, mask=tile_ok, other=0.0).to(ACC)

        # A row with NaN or inf is zeroed: it then takes the all-weights-zero path.
        probe = x0 + x1 + x2 + y0 + y1 + y2 + w
        finite = tl.sum(tl.where(probe - probe == 0, 0, 1), 1) == 0
        keep = finite[:, None]
        x0, x1, x2 = tl.where(keep, x0, 0.0), tl.where(keep, x1, 0.0), tl.where(keep, x2, 0.0)
        y0, y1, y2 = tl.where(keep, y0, 0.0), tl.where(keep, y1, 0.0), tl.where(keep, y2, 0.0)
        w = tl.where(keep, w, 0.0)

        total = tl.sum(w, 1)
        inv_total = 1.0 / tl.where(total > 0, total, 1.0)
        xb0, xb1, xb2 = tl.sum(w * x0, 1) * inv_total, tl.sum(w * x1, 1) * inv_total, tl.sum(w * x2, 1) * inv_total
        yb0, yb1, yb2 = tl.sum(w * y0, 1) * inv_total, tl.sum(w * y1, 1) * inv_total, tl.sum(w * y2, 1) * inv_total
        # Centre before forming H: raw second moments would cancel catastrophically for
        # poses far from the origin (camera coordinates in millimetres).
        x0, x1, x2 = x0 - xb0[:, None], x1 - xb1[:, None], x2 - xb2[:, None]
        y0, y1, y2 = y0 - yb0[:, None], y1 - yb1[:, None], y2 - yb2[:, None]
        wx0, wx1, wx2 = w * x0, w * x1, w * x2
        h00, h01, h02 = tl.sum(wx0 * y0, 1), tl.sum(wx0 * y1, 1), tl.sum(wx0 * y2, 1)
        h10, h11, h12 = tl.sum(wx1 * y0, 1), tl.sum(wx1 * y1, 1), tl.sum(wx1 * y2, 1)
        h20, h21, h22 = tl.sum(wx2 * y0, 1), tl.sum(wx2 * y1, 1), tl.sum(wx2 * y2, 1)
        var = tl.sum(wx0 * x0 + wx1 * x1 + wx2 * x2, 1)

        # Normalise H so the eigenproblem is scale-free (no overflow for huge inputs).
        h_max = tl.maximum(tl.maximum(tl.maximum(tl.abs(h00), tl.abs(h01)), tl.maximum(tl.abs(h02), tl.abs(h10))),
                           tl.maximum(tl.maximum(tl.abs(h11), tl.abs(h12)), tl.maximum(tl.abs(h20), tl.abs(h21))))
        h_max = tl.maximum(h_max, tl.abs(h22))
        h_scale = tl.where(h_max > 0, h_max, 1.0)
        inv_scale = 1.0 / h_scale
        h00, h01, h02 = h00 * inv_scale, h01 * inv_scale, h02 * inv_scale
        h10, h11, h12 = h10 * inv_scale, h11 * inv_scale, h12 * inv_scale
        h20, h21, h22 = h20 * inv_scale, h21 * inv_scale, h22 * inv_scale

        # Horn's symmetric 4x4 N; its top eigenvector is the quaternion (w, x, y, z) of R.
        n00 = h00 + h11 + h22
        n01 = h12 - h21
        n02 = h20 - h02
        n03 = h01 - h10
        n11 = h00 - h11 - h22
        n12 = h01 + h10
        n13 = h20 + h02
        n22 = h11 - h00 - h22
        n23 = h12 + h21
        n33 = h22 - h00 - h11
        one = tl.full([BLOCK_N], 1.0, ACC)
        zero = tl.zeros([BLOCK_N], ACC)
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

        # Largest and second-largest eigenvalue of N.
        top, second = n00, tl.full([BLOCK_N], float("-inf"), ACC)
        qw, qx, qy, qz = v00, v10, v20, v30
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n11, v01, v11, v21, v31)
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n22, v02, v12, v22, v32)
        top, second, qw, qx, qy, qz = _keep_top(top, second, qw, qx, qy, qz, n33, v03, v13, v23, v33)
        norm = tl.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
        qw, qx, qy, qz = qw / norm, qx / norm, qy / norm, qz / norm

        # top - second = 2 (s2 + d s3) and top + second = 2 s1, in units of h_scale.
        valid = finite & (total > 0) & (top - second > REL_TOL * (top + second))
        # Invalid rows take the identity quaternion, hence R = I.
        qw = tl.where(valid, qw, 1.0)
        qx, qy, qz = tl.where(valid, qx, 0.0), tl.where(valid, qy, 0.0), tl.where(valid, qz, 0.0)
        r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
        r01 = 2.0 * (qx * qy - qw * qz)
        r02 = 2.0 * (qx * qz + qw * qy)
        r10 = 2.0 * (qx * qy + qw * qz)
        r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
        r12 = 2.0 * (qy * qz - qw * qx)
        r20 = 2.0 * (qx * qz - qw * qy)
        r21 = 2.0 * (qy * qz + qw * qx)
        r22 = 1.0 - 2.0 * (qx * qx + qy * qy)

        s = one
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


def _triton_forward(X: Tensor, Y: Tensor, w: Tensor, scale: bool):
    N, J = w.shape
    R = torch.empty(N, 3, 3, device=X.device, dtype=X.dtype)
    t = torch.empty(N, 3, device=X.device, dtype=X.dtype)
    s = torch.empty(N, device=X.device, dtype=X.dtype)
    valid = torch.empty(N, device=X.device, dtype=torch.bool)
    block_j = triton.next_power_of_2(J)
    block_n = max(1, min(64, 1024 // block_j))
    with on_device_of(X):
        _procrustes_kernel[(triton.cdiv(N, block_n),)](
            X, Y, w, R, t, s, valid, N, J, *X.stride(), *Y.stride(), *w.stride(),
            SCALE=scale, ACC=triton_accumulation_dtype(X.dtype), REL_TOL=REL_TOL,
            SWEEPS=JACOBI_SWEEPS, BLOCK_N=block_n, BLOCK_J=block_j,
        )
    return R, t, s, valid


# ------------------------------------------------------------------------------ native
# ws3d/csrc/procrustes_cpu.cpp and procrustes_cuda.cu (the solver: ws3d/csrc/procrustes_solver.h).


def _native_forward(X: Tensor, Y: Tensor, w: Tensor, scale: bool):
    X_, Y_, w_ = native_inputs(X, Y, w)
    N = X.shape[0]
    R, t, s = X_.new_empty(N, 3, 3), X_.new_empty(N, 3), X_.new_empty(N)
    valid = torch.empty(N, dtype=torch.bool, device=X.device)
    native().procrustes(X_, Y_, w_, scale, R, t, s, valid)
    return R.to(X.dtype), t.to(X.dtype), s.to(X.dtype), valid


# ------------------------------------------------------------------ op + dispatcher

_IMPLEMENTATIONS = {
    "reference": weighted_procrustes_reference,
    "triton": _triton_forward,
    "native": _native_forward,
}


@torch.library.custom_op("ws3d::weighted_procrustes", mutates_args=())
def _procrustes_op(X: Tensor, Y: Tensor, w: Tensor, scale: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (R, t, s, valid); s is all ones when ``scale`` is False."""
    if X.shape[0] == 0:
        return weighted_procrustes_reference(X, Y, w, scale)
    return _IMPLEMENTATIONS[select_backend(X.device)](X, Y, w, scale)


@_procrustes_op.register_fake
def _(X, Y, w, scale):
    N = X.shape[0]
    return X.new_empty(N, 3, 3), X.new_empty(N, 3), X.new_empty(N), X.new_empty(N, dtype=torch.bool)


# ------------------------------------------------------------------------ public API


def weighted_procrustes(
    X: Tensor, Y: Tensor, w: Tensor | None = None, scale: bool = False, return_valid: bool = False
) -> tuple[Tensor, ...]:
    """Best rotation (and translation, and optionally scale) taking X onto Y, per pair.

    Minimises sum_j w_j ||s R X_j + t - Y_j||^2 with det R = +1, so that
    ``Y ~ s * X @ R.mT + t[:, None]``. The outputs carry no gradient (the paper stops
    it); apply them to differentiable poses.

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
    if value_checks_active() and bool((w < 0).any()):
        index = tuple(torch.nonzero(w < 0)[0].tolist())
        raise ValueError(f"w must be non-negative, got {w[index].item()} at index {index}")
    R, t, s, valid = _procrustes_op(X.detach(), Y.detach(), w.detach(), bool(scale))
    out = (R, t, s) if scale else (R, t)
    return (*out, valid) if return_valid else out
