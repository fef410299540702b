"""The paper's ablation (its Table 1) on the synthetic benchmark, in one command.

    ws3d ablation [--shift] [--config CONFIG] [--settings NAME ...] [--test DIR ...]
                  [--runs runs/ablation] [--out train/results] [section.key=value ...]

Every setting starts from the same 2D-pretrained checkpoint (the config's ``train.init``)
and trains for the same number of steps on the same data; only what the setting names
changes (:data:`SETTINGS`). Each is then evaluated on the test split of every ``--test``
directory (default: the config's ``data.root``). A setting whose run directory already
holds a finished run is evaluated, not trained again. Writes ``ablation.json`` (metrics,
seconds, machine, versions, date, git revision) and ``ablation.md`` (the table the README
includes) into ``--out``.

``--shift`` runs the domain-shift benchmark instead (:data:`SHIFT_SETTINGS`, from
``train/synthetic_shift_weak.yaml``: source 2D model and 2D labels, target multi-view images,
target test split) and writes ``ablation_shift.{json,md}``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ws3d.checkpoint import git_revision, load_checkpoint
from ws3d.config import from_dict, load_config, resume_conflicts
from ws3d.data.synthetic import ShardDataset
from ws3d.errors import InputError
from ws3d.evaluate import evaluate
from ws3d.model import build_model, load_weights, model_from_checkpoint


@dataclass(frozen=True)
class Setting:
    overrides: tuple[str, ...] | None  # of the weak config; None: the 2D checkpoint itself, z = 0
    labels_3d: str
    labels_2d_mv: str
    rotations: str
    notes: str = ""
    oracle: bool = False  # with overrides None: the 2D oracle's checkpoint instead of train.init
    seeds: int = 1  # trained with train.seed 0 .. seeds-1; the row is their mean, with their range


SETTINGS = {
    "FS": Setting(("train.stage=full",), "yes", "yes", "-", "fully supervised baseline"),
    "WS+R": Setting(("data.mv_labels=given", "data.rotations=known"), "no", "yes", "true"),
    "WS": Setting(("data.mv_labels=given",), "no", "yes", "estimated"),
    "WS+R-no2D": Setting(("data.rotations=known",), "no", "pseudo-labels only", "true"),
    "WS-no2D": Setting((), "no", "pseudo-labels only", "estimated", "ws3d's default objective"),
    # The rows below train the 2D network too (the weak config freezes it): the paper does,
    # and L_H on the multi-view images only acts through it.
    "WS-no2D-2Dtrained": Setting(("train.freeze_2d=false",), "no", "pseudo-labels only", "estimated",
                                 "ws3d's objective, the 2D network trained too"),  # fmt: skip
    "WS-no2D-paper": Setting(("loss.objective=paper", "data.mv_labels=pseudo", "train.freeze_2d=false"), "no",
                             "pseudo-labels only", "estimated", "the paper's exact objective"),  # fmt: skip
    "WS-noLH": Setting(("data.mv_labels=none", "train.freeze_2d=false"), "no", "none", "estimated",
                       "no L_H on the multi-view images"),  # fmt: skip
    "2D-only": Setting(None, "no", "-", "-", "the 2D-pretrained model, z = 0"),
}
# The domain-shift benchmark: the source-trained 2D model meets the target's multi-view
# images. "adapt": the 2D network trains on them too (the shift config freezes it).
ADAPT = "train.freeze_2d=false"
SHIFT_SETTINGS = {
    "2D-only": Setting(None, "no", "-", "-", "the source-trained 2D model, z = 0"),
    "2D-oracle": Setting(None, "no", "-", "-", "2D trained on the target's true 2D labels, z = 0", oracle=True),
    "FS": Setting(("train.stage=full", ADAPT), "yes", "yes", "-", "target 3D and 2D labels: the bound"),
    "WS-no2D": Setting((), "no", "pseudo-labels only", "estimated", "the single-domain default, 2D frozen"),
    # Two seeds each: the multi-view images' credit rests on these two rows (target: adapt
    # <= 0.9 x ST-1view), whose difference is of the order of the spread between seeds.
    "WS-no2D-adapt": Setting((ADAPT,), "no", "pseudo-labels only", "estimated",
                             "the 2D network adapts on the multi-view-consistent pseudo-labels", seeds=2),  # fmt: skip
    "ST-1view": Setting((ADAPT, "data.mv_labels=pseudo"), "no", "pseudo-labels only", "estimated",
                        "single-view self-training: every confident pseudo-label, no multi-view check",
                        seeds=2),  # fmt: skip
    "WS-no2D-adapt-rig": Setting((ADAPT, "data.rotations=rig"), "no", "pseudo-labels only", "calibrated rig",
                                 "each studio calibrated from its pseudo-labels (calibrate_rig)"),  # fmt: skip
    "WS+R-no2D-adapt": Setting((ADAPT, "data.rotations=known"), "no", "pseudo-labels only", "true"),
    "WS-no2D-paper": Setting(("loss.objective=paper", "data.mv_labels=pseudo", ADAPT), "no", "pseudo-labels only",
                             "estimated", "the paper's exact objective"),  # fmt: skip
}
ORACLE = "train/checkpoints/synthetic_target_oracle2d.pt"  # `make target-oracle2d`
SHIFT_CONFIG = "train/synthetic_shift_weak.yaml"


def settings_for(shift: bool) -> dict[str, Setting]:
    """The settings of the domain-shift benchmark if ``shift``, else of the single-domain one."""
    return SHIFT_SETTINGS if shift else SETTINGS

METRICS = ("mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc", "px2d", "solvable")


def machine() -> dict:
    """Where and when: the machine, the versions, the date and the git revision."""
    return {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "git": git_revision()}  # fmt: skip


def _model_2d_only(init: str):
    """The 2D-pretrained model with its depth channels zeroed: every joint at the root's depth."""
    payload = load_checkpoint(init)
    cfg = from_dict(payload["config"])
    model = build_model(cfg, pretrained=False)
    load_weights(model, payload, init)
    with torch.no_grad():
        model.head.weight[model.joints :].zero_()
        model.head.bias[model.joints :].zero_()
    return model.eval(), cfg


