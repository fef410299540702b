"""Where the weakly supervised objective leads when only the depths can move.

    python experiments/weak_objective.py [--data data/synthetic] [--noise 0 0.5 1 2 4]
        [--model runs/synthetic/pretrain2d/last.pt] [--rotations estimated known]
        [--objective paper triangulated] [--out FILE.json]

No network: the relative depths z (M, J) of M multi-view images are free variables,
optimised with Adam under the weak stage's objective exactly as the trainer computes it:
the paper's alpha L_MC + beta_B L_B (``ws3d.losses``: rotations from
``weighted_procrustes`` with no gradient, or the true ones, "WS+R"), or ws3d's psi L_z
against depths triangulated from the same 2D joints (``ws3d.multiview.depth_targets``,
rotations estimated per group or the true ones). The 2D joints stay fixed: the true ones plus Gaussian noise of sigma
pixels per coordinate, or a 2D model's predictions (with its confidences as phi; phi = 1
otherwise). Every setting starts once from the true depths (is the truth a minimum?) and
once from z = 0 (the weak stage's start: does descent find the truth?). The true depths
and z = 0 themselves are scored too.

Reported per run: the objective, the share of images whose root depth has a real
solution, the median |z_neck - z_pelvis| (truth ~0.2; ~1 is the collapse, a pose along
its own viewing ray), the median root depth (neck-pelvis lengths), the per-image
correlation of z with the truth, and the root-aligned error of the scale-normalised
pose times 490 mm (the mean neck-pelvis length). Writes a markdown table to stdout and
everything, with the machine, versions and date, to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from ws3d.config import LossConfig
from ws3d.data.sampling import group_indices, view_pairs
from ws3d.data.synthetic import ShardDataset
from ws3d.evaluate import predict_dataset
from ws3d.losses import bone_loss, depth_loss, multiview_loss
from ws3d.model import model_from_checkpoint
from ws3d.multiview import depth_targets
from ws3d.ops import reconstruct_3d
from ws3d.skeleton import NECK, REFERENCE_BONE, ROOT

# The trainer's defaults: the paper's weights, and the pseudo-label threshold.
ALPHA, BETA_B, PSI, THRESHOLD = LossConfig.alpha, LossConfig.beta_b, LossConfig.psi, LossConfig.pseudo_threshold
NECK_PELVIS_MM = 490.0


def load_views(data: str, groups: int, max_views: int) -> dict[str, torch.Tensor]:
    """The first ``groups`` groups of the ``mv`` split, at most ``max_views`` views each.

    Returns float64 tensors K (M, 3, 3), uv (M, J, 2) image pixels, joints_cam (M, J, 3),
    R (M, 3, 3) world-to-camera, known (M,) bool, view_group (M,), pairs (P, 2), and the
    rows ``index`` (M,) of the split (to run a 2D model on the same images).
    """
    views = ShardDataset(data, "mv")
    chosen = [g[:max_views] for g in group_indices(views.arrays["group"])[:groups]]
    if not chosen or any(len(g) < 2 for g in chosen):
        raise ValueError(f"{data}: need groups of at least 2 views in the mv split")
    index = np.concatenate(chosen)
    samples = [views[int(i)] for i in index]

    def stack(key, dtype=torch.float64):
        return torch.as_tensor(np.stack([s[key] for s in samples])).to(dtype)

    view_group = torch.as_tensor(np.concatenate([[k] * len(g) for k, g in enumerate(chosen)]))
    return {"K": stack("K"), "uv": stack("uv"), "joints_cam": stack("joints_cam"), "R": stack("R"),
            "known": stack("extrinsics_known", torch.bool), "view_group": view_group,
            "pairs": view_pairs(view_group), "index": torch.as_tensor(index)}  # fmt: skip


def true_depths(joints_cam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (M, J) scale-normalised relative depths, pose (M, J, 3) scale-normalised) of the ground truth."""
    neck, pelvis = REFERENCE_BONE
    s = (joints_cam[:, neck] - joints_cam[:, pelvis]).norm(dim=-1)
    return (joints_cam[..., 2] - joints_cam[:, ROOT, None, 2]) / s[:, None], joints_cam / s[:, None, None]


