"""How good are 2D labels of multi-view images, and can the views' geometry correct them?

    python experiments/target_labels.py [--data data/target] [--model train/checkpoints/synthetic_pretrain2d.pt]
        [--noise SIGMA] [--out FILE.json]

Labels the ``mv`` split of ``--data`` with a 2D model (or, with ``--noise``, with the true
joints plus independent Gaussian noise of SIGMA pixels per coordinate, confidence 1),
then scores candidate labels against the true 2D joints that the weak stage never sees:

- ``raw``: every predicted joint inside the image;
- ``pseudo``: confidence > 0.5 (``data.mv_labels=pseudo``, the single-view self-training labels);
- ``consistent``: the pseudo-labels that the triangulation confirms (``data.mv_labels=consistent``);
- ``reprojected``: each group's bundle-adjusted pose (``ws3d.multiview.depth_targets``,
  weights = the pseudo-labels) projected into every view of a solved group;
- ``reprojected, w = conf``: the same with the confidences as weights;
- ``bootstrapped``: a joint's own prediction where it is confident (> 0.7) and within
  4 px of the reprojection, else the reprojection of a pose fitted to the confident
  joints only, where two other views see the joint confidently (multi-view
  bootstrapping: labels for the joints a view gets wrong, from the views that do not).

Per candidate: mean and median error, the share above 5 px, the coverage (of the truly
visible joints), and how many raw joints more than 5 px off it brings within 5 px
("fixes"), and how many within 5 px it pushes beyond ("breaks"). Then the raw error per
joint with its mean signed offset, and per rig. Writes a markdown table to stdout and
everything, with the machine, versions and date, to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from ws3d import multiview
from ws3d.data.sampling import group_indices
from ws3d.data.synthetic import ShardDataset
from ws3d.evaluate import predict_dataset
from ws3d.model import model_from_checkpoint
from ws3d.skeleton import JOINTS

PSEUDO, CONFIDENT, AGREE = 0.5, 0.7, 4.0  # thresholds: the trainer's pseudo-label one, then this probe's


def fit_views(uv: np.ndarray, w: np.ndarray, K: np.ndarray, group: np.ndarray) -> dict:
    """:func:`ws3d.multiview.depth_targets` of the views, with its reprojected joints
    ``uv`` set to NaN in groups whose fit is poor (the median reprojection error of the
    weighted joints above 2 * PIXEL_SCALE: a pose off in a local minimum)."""
    out = multiview.depth_targets(uv, w, K, group)
    for g in group_indices(group):
        residual = out["reprojection"][g][w[g] > 0]
        residual = residual[np.isfinite(residual)]
        if not (residual.size and np.median(residual) <= 2 * multiview.PIXEL_SCALE):
            out["uv"][g] = np.nan
    return out


def views_seeing(seen: np.ndarray, group: np.ndarray) -> np.ndarray:
    """(N, J): how many views of each view's group see the joint (seen (N, J) bool)."""
    count = np.zeros(seen.shape, np.int64)
    for g in group_indices(group):
        count[g] = seen[g].sum(0)
    return count


def candidates(uv: np.ndarray, conf: np.ndarray, K: np.ndarray, group: np.ndarray, size: int) -> dict:
    """Each candidate's labels (N, J, 2) and where it gives one (N, J) bool. A reprojection
    labels a joint only where two views or more of the group weight it: elsewhere the
    fitted joint rests on the bone prior alone."""
    inside = ((uv >= 0) & (uv <= size - 1)).all(-1)
    pseudo = inside & (conf > PSEUDO)
    fitted = fit_views(uv, pseudo.astype(np.float64), K, group)
    out = {"raw": (uv, inside), "pseudo": (uv, pseudo), "consistent": (uv, pseudo & (fitted["weight"] > 0))}
    w_conf = np.where(inside, conf, 0.0)
    for name, weighted, r in (("reprojected", pseudo, fitted["uv"]),
                              ("reprojected, w = conf", w_conf > 0, fit_views(uv, w_conf, K, group)["uv"])):
        out[name] = (r, np.isfinite(r).all(-1) & (views_seeing(weighted, group) >= 2))  # fmt: skip
    confident = inside & (conf > CONFIDENT)
    r = fit_views(uv, confident.astype(np.float64), K, group)["uv"]
    own = confident & (np.linalg.norm(uv - r, axis=-1) < AGREE)
    fill = ~own & np.isfinite(r).all(-1) & (views_seeing(confident, group) - confident >= 2)
    out["bootstrapped"] = (np.where(own[..., None], uv, r), own | fill)
    out["bootstrapped: the filled joints"] = (r, fill)
    out["(own prediction at those joints)"] = (uv, fill)
    return out