def run_setting(setting: Setting, name: str, config: str, runs: Path, overrides: list[str],
                oracle: str = ORACLE) -> tuple[object, object, float]:  # fmt: skip
    """Train one setting (unless its run is finished) -> (model, config, training seconds)."""
    # Only when training: the CLI imports this module for SETTINGS.
    from ws3d.trainer import data_conflicts, run_digests, train, training_splits

    base = load_config(config, overrides)
    if setting.overrides is None:
        model, cfg = _model_2d_only(oracle if setting.oracle else base.train.init)
        return model, cfg, 0.0
    cfg = load_config(config, [*overrides, *setting.overrides, f"run_dir={runs / name}"])
    done = Path(cfg.run_dir) / "ablation_seconds.json"
    last = Path(cfg.run_dir) / "last.pt"
    saved = load_checkpoint(last) if last.is_file() else None
    if saved is not None and (conflicts := resume_conflicts(saved["config"], cfg)):
        raise InputError(f"{last}: a run of other settings ({', '.join(conflicts)}); delete {cfg.run_dir} to "
                         "train this setting again, or use another --runs")  # fmt: skip
    finished = done.is_file() and saved is not None and saved["step"] >= cfg.train.steps
    if finished:
        if why := data_conflicts(saved.get("data"), run_digests(cfg, training_splits(cfg)), last):
            raise InputError(f"{why}; delete {cfg.run_dir} to train this setting again, or use another --runs")
    else:
        start = time.perf_counter()
        train(cfg)
        done.write_text(json.dumps({"seconds": time.perf_counter() - start}) + "\n")
    model, cfg = model_from_checkpoint(last)
    return model, cfg, json.loads(done.read_text())["seconds"]