def lift(z, uv, views, root: str) -> torch.Tensor:
    """The scale-normalised poses (M, J, 3) the losses see.

    root "paper": ``reconstruct_3d`` (the root depth solves |P_neck - P_pelvis| = 1, so it
    moves with z). root "flat": the root depth of z = 0, a function of the 2D joints
    alone, so no change of z can move a pose towards the camera (not the paper's method).
    """
    if root == "paper":
        return reconstruct_3d(uv, z, views["K"])[0]
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(views["K"]).mT
    z_root = reconstruct_3d(uv, torch.zeros_like(z), views["K"])[1]
    return (z_root[:, None] + z)[..., None] * rays


def triangulated(uv, conf, views, rotations: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's depth targets and their weights (M, J) from these 2D joints; joints
    count as seen where phi exceeds the pseudo-label threshold."""
    R, known = (views["R"].numpy(), views["known"].numpy()) if rotations == "known" else (None, None)
    out = depth_targets(uv.numpy(), (conf > THRESHOLD).double().numpy(), views["K"].numpy(),
                        views["view_group"].numpy(), R, known)  # fmt: skip
    return torch.as_tensor(out["z"]).double(), torch.as_tensor(out["weight"]).double()


def objective(z, uv, conf, views, rotations: str, root: str, targets=None):
    """The objective and its two terms: psi L_z against ``targets`` (depths, weights) where
    given (ws3d's), else alpha L_MC + beta_B L_B of the poses lifted from (uv, z)."""
    if targets is not None:
        l_z = depth_loss(z, *targets, views["view_group"])
        return PSI * l_z, l_z, torch.zeros_like(l_z)
    pose = lift(z, uv, views, root)
    R, known = (views["R"], views["known"]) if rotations == "known" else (None, None)
    l_mc = multiview_loss(pose, conf, views["pairs"], views["view_group"], R, known)
    l_b = bone_loss(pose, conf, views["view_group"])
    return ALPHA * l_mc + BETA_B * l_b, l_mc, l_b


def summarise(z, uv, conf, views, rotations: str, root: str, targets=None) -> dict[str, float]:
    """The objective, and how the depths ``z`` (M, J), lifted as at inference (``reconstruct_3d``),
    compare with the truth."""
    z_true, pose_true = true_depths(views["joints_cam"])
    with torch.no_grad():
        total, l_mc, l_b = objective(z, uv, conf, views, rotations, root, targets)
        pose, z_root, valid = reconstruct_3d(uv, z, views["K"])
        zc, tc = z - z.mean(1, keepdim=True), z_true - z_true.mean(1, keepdim=True)
        corr = (zc * tc).sum(1) / (zc.norm(dim=1) * tc.norm(dim=1)).clamp_min(1e-12)
        error = ((pose - pose[:, ROOT, None]) - (pose_true - pose_true[:, ROOT, None])).norm(dim=-1).mean()
    return {"loss": float(total), "l_mc": float(l_mc), "l_b": float(l_b), "solvable": float(valid.double().mean()),
            "dz_ref": float((z[:, NECK] - z[:, ROOT]).abs().median()), "z_root": float(z_root.median()),
            "depth_corr": float(corr.mean()), "error_mm": float(error * NECK_PELVIS_MM)}  # fmt: skip


def descend(z0, uv, conf, views, rotations: str, root: str, targets, steps: int, lr: float) -> torch.Tensor:
    """Adam on the free depths, lr cosine-annealed to ~0 so that the end point is a rest point."""
    z = z0.clone().requires_grad_()
    optimizer = torch.optim.Adam([z], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 1e-3)
    for _ in range(steps):
        total = objective(z, uv, conf, views, rotations, root, targets)[0]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        schedule.step()
    return z.detach()


def model_2d(checkpoint: str, data: str, views) -> tuple[torch.Tensor, torch.Tensor]:
    """uv (M, J, 2) image pixels and phi (M, J) of a trained model on the chosen views (plain crops)."""
    model, cfg = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        out = predict_dataset(model, Subset(ShardDataset(data, "mv"), views["index"].tolist()), cfg.data.size)
    return torch.as_tensor(out["uv"]).double(), torch.as_tensor(out["conf"]).double().clamp_min(0)


def machine() -> dict:
    return {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/synthetic", help="a synthetic data set with an mv split")
    parser.add_argument("--groups", type=int, default=128)
    parser.add_argument("--max-views", type=int, default=4)
    parser.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.5, 1.0, 2.0, 4.0],
                        help="sigmas of the Gaussian added to the true 2D joints, pixels per coordinate")  # fmt: skip
    parser.add_argument("--model", help="also run with this 2D model's predicted joints and confidences")
    parser.add_argument("--rotations", nargs="+", choices=("estimated", "known"), default=["estimated"])
    parser.add_argument("--root", nargs="+", choices=("paper", "flat"), default=["paper"],
                        help="how the losses' poses get their root depth (see lift())")  # fmt: skip
    parser.add_argument("--objective", nargs="+", choices=("paper", "triangulated"), default=["paper"],
                        help="the paper's L_MC + L_B (over --root), or ws3d's L_z on triangulated depths")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    views = load_views(args.data, args.groups, args.max_views)
    z_true, _ = true_depths(views["joints_cam"])
    ones = torch.ones_like(z_true)
    sources = [(f"true + N(0, {s:g} px)", views["uv"] + s * torch.randn_like(views["uv"]), ones) for s in args.noise]
    if args.model:
        sources.append((f"2D model {Path(args.model).parent.name}", *model_2d(args.model, args.data, views)))

    rows = []
    print(f"{len(z_true)} views in {int(views['view_group'].max()) + 1} groups, {args.steps} Adam steps per run\n")
    print("| 2D joints | mean 2D error px | rotations | objective (root) | depths | loss | L_MC or L_z | L_B | "
          "solvable | median abs(z_neck - z_pelvis) | median z_root | depth corr | error mm |")  # fmt: skip
    print("|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    zero = torch.zeros_like(z_true)
    for name, uv, conf in sources:
        px = float((uv - views["uv"]).norm(dim=-1).mean())
        kinds = [("paper", root) for root in args.root if "paper" in args.objective]
        kinds += [("triangulated", "-")] if "triangulated" in args.objective else []
        for rotations, (kind, root) in itertools.product(args.rotations, kinds):
            targets = triangulated(uv, conf, views, rotations) if kind == "triangulated" else None
            setting = (uv, conf, views, rotations, root, targets)
            runs = [("true", z_true), ("0", zero), ("from true", descend(z_true, *setting, args.steps, args.lr)),
                    ("from 0", descend(zero, *setting, args.steps, args.lr))]  # fmt: skip
            for start, z in runs:
                row = {"2d": name, "px2d": px, "rotations": rotations, "objective": kind, "root": root, "depths": start,
                       **summarise(z, *setting)}  # fmt: skip
                rows.append(row)
                label = f"paper ({root})" if kind == "paper" else kind
                cells = (name, f"{px:.2f}", rotations, label, start,
                         *(f"{row[k]:.3g}" for k in ("loss", "l_mc", "l_b")),
                         f"{row['solvable']:.0%}", *(f"{row[k]:.2f}" for k in ("dz_ref", "z_root", "depth_corr")),
                         f"{row['error_mm']:.0f}")  # fmt: skip
                print("| " + " | ".join(cells) + " |", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in vars(args).items() if k != "out"}
        Path(args.out).write_text(json.dumps({**machine(), "settings": settings, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