def score(labels: np.ndarray, given: np.ndarray, raw_error: np.ndarray, truth: np.ndarray, seen: np.ndarray) -> dict:
    error = np.linalg.norm(labels - truth, axis=-1)
    m = given & seen
    bad, good = (raw_error > 5) & seen, (raw_error <= 5) & m
    return {"mean_px": float(error[m].mean()), "median_px": float(np.median(error[m])),
            "over_5px": float((error[m] > 5).mean()), "coverage": float(m.sum() / seen.sum()),
            "fixes": float((bad & m & (error <= 5)).sum() / max(bad.sum(), 1)),
            "breaks": float((good & (error > 5)).sum() / max(good.sum(), 1))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/target", help="a set with an mv split (ws3d data synth)")
    parser.add_argument("--model", default="train/checkpoints/synthetic_pretrain2d.pt")
    parser.add_argument("--noise", type=float, help="label with the truth plus this much noise (px) instead")
    parser.add_argument("--out", help="JSON file for everything measured")
    args = parser.parse_args(argv)
    views = ShardDataset(args.data, "mv")
    a = views.arrays
    truth, seen = a["uv"].astype(np.float64), a["vis"].astype(bool)
    size = int(a["image"].shape[1])
    if args.noise is not None:
        rng = np.random.default_rng(0)
        uv, conf = truth + rng.normal(0.0, args.noise, truth.shape), np.ones(seen.shape)
    else:
        model, _ = model_from_checkpoint(args.model, "cpu")
        pred = predict_dataset(model, views, size, progress=True)
        uv, conf = pred["uv"].astype(np.float64), pred["conf"].astype(np.float64)
    raw_error = np.linalg.norm(uv - truth, axis=-1)
    rows = {name: score(labels, given, raw_error, truth, seen)
            for name, (labels, given) in candidates(uv, conf, a["K"], a["group"], size).items()}  # fmt: skip
    offset = uv - truth
    per_joint = {}
    for j, name in enumerate(JOINTS):
        e, d = raw_error[seen[:, j], j], offset[seen[:, j], j]
        per_joint[name] = {"mean_px": float(e.mean()), "dx": float(d[:, 0].mean()), "dy": float(d[:, 1].mean()),
                           "over_5px": float((e > 5).mean())}  # fmt: skip
    known = a["extrinsics_known"].astype(bool)
    rigs = {name: float(raw_error[seen & rig[:, None]].mean()) for name, rig in (("h36m", known), ("orbit", ~known))
            if rig.any()}  # fmt: skip
    labeller = f"truth + {args.noise} px noise" if args.noise is not None else args.model
    print(f"labels of {len(uv)} views of {args.data} (mv) from {labeller}\n")
    print("| labels | mean px | median px | > 5 px | coverage | fixes | breaks |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['mean_px']:.2f} | {r['median_px']:.2f} | {r['over_5px']:.1%} | {r['coverage']:.1%} | "
              f"{r['fixes']:.1%} | {r['breaks']:.1%} |")
    print("\n| joint | mean px | dx | dy (+: too low) | > 5 px |\n|---|---:|---:|---:|---:|")
    for name, r in per_joint.items():
        print(f"| {name} | {r['mean_px']:.2f} | {r['dx']:+.2f} | {r['dy']:+.2f} | {r['over_5px']:.1%} |")
    print("\nraw error per rig: " + ", ".join(f"{k} {v:.2f} px" for k, v in rigs.items()))
    if args.out:
        result = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
                  "python": platform.python_version(), "torch": torch.__version__, "data": args.data,
                  "labeller": labeller, "views": len(uv), "candidates": rows, "per_joint": per_joint,
                  "rigs": rigs}  # fmt: skip
        Path(args.out).write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
