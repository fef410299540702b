"""PNG plots of a training run (loss curves, validation metrics) and of one prediction in 3D."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ws3d.skeleton import BONES, LEFT_JOINTS, RIGHT_JOINTS  # noqa: E402


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def training_curves(jsonl: str | os.PathLike, out: str | os.PathLike, validation: str = "") -> list[str]:
    """Loss terms against step (log scale) and validation MPJPE / 2D error against step;
    ``validation`` names the images validated on. Returns the names of the loss curves drawn."""
    records = read_jsonl(jsonl)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val" in r]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    # Every term the trainer logged ("l_*"), so that a new loss shows up without a change here.
    keys = ["loss"] * bool(train) + sorted({k for r in train for k in r if k.startswith("l_")})
    for k in keys:
        steps = [r["step"] for r in train if k in r]
        ax_loss.plot(steps, [r[k] for r in train if k in r], label=k, lw=2 if k == "loss" else 1)
    ax_loss.set(xlabel="step", ylabel="loss (unweighted terms)", yscale="log", title="training losses")
    if keys:
        ax_loss.legend()
    steps = [r["step"] for r in val]
    if val and "mpjpe" in val[0]["val"]:
        for k in ("mpjpe", "n_mpjpe", "p_mpjpe"):
            ax_val.plot(steps, [r["val"][k] for r in val], marker="o", label=k.upper().replace("_", "-"))
        ax_val.set(ylabel="mm")
    if val and "px2d" in val[0]["val"]:
        twin = ax_val.twinx()
        twin.plot(steps, [r["val"]["px2d"] for r in val], "k--", marker=".", label="2D error (px)")
        twin.set(ylabel="2D error, px")
        twin.legend(loc="upper center")
        ax_val.legend()
    ax_val.set(xlabel="step", title=f"validation on {validation}" if validation else "validation")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return keys


def pose_3d(pose: np.ndarray, out: str | os.PathLike, title: str = "") -> None:
    """A 3D skeleton (J, 3) in camera axes (x right, y down, z forward), drawn upright."""
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(projection="3d")
    p = np.asarray(pose, np.float64) - pose[0]
    x, y, z = p[:, 0], p[:, 2], -p[:, 1]  # plot axes: x, depth, up
    for child, parent in BONES:
        colour = "tab:blue" if child in LEFT_JOINTS else "tab:red" if child in RIGHT_JOINTS else "tab:green"
        ax.plot([x[child], x[parent]], [y[child], y[parent]], [z[child], z[parent]], color=colour, lw=2)
    r = max(np.abs(p).max(), 1e-6)
    ax.set(xlim=(-r, r), ylim=(-r, r), zlim=(-r, r), xlabel="x", ylabel="depth", zlabel="up", title=title)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
