"""Closed-form reconstruction of the scale-normalised 3D pose from a 2.5D pose.

Given image-pixel locations (u_j, v_j), relative depths z_j = (Z_j - Z_root) / s and
intrinsics K, with x~_j = K^-1 [u_j, v_j, 1]^T and the reference bone (k, l) = ref of
unit length::

    d = x~_k - x~_l,   e = z_k x~_k - z_l x~_l
    ||z_root d + e||^2 = 1   <=>   a z_root^2 + 2 b z_root + c = 0,
    a = d.d,   b = d.e,   c = e.e - 1
    z_root = (-b + sqrt(b^2 - a c)) / a        (the far root)
    P_j = (z_root + z_j) x~_j                  valid = (b^2 - a c >= 0) and a > eps

Which root: the quadratic has a near and a far root, and ws3d always takes the far one.
When e.e < 1 (c < 0) the near root is negative, behind the camera, so the far root is
the only candidate; that covers people who stand, walk, sit or bend. Both roots are
positive only when the reference bone points nearly along the viewing ray and the
person is off the optical axis (say lying with the neck towards the camera, off to one
side); there the near root can be the true one. Measured over uniformly random body
orientations (tests/ops/test_reconstruct.py): 0 % wrong for people on the optical axis,
about 0.7 % up to ~17 degrees off-axis and 1.8 % up to ~27 degrees, every failure with
the bone within ~32 degrees of the ray.

Invalid rows (negative discriminant, or coincident reference joints, a <= eps) get a
finite stand-in, z_root = -b / a (the depth at which the bone is shortest) or 0 when
a <= eps, flagged by ``valid = False``; their z_root carries no gradient.

Backward, by implicit differentiation of a z^2 + 2 b z + c = 0 with s = sqrt(b^2 - ac):
dz/da = -z^2 / (2s), dz/db = -z / s, dz/dc = -1 / (2s), which with the bone vector
D = P_k - P_l = z_root d + e collapses to g_d = -(G z_root / s) D and g_e = -(G / s) D,
G being the total gradient reaching z_root.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ws3d.skeleton import REFERENCE_BONE

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
from ._constants import RECONSTRUCT_EPS
from ._ext import native
from ._validate import check_dim, check_float_tensor, check_no_nan, check_same_dtype_device

__all__ = ["reconstruct_3d", "reconstruct_3d_reference"]



# --------------------------------------------------------------------------- reference


def _root_depth(a: Tensor, b: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Far root of a z^2 + 2 b z + c, the validity flag and sqrt of the discriminant.

    Every branch is kept finite (safe denominators) so that autograd through the
    unselected side of a ``where`` cannot leak NaN.
    """
    disc = b * b - a * c
    valid = (disc >= 0) & (a > RECONSTRUCT_EPS)
    s = torch.sqrt(torch.where(valid, disc, torch.ones_like(disc)))
    a_safe = torch.where(a > RECONSTRUCT_EPS, a, torch.ones_like(a))
    # (-b + s) / a cancels when b > 0; c / (-b - s) is the same root without cancellation.
    den = torch.where(b > 0, -b - s, -torch.ones_like(b))
    far = torch.where(b > 0, c / den, (-b + s) / a_safe)
    fallback = torch.where(a > RECONSTRUCT_EPS, -b / a_safe, torch.zeros_like(a)).detach()
    return torch.where(valid, far, fallback), valid, s


