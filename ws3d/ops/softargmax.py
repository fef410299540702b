"""Spatial softmax + soft-argmax + depth summation: the read-out of a 2.5D pose head.

For every row (b, j) of ``heatmaps`` (B, J, H, W)::

    p    = softmax(beta * h)            over the H*W grid (beta MULTIPLIES the logits)
    u, v = sum p * x, sum p * y          x = column 0..W-1, y = row 0..H-1 (heatmap pixels)
    z    = sum p * d                     d = the joint's latent depth map
    conf = h bilinearly sampled at (u, v)   (the paper's phi; carries no gradient)

The forward reads h and d once and keeps four numbers per row in the accumulation dtype
(float32, or float64): the log-sum-exp of ``beta * h`` divided by beta (``lse``, in
heatmap units so that huge logits cannot overflow) and u, v, z before any rounding to
half precision. The backward recomputes ``p = exp(beta * (h - lse))`` from them and
writes, in one pass over h and d::

    dL/dd_i = g_z p_i
    dL/dh_i = beta p_i (g_i - gbar),  g_i = g_u x_i + g_v y_i + g_z d_i,  gbar = g_u u + g_v v + g_z z

This file holds the pure-PyTorch reference (the ground truth for tests and the CPU
path), the Triton kernels, the custom-op registration and the dispatcher.
"""

from __future__ import annotations

import math

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
from ._validate import (
    check_float_tensor,
    check_same_dtype_device,
    value_checks_active,
)

__all__ = ["softargmax_2p5d", "softargmax_2p5d_reference"]


# --------------------------------------------------------------------------- reference