def markdown(results: dict, tests: list[str]) -> str:
    """The ablation table: every metric on the first test split, one row per setting; then,
    where there are more test splits, MPJPE and 2D error on each of them. A row of several
    seeds gives their mean, and half their range after MPJPE and 2D px."""
    settings = settings_for(results.get("shift", False))

    def spread(row: dict, key: str, digits: int) -> str:
        return f" ± {row['spread'][key] / 2:.{digits}f}" if "spread" in row else ""

    lines = ["| setting | 3D labels | 2D labels on the multi-view images | rotations | 2D network | MPJPE | N-MPJPE "
             "| P-MPJPE | PCK@150 | AUC | 2D px | solvable | training s |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, row in results["settings"].items():
        s, m = settings[name], row["test"][tests[0]]
        cells = [f"`{name}`", s.labels_3d, s.labels_2d_mv, s.rotations, row["network_2d"],
                 f"{m['mpjpe']:.1f}{spread(row, 'mpjpe', 1)}", f"{m['n_mpjpe']:.1f}", f"{m['p_mpjpe']:.1f}",
                 f"{100 * m['pck150']:.1f}", f"{100 * m['auc']:.1f}", f"{m['px2d']:.2f}{spread(row, 'px2d', 2)}",
                 f"{100 * m['solvable']:.0f} %",
                 f"{row['seconds']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if seeded := {len(row["seeds"]) for row in results["settings"].values() if "seeds" in row}:
        counts = " or ".join(map(str, sorted(seeded)))
        lines += ["", f"Rows with ±: the mean over {counts} seeds (train.seed 0, 1, ...) ± half their range."]
    if len(tests) > 1:
        lines += ["", "| setting | " + " | ".join(f"MPJPE `{t}` | 2D px `{t}`" for t in tests) + " |",
                  "|---|" + "---:|---:|" * len(tests)]  # fmt: skip
        for name, row in results["settings"].items():
            cells = [f"{row['test'][t]['mpjpe']:.1f} | {row['test'][t]['px2d']:.2f}" for t in tests]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(config: str, names: list[str], tests: list[str] | None, runs: Path, out: Path | None,
                 overrides: list[str], progress: bool = True, shift: bool = False, oracle: str = ORACLE,
                 seeds: int | None = None) -> dict:  # fmt: skip
    """Train and evaluate the named settings (of :data:`SHIFT_SETTINGS` if ``shift``, else
    :data:`SETTINGS`); write ``out/ablation{_shift}.{json,md}`` when ``out`` is set.
    ``oracle``: the 2D oracle's checkpoint (the shift's ``2D-oracle`` row). ``seeds``: how
    many seeds every trained setting runs (default: each setting's own ``seeds``)."""
    if seeds is not None and seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    settings = settings_for(shift)
    unknown = [n for n in names if n not in settings]
    if unknown:
        raise InputError(f"unknown ablation setting(s) {unknown}; choose from {list(settings)}")
    if any(settings[n].oracle for n in names) and not Path(oracle).is_file():
        raise InputError(f"no 2D oracle at {oracle}: `make target-oracle2d` trains it")
    base = load_config(config, overrides)
    if base.train.stage != "weak" or not base.train.init:
        raise InputError(f"{config}: the ablation starts from a weak-stage config with train.init set")
    tests = tests or [base.data.root]
    test_sets = {t: ShardDataset(t, "test") for t in tests}
    results = {**machine(), "config": config, "overrides": overrides, "init": base.train.init,
               "steps": base.train.steps, "tests": tests, "shift": shift, "settings": {}}  # fmt: skip
    if shift:
        results["oracle"] = oracle
    for name in names:
        setting, per_seed, seconds = settings[name], [], []
        n_seeds = 1 if setting.overrides is None else seeds or setting.seeds
        for seed in range(n_seeds):
            # Seed 0 is the setting's own run (and the config's seed); others run beside it.
            extra = [f"train.seed={seed}"] if seed else []
            run_name = f"{name}-seed{seed}" if seed else name
            model, cfg, s = run_setting(setting, run_name, config, runs, [*overrides, *extra], oracle)
            metrics = {}
            for test, data in test_sets.items():
                m = evaluate(model, data, cfg.data.size, progress=progress)
                metrics[test] = {k: m["valid" if k == "solvable" else k] for k in METRICS}
            per_seed.append(metrics)
            seconds.append(s)
        network_2d = "-" if setting.overrides is None else "frozen" if cfg.train.freeze_2d else "trained"
        mean = {t: {k: sum(m[t][k] for m in per_seed) / len(per_seed) for k in METRICS} for t in tests}
        row = {"seconds": round(sum(seconds) / len(seconds), 1), "network_2d": network_2d, "test": mean}
        if n_seeds > 1:  # per seed, and the range over them, on the first test split
            row["seeds"] = [m[tests[0]] for m in per_seed]
            row["spread"] = {k: max(m[k] for m in row["seeds"]) - min(m[k] for m in row["seeds"]) for k in METRICS}
        row.update(row["test"][tests[0]])
        results["settings"][name] = row
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{stem(shift)}.json").write_text(json.dumps(results, indent=1) + "\n")
            (out / f"{stem(shift)}.md").write_text(markdown(results, tests))
    return results


def stem(shift: bool) -> str:
    """The results' file name, without the suffix."""
    return "ablation_shift" if shift else "ablation"