def reconstruct_3d_reference(
    uv: Tensor, z: Tensor, K: Tensor, ref: tuple[int, int] = REFERENCE_BONE
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch reconstruct_3d, differentiable by autograd; the tests' ground truth.

    Args:
        uv: (B, J, 2) image pixels (u = column, v = row).
        z: (B, J) scale-normalised relative depths.
        K: (B, 3, 3) intrinsics.
        ref: (k, l) joints of the unit-length reference bone.

    Returns:
        P (B, J, 3) scale-normalised camera-frame pose, z_root (B,), valid (B,) bool.
    """
    k, l = ref
    dtype, acc = uv.dtype, accumulation_dtype(uv.dtype)
    uv, z, K = uv.to(acc), z.to(acc), K.to(acc).detach()
    homogeneous = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    x = homogeneous @ torch.linalg.inv(K).transpose(-1, -2)
    d = x[:, k] - x[:, l]
    e = z[:, k, None] * x[:, k] - z[:, l, None] * x[:, l]
    a = (d * d).sum(-1)
    b = (d * e).sum(-1)
    c = (e * e).sum(-1) - 1
    z_root, valid, _ = _root_depth(a, b, c)
    P = (z_root[:, None, None] + z[..., None]) * x
    return P.to(dtype), z_root.to(dtype), valid


def _reference_forward(uv: Tensor, z: Tensor, K: Tensor, k: int, l: int):
    return reconstruct_3d_reference(uv, z, K, (k, l))


def _reference_backward(g_P, g_root, uv, z, K, k: int, l: int):
    """The same closed-form backward as the Triton kernel, written with torch ops."""
    acc = accumulation_dtype(uv.dtype)
    uv, z, g_P, g_root = uv.to(acc), z.to(acc), g_P.to(acc), g_root.to(acc)
    K_inv = torch.linalg.inv(K.to(acc))
    x = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ K_inv.transpose(-1, -2)
    d = x[:, k] - x[:, l]
    e = z[:, k, None] * x[:, k] - z[:, l, None] * x[:, l]
    z_root, valid, s = _root_depth((d * d).sum(-1), (d * e).sum(-1), (e * e).sum(-1) - 1)
    g_x = (z_root[:, None, None] + z[..., None]) * g_P
    g_z = (g_P * x).sum(-1)
    G = torch.where(valid, g_root + g_z.sum(-1), torch.zeros_like(g_root))
    bone = z_root[:, None] * d + e
    g_d = -(G * z_root / s)[:, None] * bone
    g_e = -(G / s)[:, None] * bone
    g_x[:, k] += g_d + z[:, k, None] * g_e
    g_x[:, l] -= g_d + z[:, l, None] * g_e
    g_z[:, k] += (g_e * x[:, k]).sum(-1)
    g_z[:, l] -= (g_e * x[:, l]).sum(-1)
    g_uv = g_x @ K_inv[:, :, :2]
    return g_uv.to(uv.dtype), g_z.to(z.dtype)


# ------------------------------------------------------------------------------ triton

if HAS_TRITON:

    @triton.jit
    def _load_inverse_intrinsics(K_ptr, rows, mask, K_sb, K_sr, K_sc, ACC: tl.constexpr):
        """Inverse of each row's 3x3 K by the adjugate, as nine (BLOCK_B,) vectors."""
        base = K_ptr + rows * K_sb
        k00 = tl.load(base, mask=mask, other=1.0).to(ACC)
        k01 = tl.load(base + K_sc, mask=mask, other=0.0).to(ACC)
        k02 = tl.load(base + 2 * K_sc, mask=mask, other=0.0).to(ACC)
        k10 = tl.load(base + K_sr, mask=mask, other=0.0).to(ACC)
        k11 = tl.load(base + K_sr + K_sc, mask=mask, other=1.0).to(ACC)
        k12 = tl.load(base + K_sr + 2 * K_sc, mask=mask, other=0.0).to(ACC)
        k20 = tl.load(base + 2 * K_sr, mask=mask, other=0.0).to(ACC)
        k21 = tl.load(base + 2 * K_sr + K_sc, mask=mask, other=0.0).to(ACC)
        k22 = tl.load(base + 2 * K_sr + 2 * K_sc, mask=mask, other=1.0).to(ACC)
        c00 = k11 * k22 - k12 * k21
        c01 = k02 * k21 - k01 * k22
        c02 = k01 * k12 - k02 * k11
        c10 = k12 * k20 - k10 * k22
        c11 = k00 * k22 - k02 * k20
        c12 = k02 * k10 - k00 * k12
        c20 = k10 * k21 - k11 * k20
        c21 = k01 * k20 - k00 * k21
        c22 = k00 * k11 - k01 * k10
        r = 1.0 / (k00 * c00 + k01 * c10 + k02 * c20)
        return c00 * r, c01 * r, c02 * r, c10 * r, c11 * r, c12 * r, c20 * r, c21 * r, c22 * r

    @triton.jit
    def _root_depth_kernel_part(a, b, c, EPS: tl.constexpr):
        """Far root, validity and s = sqrt(disc) (1 where invalid), as in _root_depth."""
        disc = b * b - a * c
        valid = (disc >= 0) & (a > EPS)
        s = tl.sqrt(tl.where(valid, disc, 1.0))
        a_safe = tl.where(a > EPS, a, 1.0)
        far = tl.where(b > 0, c / tl.where(b > 0, -b - s, -1.0), (-b + s) / a_safe)
        fallback = tl.where(a > EPS, -b / a_safe, 0.0)
        return tl.where(valid, far, fallback), valid, s

    @triton.jit
    def _tile_rays(uv_ptr, z_ptr, K_ptr, pid, B, J, uv_sb, uv_sj, uv_sc, z_sb, z_sj, K_sb, K_sr, K_sc,
                   ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_J: tl.constexpr):  # fmt: skip
        """This program's tile: its rows (int64), joints and masks, the rays
        x~ = K^-1 [u, v, 1]^T, the relative depths z, and K^-1's first two columns (by row)."""
        rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
        joints = tl.arange(0, BLOCK_J)
        row_ok = rows < B
        tile_ok = row_ok[:, None] & (joints < J)[None, :]
        rows = rows.to(tl.int64)
        i00, i01, i02, i10, i11, i12, i20, i21, i22 = _load_inverse_intrinsics(
            K_ptr, rows, row_ok, K_sb, K_sr, K_sc, ACC)
        uv_at = uv_ptr + rows[:, None] * uv_sb + joints[None, :] * uv_sj
        u = tl.load(uv_at, mask=tile_ok, other=0.0).to(ACC)
        v = tl.load(uv_at + uv_sc, mask=tile_ok, other=0.0).to(ACC)
        zz = tl.load(z_ptr + rows[:, None] * z_sb + joints[None, :] * z_sj, mask=tile_ok, other=0.0).to(ACC)
        x0 = i00[:, None] * u + i01[:, None] * v + i02[:, None]
        x1 = i10[:, None] * u + i11[:, None] * v + i12[:, None]
        x2 = i20[:, None] * u + i21[:, None] * v + i22[:, None]
        return rows, row_ok, joints, tile_ok, x0, x1, x2, zz, i00, i01, i10, i11, i20, i21

    @triton.jit
    def _reference_bone(x0, x1, x2, zz, joints, k, l):
        """Masks of the reference joints k, l, and their rays and depths, picked out of the
        tile by masked row sums."""
        is_k = (joints == k)[None, :]
        is_l = (joints == l)[None, :]
        xk0 = tl.sum(tl.where(is_k, x0, 0.0), 1)
        xk1 = tl.sum(tl.where(is_k, x1, 0.0), 1)
        xk2 = tl.sum(tl.where(is_k, x2, 0.0), 1)
        xl0 = tl.sum(tl.where(is_l, x0, 0.0), 1)
        xl1 = tl.sum(tl.where(is_l, x1, 0.0), 1)
        xl2 = tl.sum(tl.where(is_l, x2, 0.0), 1)
        zk = tl.sum(tl.where(is_k, zz, 0.0), 1)
        zl = tl.sum(tl.where(is_l, zz, 0.0), 1)
        return is_k, is_l, xk0, xk1, xk2, xl0, xl1, xl2, zk, zl

    @triton.jit
    def _bone_root_depth(xk0, xk1, xk2, xl0, xl1, xl2, zk, zl, EPS: tl.constexpr):
        """d = x~_k - x~_l, e = z_k x~_k - z_l x~_l, and the root depth that makes the bone
        (z_root d + e) unit length, its validity and s = sqrt(disc)."""
        d0, d1, d2 = xk0 - xl0, xk1 - xl1, xk2 - xl2
        e0, e1, e2 = zk * xk0 - zl * xl0, zk * xk1 - zl * xl1, zk * xk2 - zl * xl2
        a = d0 * d0 + d1 * d1 + d2 * d2
        b = d0 * e0 + d1 * e1 + d2 * e2
        c = e0 * e0 + e1 * e1 + e2 * e2 - 1.0
        z_root, valid, s = _root_depth_kernel_part(a, b, c, EPS)
        return d0, d1, d2, e0, e1, e2, z_root, valid, s

    @triton.jit
    def _reconstruct_fwd_kernel(
        uv_ptr, z_ptr, K_ptr, P_ptr, root_ptr, valid_ptr, B, J, k, l,
        uv_sb, uv_sj, uv_sc, z_sb, z_sj, K_sb, K_sr, K_sc,
        ACC: tl.constexpr, EPS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_J: tl.constexpr,
    ):
        rows, row_ok, joints, tile_ok, x0, x1, x2, zz, _, _, _, _, _, _ = _tile_rays(
            uv_ptr, z_ptr, K_ptr, tl.program_id(0), B, J, uv_sb, uv_sj, uv_sc, z_sb, z_sj, K_sb, K_sr, K_sc,
            ACC, BLOCK_B, BLOCK_J)
        _, _, xk0, xk1, xk2, xl0, xl1, xl2, zk, zl = _reference_bone(x0, x1, x2, zz, joints, k, l)
        _, _, _, _, _, _, z_root, valid, _ = _bone_root_depth(xk0, xk1, xk2, xl0, xl1, xl2, zk, zl, EPS)
        depth = z_root[:, None] + zz
        out_ty = P_ptr.dtype.element_ty
        P_at = P_ptr + (rows[:, None] * J + joints[None, :]) * 3
        tl.store(P_at, (depth * x0).to(out_ty), mask=tile_ok)
        tl.store(P_at + 1, (depth * x1).to(out_ty), mask=tile_ok)
        tl.store(P_at + 2, (depth * x2).to(out_ty), mask=tile_ok)
        tl.store(root_ptr + rows, z_root.to(out_ty), mask=row_ok)
        tl.store(valid_ptr + rows, valid, mask=row_ok)

    @triton.jit
    def _reconstruct_bwd_kernel(
        g_P_ptr, g_root_ptr, uv_ptr, z_ptr, K_ptr, g_uv_ptr, g_z_ptr, B, J, k, l,
        g_P_sb, g_P_sj, g_P_sc, g_root_sb,
        uv_sb, uv_sj, uv_sc, z_sb, z_sj, K_sb, K_sr, K_sc,
        ACC: tl.constexpr, EPS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_J: tl.constexpr,
    ):
        rows, row_ok, joints, tile_ok, x0, x1, x2, zz, i00, i01, i10, i11, i20, i21 = _tile_rays(
            uv_ptr, z_ptr, K_ptr, tl.program_id(0), B, J, uv_sb, uv_sj, uv_sc, z_sb, z_sj, K_sb, K_sr, K_sc,
            ACC, BLOCK_B, BLOCK_J)
        is_k, is_l, xk0, xk1, xk2, xl0, xl1, xl2, zk, zl = _reference_bone(x0, x1, x2, zz, joints, k, l)
        d0, d1, d2, e0, e1, e2, z_root, valid, s = _bone_root_depth(xk0, xk1, xk2, xl0, xl1, xl2, zk, zl, EPS)
        g_at = g_P_ptr + rows[:, None] * g_P_sb + joints[None, :] * g_P_sj
        gp0 = tl.load(g_at, mask=tile_ok, other=0.0).to(ACC)
        gp1 = tl.load(g_at + g_P_sc, mask=tile_ok, other=0.0).to(ACC)
        gp2 = tl.load(g_at + 2 * g_P_sc, mask=tile_ok, other=0.0).to(ACC)
        g_root = tl.load(g_root_ptr + rows * g_root_sb, mask=row_ok, other=0.0).to(ACC)
        depth = z_root[:, None] + zz
        g_x0, g_x1, g_x2 = depth * gp0, depth * gp1, depth * gp2
        g_z = gp0 * x0 + gp1 * x1 + gp2 * x2
        G = tl.where(valid, g_root + tl.sum(g_z, 1), 0.0)
        bone0, bone1, bone2 = z_root * d0 + e0, z_root * d1 + e1, z_root * d2 + e2
        f_d = -G * z_root / s
        f_e = -G / s
        gd0, gd1, gd2 = f_d * bone0, f_d * bone1, f_d * bone2
        ge0, ge1, ge2 = f_e * bone0, f_e * bone1, f_e * bone2
        g_x0 += tl.where(is_k, (gd0 + zk * ge0)[:, None], 0.0) - tl.where(is_l, (gd0 + zl * ge0)[:, None], 0.0)
        g_x1 += tl.where(is_k, (gd1 + zk * ge1)[:, None], 0.0) - tl.where(is_l, (gd1 + zl * ge1)[:, None], 0.0)
        g_x2 += tl.where(is_k, (gd2 + zk * ge2)[:, None], 0.0) - tl.where(is_l, (gd2 + zl * ge2)[:, None], 0.0)
        g_z += tl.where(is_k, (ge0 * xk0 + ge1 * xk1 + ge2 * xk2)[:, None], 0.0)
        g_z -= tl.where(is_l, (ge0 * xl0 + ge1 * xl1 + ge2 * xl2)[:, None], 0.0)
        # x~ = K^-1 [u, v, 1]^T, so dL/du and dL/dv are the first two columns of K^-T g_x.
        g_u = i00[:, None] * g_x0 + i10[:, None] * g_x1 + i20[:, None] * g_x2
        g_v = i01[:, None] * g_x0 + i11[:, None] * g_x1 + i21[:, None] * g_x2
        out = rows[:, None] * J + joints[None, :]
        ty = g_uv_ptr.dtype.element_ty
        tl.store(g_uv_ptr + 2 * out, g_u.to(ty), mask=tile_ok)
        tl.store(g_uv_ptr + 2 * out + 1, g_v.to(ty), mask=tile_ok)
        tl.store(g_z_ptr + out, g_z.to(ty), mask=tile_ok)


def _tile(J: int) -> tuple[int, int]:
    """(rows, joints) per program: 128 elements over the default 4 warps, one per thread. A
    larger tile keeps more rows of rays and gradients live per thread: 2048 elements spilled
    1.4 kB per thread in the float32 backward (benchmarks/results/kernel_resources.md)."""
    block_j = triton.next_power_of_2(J)
    return max(1, 128 // block_j), block_j


def _triton_forward(uv: Tensor, z: Tensor, K: Tensor, k: int, l: int):
    B, J = z.shape
    P = torch.empty(B, J, 3, device=uv.device, dtype=uv.dtype)
    z_root = torch.empty(B, device=uv.device, dtype=uv.dtype)
    valid = torch.empty(B, device=uv.device, dtype=torch.bool)
    block_b, block_j = _tile(J)
    with on_device_of(uv):
        _reconstruct_fwd_kernel[(triton.cdiv(B, block_b),)](
            uv, z, K, P, z_root, valid, B, J, k, l, *uv.stride(), *z.stride(), *K.stride(),
            ACC=triton_accumulation_dtype(uv.dtype), EPS=RECONSTRUCT_EPS, BLOCK_B=block_b, BLOCK_J=block_j,
        )
    return P, z_root, valid


def _triton_backward(g_P, g_root, uv, z, K, k: int, l: int):
    B, J = z.shape
    g_uv = torch.empty(B, J, 2, device=uv.device, dtype=uv.dtype)
    g_z = torch.empty(B, J, device=uv.device, dtype=uv.dtype)
    block_b, block_j = _tile(J)
    with on_device_of(uv):
        _reconstruct_bwd_kernel[(triton.cdiv(B, block_b),)](
            g_P, g_root, uv, z, K, g_uv, g_z, B, J, k, l, *g_P.stride(), *g_root.stride(),
            *uv.stride(), *z.stride(), *K.stride(),
            ACC=triton_accumulation_dtype(uv.dtype), EPS=RECONSTRUCT_EPS, BLOCK_B=block_b, BLOCK_J=block_j,
        )
    return g_uv, g_z


# ------------------------------------------------------------------------------ native
# ws3d/csrc/reconstruct_cpu.cpp and reconstruct_cuda.cu: float32 / float64, contiguous.


def _native_forward(uv: Tensor, z: Tensor, K: Tensor, k: int, l: int):
    uv_, z_, K_ = native_inputs(uv, z, K)
    B, J = z.shape
    P, z_root = uv_.new_empty(B, J, 3), uv_.new_empty(B)
    valid = torch.empty(B, dtype=torch.bool, device=uv.device)
    native().reconstruct_forward(uv_, z_, K_, k, l, P, z_root, valid)
    return P.to(uv.dtype), z_root.to(uv.dtype), valid


def _native_backward(g_P, g_root, uv, z, K, k: int, l: int):
    g_P_, g_root_, uv_, z_, K_ = native_inputs(g_P, g_root, uv, z, K)
    g_uv, g_z = torch.empty_like(uv_), torch.empty_like(z_)
    native().reconstruct_backward(g_P_, g_root_, uv_, z_, K_, k, l, g_uv, g_z)
    return g_uv.to(uv.dtype), g_z.to(z.dtype)


# ------------------------------------------------------------------ op + dispatcher

_IMPLEMENTATIONS = {
    "reference": (_reference_forward, _reference_backward),
    "triton": (_triton_forward, _triton_backward),
    "native": (_native_forward, _native_backward),
}


@torch.library.custom_op("ws3d::reconstruct_3d", mutates_args=())
def _reconstruct_op(uv: Tensor, z: Tensor, K: Tensor, k: int, l: int) -> tuple[Tensor, Tensor, Tensor]:
    if z.shape[0] == 0:
        return _reference_forward(uv, z, K, k, l)
    forward, _ = _IMPLEMENTATIONS[select_backend(uv.device)]
    return forward(uv, z, K, k, l)


@_reconstruct_op.register_fake
def _(uv, z, K, k, l):
    B, J = z.shape
    return uv.new_empty(B, J, 3), uv.new_empty(B), uv.new_empty(B, dtype=torch.bool)


@torch.library.custom_op("ws3d::reconstruct_3d_backward", mutates_args=())
def _reconstruct_backward_op(
    grad_P: Tensor, grad_z_root: Tensor, uv: Tensor, z: Tensor, K: Tensor, k: int, l: int
) -> tuple[Tensor, Tensor]:
    if z.shape[0] == 0:
        return torch.zeros_like(uv), torch.zeros_like(z)
    _, backward = _IMPLEMENTATIONS[select_backend(uv.device)]
    return backward(grad_P, grad_z_root, uv, z, K, k, l)


@_reconstruct_backward_op.register_fake
def _(grad_P, grad_z_root, uv, z, K, k, l):
    return uv.new_empty(uv.shape), z.new_empty(z.shape)


def _setup_context(ctx, inputs, output):
    uv, z, K, k, l = inputs
    ctx.save_for_backward(uv, z, K)
    ctx.ref = (k, l)
    ctx.mark_non_differentiable(output[2])


def _backward(ctx, grad_P, grad_z_root, _grad_valid):
    uv, z, K = ctx.saved_tensors
    B, J = z.shape
    grad_P = uv.new_zeros(B, J, 3) if grad_P is None else grad_P
    grad_z_root = uv.new_zeros(B) if grad_z_root is None else grad_z_root
    grad_uv, grad_z = _reconstruct_backward_op(grad_P, grad_z_root, uv, z, K, *ctx.ref)
    return grad_uv, grad_z, None, None, None


_reconstruct_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------ public API


def reconstruct_3d(
    uv: Tensor, z: Tensor, K: Tensor, ref: tuple[int, int] = REFERENCE_BONE
) -> tuple[Tensor, Tensor, Tensor]:
    """Absolute, scale-normalised 3D pose from a 2.5D pose, in closed form.

    Solves ||P_k - P_l|| = 1 for the root depth (the far root; see the module
    docstring for when that root is the wrong one) and back-projects every joint.

    Args:
        uv: (B, J, 2) joint locations in image pixels (u = column, v = row).
        z: (B, J) relative depths (Z_j - Z_root) / s, positive = farther than the root.
        K: (B, 3, 3) or (3, 3) intrinsics that map camera coordinates to those pixels.
            K gets no gradient.
        ref: (k, l) the reference bone of unit length; the default
            ``ws3d.skeleton.REFERENCE_BONE`` = (8, 0), neck-pelvis in the Human3.6M 17-joint order.

    Returns:
        P: (B, J, 3) camera-frame pose in units of s (multiply by s for millimetres).
        z_root: (B,) root depth Z_root / s.
        valid: (B,) bool; False where the discriminant is negative or the reference
            joints coincide. Such rows hold finite stand-ins and finite gradients.

    Raises:
        TypeError: non-float inputs or dtypes that differ.
        ValueError: wrong shapes, devices that differ, ref out of range or k == l,
            and (value checks, eager mode only) NaN in uv, z or K.

    Example (a person 5 units in front of a pinhole camera with f = 100, c = 0):
        >>> K = torch.tensor([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])
        >>> uv = torch.tensor([[[0.0, 0.0], [0.0, -20.0]]])  # root, then neck 1 unit up
        >>> P, z_root, valid = reconstruct_3d(uv, torch.zeros(1, 2), K, ref=(1, 0))
        >>> z_root.tolist(), valid.tolist()
        ([5.0], [True])
    """
    check_float_tensor("uv", uv, 3, "(B, J, 2)")
    check_float_tensor("z", z, 2, "(B, J)")
    check_float_tensor("K", K, (2, 3), "(B, 3, 3) or (3, 3)")
    check_same_dtype_device({"uv": uv, "z": z, "K": K})
    check_dim("uv", uv, 2, 2, "(B, J, 2)")
    B, J = uv.shape[:2]
    if z.shape != (B, J):
        raise ValueError(f"z must have shape (B, J) = {(B, J)}, got {tuple(z.shape)}")
    given_K = K  # screened for NaN as given: a (3, 3) K is 9 values, expanded it is 9 B
    if K.dim() == 2:
        K = K.expand(B, 3, 3)
    if K.shape != (B, 3, 3):
        raise ValueError(f"K must have shape (B, 3, 3) = {(B, 3, 3)} or (3, 3), got {tuple(K.shape)}")
    k, l = ref
    if not (0 <= k < J and 0 <= l < J) or k == l:
        raise ValueError(f"ref must name two different joints in 0..{J - 1}, got {ref}")
    for name, x in (("uv", uv), ("z", z), ("K", given_K)):
        check_no_nan(name, x)
    return _reconstruct_op(uv, z, K, int(k), int(l))
