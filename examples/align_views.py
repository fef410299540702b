"""Align the 3D poses of two views: with the peers' calls through ws3d.compat, then natively.

Two calibrated views of one person (the synthetic multi-view split, Human3.6M-like rig)
give each a 2.5D pose: here the data's joints plus noise, standing in for a network's
outputs. :func:`ws3d.ops.reconstruct_3d` lifts each to a scale-normalised 3D pose in its
own camera's frame, and the rotation that takes view a's pose onto view b's is found three
ways, each compared with the true one from the cameras, R_b R_a^T:

1. ``ws3d.compat.roma.rigid_points_registration`` - roma's call, column vectors:
   ``P_b ~ s R P_a + t``;
2. ``ws3d.compat.pytorch3d.corresponding_points_alignment`` - pytorch3d's call, row
   vectors: ``P_b ~ s P_a R + T``, so its R is the transpose;
3. ``ws3d.ops.weighted_procrustes(..., return_valid=True)`` - the native op, whose
   ``valid`` flag says which pairs have a determined rotation.

The weights are the joints' visibility in both views. They are 0 or 1, where pytorch3d's
weights (squared in its covariance) and roma's (used once) agree; with fractional
confidences the two libraries answer differently, and each drop-in keeps its library's
answer. One pair is made degenerate on purpose (every weight 0, a person hidden in one
view): the drop-ins warn and return the identity for it, as their docstrings say; the
native op flags it, and the script leaves it out of the statistics::

    python examples/align_views.py            # 64 groups
    python examples/align_views.py --quick    # 4 groups: what CI runs
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import torch

from ws3d.compat.pytorch3d import corresponding_points_alignment
from ws3d.compat.roma import rigid_points_registration
from ws3d.data.synthetic import SynthConfig, SyntheticDataset
from ws3d.ops import reconstruct_3d, weighted_procrustes

ROOT, NECK = 0, 8


def view_pairs(groups: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Views 0 and 1 of each group of the h36m rig: K, uv, vis, joints_cam and camera R, stacked
    as (groups, 2, ...) float64 tensors."""
    data = SyntheticDataset(SynthConfig("mv", 4 * groups, size=size, seed=seed, rig="h36m"))
    first = np.flatnonzero(data.view == 0)[:groups]
    samples = [[data[int(i)], data[int(i) + 1]] for i in first]
    return {k: torch.from_numpy(np.array([[s[k] for s in pair] for pair in samples])).double()
            for k in ("K", "uv", "vis", "joints_cam", "R")}  # fmt: skip


def lift(pairs: dict[str, torch.Tensor], noise_px: float, noise_z: float, seed: int):
    """2.5D poses with noise -> scale-normalised 3D poses (groups, 2, J, 3) and their valid flag."""
    g = torch.Generator().manual_seed(seed)
    joints = pairs["joints_cam"]
    bone = (joints[..., NECK, :] - joints[..., ROOT, :]).norm(dim=-1, keepdim=True)
    z = (joints[..., 2] - joints[..., ROOT, None, 2]) / bone
    uv = pairs["uv"] + noise_px * torch.randn(pairs["uv"].shape, generator=g, dtype=torch.float64)
    z = z + noise_z * torch.randn(z.shape, generator=g, dtype=torch.float64)
    P, _, valid = reconstruct_3d(uv.flatten(0, 1), z.flatten(0, 1), pairs["K"].flatten(0, 1))
    return P.unflatten(0, uv.shape[:2]), valid.unflatten(0, uv.shape[:2]).all(1)


def degrees(R: torch.Tensor, R_true: torch.Tensor) -> torch.Tensor:
    """(N,) angle of R R_true^T in degrees."""
    cos = ((R @ R_true.mT).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 groups at 64 px (CI)")
    parser.add_argument("--groups", type=int, default=64, help="view pairs (one per multi-view group)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--noise-px", type=float, default=1.0, help="noise on the 2D joints, pixels")
    parser.add_argument("--noise-z", type=float, default=0.05, help="noise on the relative depths")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.groups, args.size = 4, 64
    if args.groups < 2:
        parser.error("--groups must be at least 2 (one pair is made degenerate)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    pairs = view_pairs(args.groups, args.size, args.seed)
    P, lifted = lift(pairs, args.noise_px, args.noise_z, args.seed)
    X, Y = P[:, 0], P[:, 1]  # view a's pose onto view b's
    R_true = pairs["R"][:, 1] @ pairs["R"][:, 0].mT
    w = pairs["vis"][:, 0] * pairs["vis"][:, 1]
    w[-1] = 0.0  # the last pair: a person hidden in one view
    print(f"{args.groups} view pairs, {args.noise_px:g} px and {args.noise_z:g} depth noise; "
          f"reconstruct_3d valid for {int(lifted.sum())} of {args.groups}")  # fmt: skip

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        R_roma, _, s_roma = rigid_points_registration(X, Y, w, compute_scaling=True)
        R_rows, _, s_p3d = corresponding_points_alignment(X, Y, w, estimate_scale=True)
    for warning in caught:
        print(f"warning: {str(warning.message).split(';')[0]}")
    R_native, _, s_native, valid = weighted_procrustes(X, Y, w, scale=True, return_valid=True)
    print(f"weighted_procrustes: valid for {int(valid.sum())} of {args.groups} pairs; "
          f"flagged: pair {torch.nonzero(~valid).flatten().tolist()}")  # fmt: skip

    keep = valid & lifted
    for name, R, s in (("ws3d.compat.roma", R_roma, s_roma), ("ws3d.compat.pytorch3d (R transposed)", R_rows.mT, s_p3d),
                       ("ws3d.ops.weighted_procrustes", R_native, s_native)):  # fmt: skip
        error = degrees(R[keep], R_true[keep])
        print(f"{name}: rotation error median {error.median():.2f} deg, max {error.max():.2f} deg; "
              f"scale median {s[keep].median():.3f}")  # fmt: skip
    agree = max((R_roma - R_native).abs().max().item(), (R_rows.mT - R_native).abs().max().item())
    print(f"the three agree on every pair to {agree:.1e} (the flagged pair: identity in all three)")
    return 0 if agree < 1e-9 and not bool(valid[-1]) and len(caught) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
