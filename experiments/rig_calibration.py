"""How well calibrate_rig recovers a studio rig from the people in it, fault by fault.

    python experiments/rig_calibration.py [--seeds 3] [--rows NAME ...] [--out experiments/results]
    python experiments/rig_calibration.py --labelled DATA CHECKPOINT   # the weak stage's case

The target case: 4 raised cameras around the capture volume (ws3d.data.studio), 300 frames
of people moving through it (a new person every 30 frames), and an off-the-shelf detector's
faults: 5 px noise on a 1080p frame, 10 % of views with left and right swapped, 5 % outlier
joints, 10 % missed. Each row changes one thing from it. Every row runs ``--seeds`` rigs
(its own cameras, people and faults) and reports, over cameras 1.. of every rig (camera 0
is the world): the median and largest rotation error and baseline direction error
(degrees), the median and largest |scale - 1| (the baselines' lengths, %), the median inlier share, and
the median time of one calibration on this machine.

Writes <out>/rig_calibration-cpu-DATE.{json,md}. With ``--labelled``: the rigs of a rendered
studio multi-view split (``ws3d data synth --rig studio``) calibrated from their crops' true
2D joints and from a 2D model's pseudo-labels, as ``data.rotations=rig`` does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ws3d.data.studio import DetectorFaults, detect, observe, sample_studio, studio_motion
from ws3d.geometry import rotation_angle_deg
from ws3d.multiview import calibrate_rig, compare_rigs

TARGET = DetectorFaults(noise_px=5.0, swap_rate=0.1, outlier_rate=0.05, missing_rate=0.1)

# name -> changes from the target case: faults=..., frames, cameras, offset (frames the
# streams are out of step, at most), search (max_offset given to calibrate_rig), and any
# calibrate_rig keyword.
ROWS = {
    "target": {},
    "no faults": {"faults": DetectorFaults(0.0, 0.0, 0.0, 0.0)},
    "noise 2 px": {"faults": replace(TARGET, noise_px=2.0)},
    "noise 10 px": {"faults": replace(TARGET, noise_px=10.0)},
    "noise 20 px": {"faults": replace(TARGET, noise_px=20.0)},
    "swaps 0 %": {"faults": replace(TARGET, swap_rate=0.0)},
    "swaps 30 %": {"faults": replace(TARGET, swap_rate=0.3)},
    "swaps 10 %, not resolved": {"resolve_swaps": False},
    "swaps 30 %, not resolved": {"faults": replace(TARGET, swap_rate=0.3), "resolve_swaps": False},
    "outliers 0 %": {"faults": replace(TARGET, outlier_rate=0.0)},
    "outliers 15 %": {"faults": replace(TARGET, outlier_rate=0.15)},
    "outliers 30 %": {"faults": replace(TARGET, outlier_rate=0.3)},
    "missed 30 %": {"faults": replace(TARGET, missing_rate=0.3)},
    "missed 50 %": {"faults": replace(TARGET, missing_rate=0.5)},
    "30 frames": {"frames": 30},
    "100 frames": {"frames": 100},
    "1000 frames": {"frames": 1000},
    "3000 frames": {"frames": 3000},
    "2 cameras": {"cameras": 2},
    "3 cameras": {"cameras": 3},
    "8 cameras": {"cameras": 8},
    "streams up to 3 frames apart, searched": {"offset": 3, "max_offset": 4},
    "streams up to 3 frames apart, not searched": {"offset": 3},
    "bias 5 px": {"faults": replace(TARGET, bias_px=5.0)},
    "bias 10 px": {"faults": replace(TARGET, bias_px=10.0)},
    "bias 20 px": {"faults": replace(TARGET, bias_px=20.0)},
    "bias 10 px, 3000 frames": {"faults": replace(TARGET, bias_px=10.0), "frames": 3000},
    "10000 frames": {"frames": 10000},
}


def run(name: str, seed: int) -> dict:
    """One calibration of row ``name`` on rig ``seed``: errors per camera 1.., time."""
    settings = dict(ROWS[name])
    faults = settings.pop("faults", TARGET)
    frames, cameras, offset = settings.pop("frames", 300), settings.pop("cameras", 4), settings.pop("offset", 0)
    rng = np.random.default_rng([0x57D10, seed])
    K, R, t = sample_studio(rng, cameras)
    offsets = rng.integers(0, offset + 1, cameras) if offset else None
    joints = studio_motion(rng, frames + offset, subject_frames=30)
    uv, visible = observe(joints, K, R, t, offsets)
    uv, w, _ = detect(uv, visible, faults, rng)
    start = time.perf_counter()
    result = calibrate_rig(uv, w, K, seed=seed, **settings)
    seconds = time.perf_counter() - start
    rotation, baseline, scale = compare_rigs(result.R, result.t, R, t)
    return {
        "rotation_deg": rotation.tolist(),
        "baseline_deg": baseline.tolist(),
        "scale_error": (scale - 1).abs().tolist(),
        "inlier_share": result.inlier_share.tolist(),
        "offsets_right": None if offsets is None else bool((result.offsets.numpy() == offsets - offsets[0]).all()),
        "seconds": seconds,
    }


def labelled_rigs(data: Path, checkpoint: Path | None, threshold: float = 0.5) -> dict:
    """The weak stage's own case (``data.rotations=rig``): every rig of a rendered studio
    multi-view split calibrated from its crops' 2D joints, the true ones (``checkpoint``
    None) or a 2D model's pseudo-labels (confidence > ``threshold``, inside the crop),
    against the rendered rotations: rotation errors (degrees) of cameras 1.. of each rig."""
    from ws3d.data.synthetic import ShardDataset
    from ws3d.evaluate import predict_dataset
    from ws3d.model.build import model_from_checkpoint
    from ws3d.weak_data import rig_rotations

    views = ShardDataset(data, "mv")
    a = views.arrays
    if checkpoint is None:
        uv, vis = a["uv"].astype(np.float64), a["vis"].astype(np.float64)
    else:
        model, cfg = model_from_checkpoint(checkpoint)
        pred = predict_dataset(model, views, cfg.data.size, progress=False)
        inside = ((pred["uv"] >= 0) & (pred["uv"] <= pred["image_wh"][:, None] - 1)).all(-1)
        uv, vis = pred["uv"].astype(np.float64), ((pred["conf"] > threshold) & inside).astype(np.float64)
    start = time.perf_counter()
    R, found = rig_rotations(a, uv, vis)
    seconds = time.perf_counter() - start
    errors = []
    for rig in np.unique(a["rig"]):
        rows = np.flatnonzero(a["rig"] == rig)
        cameras = a["camera"][rows]
        first = rows[cameras == cameras.min()][0]
        truth = torch.from_numpy(a["R"][rows].astype(np.float64) @ a["R"][first].astype(np.float64).T)
        error = rotation_angle_deg(torch.from_numpy(R[rows]) @ truth.mT)
        errors += [float(error[cameras == c][0]) for c in np.unique(cameras) if c != cameras.min()]
    start = time.perf_counter()
    per_group = group_rotation_errors(a, uv, vis)
    return {"rotation_median": float(np.median(errors)), "rotation_max": float(np.max(errors)),
            "cameras": len(errors) + len(np.unique(a["rig"])), "rigs": len(np.unique(a["rig"])),
            "found": float(found.mean()), "labelled": float((vis > 0).mean()), "seconds": seconds,
            "per_group_median": float(np.median(per_group)), "per_group_p90": float(np.percentile(per_group, 90)),
            "per_group_seconds": time.perf_counter() - start}  # fmt: skip


def group_rotation_errors(a: dict, uv: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """What ``data.rotations=group`` finds instead: every group's rotations from its own 2D
    joints (ws3d.multiview.solve_groups), errors (degrees) of views 1.. against view 0."""
    from ws3d.data.sampling import group_indices
    from ws3d.multiview import solve_groups

    groups = group_indices(a["group"])
    errors = []
    for V in sorted({len(g) for g in groups}):
        index = np.stack([g for g in groups if len(g) == V])
        uv_g, w_g, K_g, R_g = (torch.as_tensor(np.asarray(x)[index], dtype=torch.float64)
                               for x in (uv, vis, a["K"], a["R"]))  # fmt: skip
        out = solve_groups(uv_g, K_g, w_g, torch.ones(index.shape, dtype=torch.bool))
        truth = R_g @ R_g[:, :1].mT
        error = rotation_angle_deg(out["R"] @ truth.mT)[:, 1:]
        errors.append(torch.where(out["ok"][:, None], error, 180.0).reshape(-1).numpy())  # unsolved: as bad as can be
    return np.concatenate(errors)


def summary(runs: list[dict]) -> dict:
    def pooled(key):
        return np.concatenate([r[key] for r in runs])

    offsets = [r["offsets_right"] for r in runs if r["offsets_right"] is not None]
    return {
        "rotation_median": float(np.median(pooled("rotation_deg"))),
        "rotation_max": float(pooled("rotation_deg").max()),
        "baseline_median": float(np.median(pooled("baseline_deg"))),
        "baseline_max": float(pooled("baseline_deg").max()),
        "scale_error_median": float(np.median(pooled("scale_error"))),
        "scale_error_max": float(pooled("scale_error").max()),
        "inlier_share_median": float(np.median(pooled("inlier_share"))),
        "offsets_right": f"{sum(offsets)} / {len(offsets)}" if offsets else "",
        "seconds_median": float(np.median([r["seconds"] for r in runs])),
    }


def labelled_markdown(rows: dict[str, dict]) -> str:
    lines = ["| 2D labels of the studio crops | rigs / cameras | joints labelled | rig rotations (deg) median / max | "
             "time (s) | per-group rotations (deg) median / 90th pct. | time (s) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in rows.items():
        lines.append(f"| {name} | {r['rigs']} / {r['cameras']} | {100 * r['labelled']:.0f} % | "
                     f"{r['rotation_median']:.2f} / {r['rotation_max']:.2f} | {r['seconds']:.1f} | "
                     f"{r['per_group_median']:.2f} / {r['per_group_p90']:.2f} | "
                     f"{r['per_group_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def markdown(meta: dict, rows: dict[str, dict]) -> str:
    lines = [
        f"calibrate_rig on synthetic studios ({meta['seeds']} rigs per row; errors over cameras 1.. against "
        f"camera 0); {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}, {meta['date']}.",
        "",
        "| setting | rotation (deg) median / max | baseline direction (deg) median / max | scale error median / max | "
        "inliers | streams aligned | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in rows.items():
        lines.append(
            f"| {name} | {s['rotation_median']:.3f} / {s['rotation_max']:.3f} | {s['baseline_median']:.3f} / "
            f"{s['baseline_max']:.3f} | {100 * s['scale_error_median']:.1f} / {100 * s['scale_error_max']:.1f} % | "
            f"{100 * s['inlier_share_median']:.1f} % "
            f"| {s['offsets_right']} | {s['seconds_median']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--labelled", nargs=2, type=Path, metavar=("DATA", "CHECKPOINT"),
                        help="instead: calibrate the rigs of DATA's studio mv split from its true 2D labels and "
                             "from CHECKPOINT's pseudo-labels (writes rig_calibration_labels-cpu-DATE.*)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.labelled:
        data, checkpoint = args.labelled
        rows = {"true 2D joints": labelled_rigs(data, None),
                f"pseudo-labels of {checkpoint.name} (confidence > 0.5)": labelled_rigs(data, checkpoint)}  # fmt: skip
        stem = args.out / f"rig_calibration_labels-cpu-{datetime.date.today().isoformat()}"
        args.out.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps({"data": str(data), "rows": rows}, indent=1) + "\n")
        stem.with_suffix(".md").write_text(labelled_markdown(rows))
        print(labelled_markdown(rows))
        return 0
    rows = {}
    for name in args.rows:
        rows[name] = summary([run(name, seed) for seed in range(args.seeds)])
        print(f"{name}: {rows[name]}", flush=True)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    meta = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "seeds": args.seeds,
            "python": platform.python_version(), "date": datetime.date.today().isoformat()}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"rig_calibration-cpu-{meta['date']}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