def _bilinear_sample(h: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Sample ``h`` (B, J, H, W) at (u, v) (B, J), clamped to the grid."""
    H, W = h.shape[-2:]
    # NaN coordinates (a row with no distribution) sample the origin instead of garbage.
    u = torch.nan_to_num(u, nan=0.0).clamp(0, W - 1)
    v = torch.nan_to_num(v, nan=0.0).clamp(0, H - 1)
    x0 = u.floor().long().clamp(max=W - 1)
    y0 = v.floor().long().clamp(max=H - 1)
    x1 = (x0 + 1).clamp(max=W - 1)
    y1 = (y0 + 1).clamp(max=H - 1)
    wx = u - x0.to(u.dtype)
    wy = v - y0.to(v.dtype)
    flat = h.reshape(*h.shape[:2], H * W)

    def corner(y: Tensor, x: Tensor, weight: Tensor) -> Tensor:
        # A corner with weight 0 contributes nothing, even where h is -inf.
        value = flat.gather(-1, (y * W + x).unsqueeze(-1)).squeeze(-1)
        return torch.where(weight == 0, 0.0, value * weight)

    return (
        corner(y0, x0, (1 - wx) * (1 - wy))
        + corner(y0, x1, wx * (1 - wy))
        + corner(y1, x0, (1 - wx) * wy)
        + corner(y1, x1, wx * wy)
    )


def softargmax_2p5d_reference(
    heatmaps: Tensor, depthmaps: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch softargmax_2p5d, differentiable by autograd; the tests' ground truth.

    Args:
        heatmaps: (B, J, H, W) 2D heatmap logits.
        depthmaps: (B, J, H, W) latent depth maps.
        beta: softmax sharpness; it multiplies the logits.

    Returns:
        uv (B, J, 2), z (B, J), conf (B, J), in the input dtype (computed in float32,
        or float64 for float64 inputs).
    """
    u, v, z, conf = _expectations(heatmaps, depthmaps, beta)
    dtype = heatmaps.dtype
    return torch.stack([u, v], -1).to(dtype), z.to(dtype), conf.to(dtype)


def _expectations(heatmaps: Tensor, depthmaps: Tensor, beta: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """u, v, z and conf (B, J) of the reference, in the accumulation dtype."""
    B, J, H, W = heatmaps.shape
    acc = accumulation_dtype(heatmaps.dtype)
    h = heatmaps.to(acc).reshape(B, J, H * W)
    d = depthmaps.to(acc).reshape(B, J, H * W)
    # Subtracting the row max before scaling by beta keeps beta * h from overflowing.
    p = torch.softmax(beta * (h - h.amax(-1, keepdim=True)), dim=-1)
    index = torch.arange(H * W, device=h.device)
    x = (index % W).to(acc)
    y = torch.div(index, W, rounding_mode="floor").to(acc)
    u = (p * x).sum(-1)
    v = (p * y).sum(-1)
    z = (p * d).sum(-1)
    conf = _bilinear_sample(h.detach().reshape(B, J, H, W), u.detach(), v.detach())
    return u, v, z, conf


# The forward's row statistics, saved for the backward in the accumulation dtype (B, J, 4):
# lse = log sum exp(beta h) / beta, and u, v, z unrounded (the backward subtracts them from
# every pixel's coordinates and depth: rounded to float16 / bfloat16 they cost grad_h 31 / 41
# eps of its row's largest value, where unrounded it is within half an eps).
LSE, U, V, Z = range(4)


def _reference_forward(h: Tensor, d: Tensor, beta: float):
    u, v, z, conf = _expectations(h, d, beta)
    hf = h.to(u.dtype).flatten(2)
    m = hf.amax(-1)
    lse = m + torch.logsumexp(beta * (hf - m.unsqueeze(-1)), -1) / beta
    dtype = h.dtype
    return torch.stack([u, v], -1).to(dtype), z.to(dtype), conf.to(dtype), torch.stack([lse, u, v, z], -1)


def _reference_backward(g_uv, g_z, h, d, stats, beta):
    B, J, H, W = h.shape
    acc = stats.dtype
    lse = stats[..., LSE]
    hf, df = h.to(acc).flatten(2), d.to(acc).flatten(2)
    p = torch.exp(beta * (hf - lse.unsqueeze(-1)))
    index = torch.arange(H * W, device=h.device)
    x = (index % W).to(acc)
    y = torch.div(index, W, rounding_mode="floor").to(acc)
    gu, gv = g_uv[..., 0].to(acc).unsqueeze(-1), g_uv[..., 1].to(acc).unsqueeze(-1)
    gz = g_z.to(acc).unsqueeze(-1)
    gbar = gu * stats[..., U : U + 1] + gv * stats[..., V : V + 1] + gz * stats[..., Z : Z + 1]
    grad_h = beta * p * (gu * x + gv * y + gz * df - gbar)
    grad_d = gz * p
    return grad_h.reshape(h.shape).to(h.dtype), grad_d.reshape(d.shape).to(d.dtype)


# ------------------------------------------------------------------------------ triton

# Lanes per program; larger maps loop over chunks with the online softmax, still reading each
# element once. 1024 over 8 warps leaves each thread 4 elements of 5 running sums: a 64x64 map
# in one 4096-lane chunk held 16 (125 registers, 25 % occupancy on sm_90; 1024: 48 registers,
# 62 %; benchmarks/results/kernel_resources.md).
_MAX_BLOCK = 1024

if HAS_TRITON:

    @triton.jit
    def _corner(ptr, weight, ACC: tl.constexpr):
        """One bilinear corner; weight 0 contributes nothing, even where h is -inf."""
        value = tl.load(ptr).to(ACC)
        return tl.where(weight == 0, 0.0, value * weight)

    @triton.jit
    def _softargmax_fwd_kernel(
        h_ptr, d_ptr, uv_ptr, z_ptr, conf_ptr, stats_ptr,
        J, H, W, h_sb, h_sj, d_sb, d_sj, beta,
        ACC: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        b = row // J
        j = row % J
        h_row = h_ptr + b.to(tl.int64) * h_sb + j.to(tl.int64) * h_sj
        d_row = d_ptr + b.to(tl.int64) * d_sb + j.to(tl.int64) * d_sj
        hw = H * W
        lanes = tl.arange(0, BLOCK)
        # Per-lane online softmax: each lane keeps its own max and rescaled sums, and
        # the lanes are merged once at the end (no reduction inside the loop).
        m = tl.full([BLOCK], float("-inf"), ACC)
        s_p = tl.zeros([BLOCK], ACC)
        s_x = tl.zeros([BLOCK], ACC)
        s_y = tl.zeros([BLOCK], ACC)
        s_d = tl.zeros([BLOCK], ACC)
        for start in range(0, hw, BLOCK):
            idx = start + lanes
            inside = idx < hw
            h = tl.load(h_row + idx, mask=inside, other=float("-inf")).to(ACC)
            d = tl.load(d_row + idx, mask=inside, other=0.0).to(ACC)
            m_new = tl.maximum(m, h)
            # A lane that has seen only -inf shifts by 0 instead, so exp gives 0, not NaN.
            shift = tl.where(m_new == float("-inf"), 0.0, m_new)
            rescale = tl.exp(beta * (m - shift))
            e = tl.exp(beta * (h - shift))
            x = (idx % W).to(ACC)
            y = (idx // W).to(ACC)
            s_p = s_p * rescale + e
            s_x = s_x * rescale + e * x
            s_y = s_y * rescale + e * y
            s_d = s_d * rescale + e * d
            m = m_new
        m_row = tl.max(m, 0)
        weight = tl.exp(beta * (m - tl.where(m_row == float("-inf"), 0.0, m_row)))
        total = tl.sum(s_p * weight, 0)
        u = tl.sum(s_x * weight, 0) / total
        v = tl.sum(s_y * weight, 0) / total
        z = tl.sum(s_d * weight, 0) / total
        lse = m_row + tl.log(total) / beta
        # conf: bilinear sample of the raw heatmap, clamped to the grid; NaN -> origin.
        # W - 1.0, not (W - 1).to(): Triton turns an int argument equal to 1 into a constexpr.
        uc = tl.minimum(tl.maximum(tl.where(u == u, u, 0.0), 0.0), W - 1.0)
        vc = tl.minimum(tl.maximum(tl.where(v == v, v, 0.0), 0.0), H - 1.0)
        x0 = tl.minimum(uc.to(tl.int32), W - 1)
        y0 = tl.minimum(vc.to(tl.int32), H - 1)
        x1 = tl.minimum(x0 + 1, W - 1)
        y1 = tl.minimum(y0 + 1, H - 1)
        wx = uc - x0.to(ACC)
        wy = vc - y0.to(ACC)
        conf = (_corner(h_row + y0 * W + x0, (1 - wx) * (1 - wy), ACC)
                + _corner(h_row + y0 * W + x1, wx * (1 - wy), ACC)
                + _corner(h_row + y1 * W + x0, (1 - wx) * wy, ACC)
                + _corner(h_row + y1 * W + x1, wx * wy, ACC))
        out_ty = uv_ptr.dtype.element_ty
        tl.store(uv_ptr + 2 * row, u.to(out_ty))
        tl.store(uv_ptr + 2 * row + 1, v.to(out_ty))
        tl.store(z_ptr + row, z.to(out_ty))
        tl.store(conf_ptr + row, conf.to(out_ty))
        tl.store(stats_ptr + 4 * row, lse)  # lse, u, v, z in ACC: see LSE, U, V, Z
        tl.store(stats_ptr + 4 * row + 1, u)
        tl.store(stats_ptr + 4 * row + 2, v)
        tl.store(stats_ptr + 4 * row + 3, z)

    @triton.jit
    def _softargmax_bwd_kernel(
        g_uv_ptr, g_z_ptr, h_ptr, d_ptr, stats_ptr, dh_ptr, dd_ptr,
        J, H, W, h_sb, h_sj, d_sb, d_sj, g_uv_sb, g_uv_sj, g_uv_sc, g_z_sb, g_z_sj, beta,
        ACC: tl.constexpr, BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        b = row // J
        j = row % J
        h_row = h_ptr + b.to(tl.int64) * h_sb + j.to(tl.int64) * h_sj
        d_row = d_ptr + b.to(tl.int64) * d_sb + j.to(tl.int64) * d_sj
        hw = H * W
        out_row = row.to(tl.int64) * hw
        g_uv_row = g_uv_ptr + b * g_uv_sb + j * g_uv_sj
        gu = tl.load(g_uv_row).to(ACC)
        gv = tl.load(g_uv_row + g_uv_sc).to(ACC)
        gz = tl.load(g_z_ptr + b * g_z_sb + j * g_z_sj).to(ACC)
        lse = tl.load(stats_ptr + 4 * row)
        u = tl.load(stats_ptr + 4 * row + 1)
        v = tl.load(stats_ptr + 4 * row + 2)
        z = tl.load(stats_ptr + 4 * row + 3)
        g_bar = gu * u + gv * v + gz * z
        lanes = tl.arange(0, BLOCK)
        for start in range(0, hw, BLOCK):
            idx = start + lanes
            inside = idx < hw
            h = tl.load(h_row + idx, mask=inside, other=float("-inf")).to(ACC)
            d = tl.load(d_row + idx, mask=inside, other=0.0).to(ACC)
            p = tl.exp(beta * (h - lse))
            g = gu * (idx % W).to(ACC) + gv * (idx // W).to(ACC) + gz * d
            tl.store(dh_ptr + out_row + idx, (beta * p * (g - g_bar)).to(dh_ptr.dtype.element_ty), mask=inside)
            tl.store(dd_ptr + out_row + idx, (gz * p).to(dd_ptr.dtype.element_ty), mask=inside)


def _rows_contiguous(x: Tensor) -> Tensor:
    """The kernels address rows by (b, j) strides but need each H*W plane contiguous."""
    H, W = x.shape[-2:]
    if x.stride(-1) == 1 and (H == 1 or x.stride(-2) == W):
        return x
    return x.contiguous()


def _launch_config(hw: int) -> tuple[int, int]:
    """(lanes, warps) of the programs for maps of ``hw`` pixels."""
    block = min(triton.next_power_of_2(hw), _MAX_BLOCK)
    return block, 8 if block >= _MAX_BLOCK else 4


def _triton_forward(h: Tensor, d: Tensor, beta: float):
    h, d = _rows_contiguous(h), _rows_contiguous(d)
    B, J, H, W = h.shape
    acc = accumulation_dtype(h.dtype)
    uv = torch.empty(B, J, 2, device=h.device, dtype=h.dtype)
    z = torch.empty(B, J, device=h.device, dtype=h.dtype)
    conf = torch.empty_like(z)
    stats = torch.empty(B, J, 4, device=h.device, dtype=acc)
    block, warps = _launch_config(H * W)
    with on_device_of(h):
        _softargmax_fwd_kernel[(B * J,)](
            h, d, uv, z, conf, stats, J, H, W, h.stride(0), h.stride(1), d.stride(0), d.stride(1),
            beta, ACC=triton_accumulation_dtype(h.dtype), BLOCK=block, num_warps=warps,
        )
    return uv, z, conf, stats


def _triton_backward(g_uv, g_z, h, d, stats, beta):
    h, d = _rows_contiguous(h), _rows_contiguous(d)
    B, J, H, W = h.shape
    grad_h = torch.empty(B, J, H, W, device=h.device, dtype=h.dtype)
    grad_d = torch.empty_like(grad_h)
    block, warps = _launch_config(H * W)
    with on_device_of(h):
        _softargmax_bwd_kernel[(B * J,)](
            g_uv, g_z, h, d, stats, grad_h, grad_d, J, H, W,
            h.stride(0), h.stride(1), d.stride(0), d.stride(1),
            *g_uv.stride(), *g_z.stride(), beta,
            ACC=triton_accumulation_dtype(h.dtype), BLOCK=block, num_warps=warps,
        )
    return grad_h, grad_d


# ------------------------------------------------------------------------------ native
# ws3d/csrc/softargmax_cpu.cpp and softargmax_cuda.cu take float32 / float64; half precision
# is computed in float32 and rounded on the way out, as the Triton kernels do.


def _native_forward(h: Tensor, d: Tensor, beta: float):
    acc = accumulation_dtype(h.dtype)
    h_, d_ = _rows_contiguous(h.to(acc)), _rows_contiguous(d.to(acc))
    B, J = h.shape[:2]
    uv = h_.new_empty(B, J, 2)
    z, conf, lse = h_.new_empty(B, J), h_.new_empty(B, J), h_.new_empty(B, J)
    native().softargmax_forward(h_, d_, beta, uv, z, conf, lse)
    stats = torch.stack([lse, uv[..., 0], uv[..., 1], z], -1)
    return uv.to(h.dtype), z.to(h.dtype), conf.to(h.dtype), stats


def _native_backward(g_uv, g_z, h, d, stats, beta):
    acc = accumulation_dtype(h.dtype)
    h_, d_ = _rows_contiguous(h.to(acc)), _rows_contiguous(d.to(acc))
    grad_h, grad_d = torch.empty(h.shape, dtype=acc, device=h.device), torch.empty(d.shape, dtype=acc, device=d.device)
    g_uv_, g_z_ = native_inputs(g_uv, g_z)
    uv_, z_, lse_ = stats[..., U : V + 1].contiguous(), stats[..., Z].contiguous(), stats[..., LSE].contiguous()
    native().softargmax_backward(g_uv_, g_z_, h_, d_, uv_, z_, lse_, beta, grad_h, grad_d)
    return grad_h.to(h.dtype), grad_d.to(d.dtype)


# ------------------------------------------------------------------ op + dispatcher

_IMPLEMENTATIONS = {
    "reference": (_reference_forward, _reference_backward),
    "triton": (_triton_forward, _triton_backward),
    "native": (_native_forward, _native_backward),
}


@torch.library.custom_op("ws3d::softargmax_2p5d", mutates_args=())
def _softargmax_op(
    heatmaps: Tensor, depthmaps: Tensor, beta: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns (uv, z, conf, stats); stats (B, J, 4), the row statistics the backward
    reuses (lse, u, v, z in the accumulation dtype: LSE, U, V, Z)."""
    if heatmaps.shape[0] * heatmaps.shape[1] == 0:
        return _reference_forward(heatmaps, depthmaps, beta)
    forward, _ = _IMPLEMENTATIONS[select_backend(heatmaps.device)]
    return forward(heatmaps, depthmaps, beta)


@_softargmax_op.register_fake
def _(heatmaps, depthmaps, beta):
    B, J = heatmaps.shape[:2]
    z = heatmaps.new_empty(B, J)
    stats = heatmaps.new_empty(B, J, 4, dtype=accumulation_dtype(heatmaps.dtype))
    return heatmaps.new_empty(B, J, 2), z, torch.empty_like(z), stats


@torch.library.custom_op("ws3d::softargmax_2p5d_backward", mutates_args=())
def _softargmax_backward_op(
    grad_uv: Tensor, grad_z: Tensor, heatmaps: Tensor, depthmaps: Tensor, stats: Tensor, beta: float,
) -> tuple[Tensor, Tensor]:
    if heatmaps.numel() == 0:
        return torch.zeros_like(heatmaps), torch.zeros_like(depthmaps)
    _, backward = _IMPLEMENTATIONS[select_backend(heatmaps.device)]
    return backward(grad_uv, grad_z, heatmaps, depthmaps, stats, beta)


@_softargmax_backward_op.register_fake
def _(grad_uv, grad_z, heatmaps, depthmaps, stats, beta):
    return (
        torch.empty(heatmaps.shape, dtype=heatmaps.dtype, device=heatmaps.device),
        torch.empty(depthmaps.shape, dtype=depthmaps.dtype, device=depthmaps.device),
    )


def _setup_context(ctx, inputs, output):
    heatmaps, depthmaps, beta = inputs
    uv, z, conf, stats = output
    ctx.save_for_backward(heatmaps, depthmaps, stats)
    ctx.beta = beta
    ctx.mark_non_differentiable(conf, stats)


def _backward(ctx, grad_uv, grad_z, _grad_conf, _grad_stats):
    heatmaps, depthmaps, stats = ctx.saved_tensors
    B, J = stats.shape[:2]
    grad_uv = heatmaps.new_zeros(B, J, 2) if grad_uv is None else grad_uv
    grad_z = heatmaps.new_zeros(B, J) if grad_z is None else grad_z
    grad_h, grad_d = _softargmax_backward_op(grad_uv, grad_z, heatmaps, depthmaps, stats, ctx.beta)
    return grad_h, grad_d, None


_softargmax_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------ public API


def _check_rows(heatmaps: Tensor, z: Tensor, lse: Tensor) -> None:
    """Value check on the (B, J) outputs: NaN in h or d, or a row of -inf, shows up
    there, so no extra pass over the H*W data is needed."""
    bad = ~torch.isfinite(lse) | torch.isnan(z)
    if bool(bad.any()):
        b, j = torch.nonzero(bad)[0].tolist()
        if bool(torch.isnan(heatmaps[b, j]).any()):
            raise ValueError(f"heatmaps[{b}, {j}] contains NaN")
        if not bool(torch.isfinite(heatmaps[b, j]).any()):
            raise ValueError(f"heatmaps[{b}, {j}] has no finite value, so its softmax is undefined")
        if bool(torch.isinf(heatmaps[b, j]).any()):
            raise ValueError(f"heatmaps[{b}, {j}] contains +inf")
        raise ValueError(f"depthmaps[{b}, {j}] contains NaN or inf where the softmax is non-zero")


def softargmax_2p5d(
    heatmaps: Tensor, depthmaps: Tensor, beta: float = 50.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Fused spatial softmax, soft-argmax and depth summation.

    ``beta`` MULTIPLIES the logits: p = softmax(beta * h) over each H*W grid (the
    paper's lambda = 50). Coordinates are heatmap pixels: u = column in 0..W-1,
    v = row in 0..H-1.

    Args:
        heatmaps: (B, J, H, W) logits, float16/bfloat16/float32/float64. ``-inf``
            entries get probability 0; a row must hold at least one finite value.
        depthmaps: (B, J, H, W) latent relative depth maps, same dtype and device.
        beta: softmax sharpness, a finite number > 0.

    Returns:
        uv: (B, J, 2) expected (u, v) location.
        z: (B, J) expected relative depth, sum p * d.
        conf: (B, J) the raw heatmap bilinearly sampled at (u, v); no gradient.

    Raises:
        TypeError: a non-tensor, non-float, or mismatched dtype.
        ValueError: wrong shapes, devices that differ, beta <= 0, and (value checks,
            eager mode only) a NaN, a +inf or a row with no finite logit.

    Example:
        >>> h = torch.full((1, 1, 3, 4), -1e4); h[0, 0, 2, 1] = 0.0
        >>> uv, z, conf = softargmax_2p5d(h, torch.ones_like(h), beta=1.0)
        >>> uv.tolist(), z.tolist()
        ([[[1.0, 2.0]]], [[1.0]])
    """
    check_float_tensor("heatmaps", heatmaps, 4, "(B, J, H, W)")
    check_float_tensor("depthmaps", depthmaps, 4, "(B, J, H, W)")
    check_same_dtype_device({"heatmaps": heatmaps, "depthmaps": depthmaps})
    if depthmaps.shape != heatmaps.shape:
        raise ValueError(
            f"depthmaps must have the shape of heatmaps {tuple(heatmaps.shape)}, "
            f"got {tuple(depthmaps.shape)}"
        )
    if heatmaps.shape[2] == 0 or heatmaps.shape[3] == 0:
        raise ValueError(f"heatmaps must have H, W >= 1, got {tuple(heatmaps.shape)}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"beta must be a Python number, got {type(beta).__name__}")
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    uv, z, conf, stats = _softargmax_op(heatmaps, depthmaps, float(beta))
    if value_checks_active() and stats.numel():
        _check_rows(heatmaps, z, stats[..., LSE])
    return uv, z, conf
