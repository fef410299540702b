"""Training configuration: YAML files with ``section.key=value`` overrides.

A config has four sections plus ``run_dir``; every key has a default (the paper's
values where it gives one), so a YAML file only names what it changes::

    run_dir: runs/synthetic/weak
    train: {stage: weak, init: runs/synthetic/pretrain2d/last.pt, steps: 600}

Unknown keys, wrong types and out-of-range values raise :class:`ws3d.errors.InputError` with the key's
name, before anything is trained.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import asdict, dataclass, field, fields

import yaml

from ws3d.errors import InputError, MissingFileError

STAGES = ("pretrain2d", "weak", "full")
MV_LABELS = ("pseudo", "consistent", "given", "none")
OBJECTIVES = ("triangulated", "paper")
ROTATIONS = ("group", "rig", "known")
AUGMENTS = ("crop", "public")
BACKBONES = ("small", "hrnet_w32")  # built by ws3d/model/pose_net.py


@dataclass
class DataConfig:
    root: str = "data/synthetic"  # shards written by `ws3d data synth` (2d.json, mv.json, val.json, test.json)
    # The 2D-labelled split from another rendered set: the source domain's, while data.root
    # holds the target domain's multi-view, validation and test splits.
    root_2d: str | None = None
    # Record-set files (`ws3d data records`) that replace a synthetic split: real data sets.
    records_2d: str | None = None  # 2D-labelled images (e.g. MPII)
    records_mv: str | None = None  # multi-view groups (e.g. Human3.6M, MPI-INF-3DHP)
    records_test: str | None = None  # validation images with 3D labels (synthetic: data.root's val split)
    size: int = 96  # crop side fed to the network, pixels
    images: int = 128  # 2D-labelled images per batch (paper: 128)
    groups: int = 32  # multi-view groups per batch (paper: 32)
    max_views: int = 4  # views per group and epoch (paper: at most 4)
    scale: float = 0.2  # crop scale augmentation, +-20 %
    rotation: float = 30.0  # crop rotation augmentation, +-30 degrees
    # The 2D-labelled images' augmentation: "crop" (scale and rotation above) or "public"
    # (what public 2D models train with: ws3d.data.augment). Multi-view views always get
    # "crop": a mirrored view would break its group's geometry.
    augment: str = "crop"
    sigma: float = 2.0  # target heatmap Gaussian, heatmap pixels
    workers: int = 2  # DataLoader processes
    # Weak stage: the 2D labels of the multi-view images. "pseudo": the 2D model's joints with
    # confidence > loss.pseudo_threshold (the paper's in-the-wild setting); "consistent" (ws3d's
    # default): those of them that the group's triangulation confirms (the joint's depth target
    # exists: seen by another view, fitted within 8 px); "given": the data set's own 2D labels;
    # "none": no L_H on them (the triangulation still uses the pseudo-labels).
    mv_labels: str = "consistent"
    # Weak stage: where the triangulation's camera rotations come from. "group": estimated
    # from each group's own 2D joints (the in-the-wild case); "rig": from the calibration of
    # each rig, pooled over all its groups (ws3d.multiview.calibrate_rig on the same 2D
    # joints; groups whose rig is only themselves fall back to "group"); "known": the
    # cameras' true rotations where extrinsics_known ("WS+R").
    rotations: str = "group"
    eval_images: int = 1000  # images validated on during training (0: none): see trainer.validation_split


@dataclass
class ModelConfig:
    backbone: str = "small"  # one of BACKBONES
    width: int = 32  # channels of the small backbone
    pretrained: str | None = None  # HRNet-W32 checkpoint file for the backbone (no downloads)
    beta: float = 50.0  # softmax sharpness; multiplies the heatmap logits
    depth_blocks: int = 0  # residual blocks of a depth branch before the depth maps (not in the paper)


@dataclass
class LossConfig:
    alpha: float = 10.0  # weight of L_MC
    beta_b: float = 100.0  # weight of L_B
    psi: float = 5.0  # weight of L_z (fully supervised, and on the triangulated targets)
    # Weak stage: "triangulated" (ws3d's default, not the paper's): L_H + psi L_z against
    # depths triangulated from the multi-view 2D joints; "paper": L_H + alpha L_MC + beta_b L_B.
    objective: str = "triangulated"
    uv: float = 0.0  # weight of an L1 term on the soft-argmax uv of labelled joints (not in the paper)
    pseudo_threshold: float = 0.5  # confidence above which a pseudo-label is kept
    # L_MC's gradient also through the fitted R, t into both views' poses (not in the paper,
    # which stops it there; weighted_procrustes is differentiable).
    procrustes_grad: bool = False


@dataclass
class TrainConfig:
    stage: str = "pretrain2d"  # pretrain2d | weak | full
    init: str | None = None  # checkpoint whose weights start this stage (not a resume)
    steps: int = 1000
    lr: float = 5e-4
    lr_final: float = 5e-5  # the learning rate after the drop
    lr_drop_at: float = 5 / 6  # fraction of the run at which it drops
    # Keep the 2D path (backbone and heatmaps) as train.init left it and train only the depth
    # branch and maps (not in the paper, which trains the whole network in every stage).
    freeze_2d: bool = False
    amp: bool = True  # mixed precision on CUDA (bfloat16 where supported); ignored on CPU
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200
    checkpoint_every: int = 100
    progress: bool = True


@dataclass
class Config:
    run_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _coerce(key: str, value, default):
    """Check a value against the type of the key's default; ints are accepted for floats."""
    kind = type(default)
    if default is None:  # optional paths
        if value is None or isinstance(value, str):
            return value
        raise InputError(f"config key {key!r} must be a path or null, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if type(value) is not kind:
        raise InputError(f"config key {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _set(cfg: Config, key: str, value) -> None:
    parts = key.split(".")
    target, name = cfg, parts[-1]
    for part in parts[:-1]:
        sections = [f.name for f in fields(Config) if f.name != "run_dir"]
        if part not in sections or target is not cfg:
            hint = difflib.get_close_matches(part, sections, 1)
            raise InputError(
                f"unknown config section {part!r} in {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        target = getattr(target, part)
    names = [f.name for f in fields(target)]
    if name not in names or (target is cfg and name != "run_dir"):
        hint = difflib.get_close_matches(name, names, 1)
        raise InputError(f"unknown config key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    setattr(target, name, _coerce(key, value, getattr(target, name)))


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


# Keys a resumed run may change: where things are, how often to log, evaluate and save,
# and the total number of steps (the learning-rate drop stays where the first run put
# it: the scheduler's milestone is part of the checkpoint).
RESUMABLE = {"run_dir", "data.root", "data.root_2d", "data.records_test", "data.workers", "data.eval_images",
             "train.device", "train.steps", "train.log_every", "train.eval_every", "train.checkpoint_every",
             "train.progress"}  # fmt: skip


def resume_conflicts(saved: dict, cfg: Config) -> list[str]:
    """Keys outside :data:`RESUMABLE` whose value in ``cfg`` differs from ``saved`` (a
    checkpoint's nested config), as "key (saved -> now)" strings. A key the checkpoint
    predates counts as its default."""
    defaults = _flatten(Config().to_dict())
    old, new = defaults | _renamed(_flatten(saved)), _flatten(cfg.to_dict())
    return [f"{k} ({old.get(k, 'absent')!r} -> {new.get(k, 'absent')!r})" for k in sorted(old.keys() | new.keys())
            if k not in RESUMABLE and old.get(k, "absent") != new.get(k, "absent")]  # fmt: skip


# Keys that checkpoints made before a rename still carry: old key -> (new key, value map).
RENAMED = {"data.pseudo_labels": ("data.mv_labels", {True: "pseudo", False: "none"}),
           "data.known_extrinsics": ("data.rotations", {True: "known", False: "group"})}  # fmt: skip


def _renamed(flat: dict) -> dict:
    """A flat config with the keys of :data:`RENAMED` under their new names."""
    out = {}
    for key, value in flat.items():
        if key in RENAMED:
            key, values = RENAMED[key][0], RENAMED[key][1]
            value = values.get(value, value)
        out[key] = value
    return out


def from_dict(tree: dict) -> Config:
    """A validated Config from a nested dict (as stored in checkpoints; renamed keys are read)."""
    cfg = Config()
    for key, value in _renamed(_flatten(tree)).items():
        _set(cfg, key, value)
    validate(cfg)
    return cfg


def load_config(path: str | os.PathLike | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config (None: the defaults) and apply ``key=value`` overrides.

    Override values are parsed as YAML (``train.steps=200``, ``model.pretrained=null``).
    """
    tree = {}
    if path is not None:
        try:
            with open(path) as f:
                tree = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise MissingFileError(f"{path}: no such config file") from None
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise InputError(f"{path}: a config must be a mapping of sections, got {type(tree).__name__}")
    cfg = Config()
    for key, value in _flatten(tree).items():
        _set(cfg, key, value)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"override {item!r} is not key=value (e.g. train.steps=200)")
        _set(cfg, key.strip(), yaml.safe_load(text) if text.strip() else None)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Range checks that types cannot express."""
    d, t, m = cfg.data, cfg.train, cfg.model
    checks = [
        (t.stage in STAGES, f"train.stage must be one of {STAGES}, got {t.stage!r}"),
        (m.backbone in BACKBONES, f"model.backbone must be one of {BACKBONES}, got {m.backbone!r}"),
        (d.mv_labels in MV_LABELS, f"data.mv_labels must be one of {MV_LABELS}, got {d.mv_labels!r}"),
        (cfg.loss.objective in OBJECTIVES, f"loss.objective must be one of {OBJECTIVES}, got {cfg.loss.objective!r}"),
        (d.rotations in ROTATIONS, f"data.rotations must be one of {ROTATIONS}, got {d.rotations!r}"),
        (d.augment in AUGMENTS, f"data.augment must be one of {AUGMENTS}, got {d.augment!r}"),
        (t.device in ("auto", "cpu", "cuda"), f"train.device must be auto, cpu or cuda, got {t.device!r}"),
        (t.steps > 0, f"train.steps must be positive, got {t.steps}"),
        (0 < t.lr_drop_at <= 1, f"train.lr_drop_at must be within (0, 1], got {t.lr_drop_at}"),
        (t.lr > 0 and t.lr_final > 0, "train.lr and train.lr_final must be positive"),
        (min(t.log_every, t.eval_every, t.checkpoint_every) > 0, "train.*_every must be positive"),
        (d.size % 32 == 0 and 64 <= d.size <= 256, f"data.size must be a multiple of 32 within 64..256, got {d.size}"),
        (d.images >= 0 and d.groups >= 0, "data.images and data.groups must not be negative"),
        (d.max_views >= 2, f"data.max_views must be at least 2, got {d.max_views}"),
        (d.workers >= 0 and d.eval_images >= 0, "data.workers and data.eval_images must not be negative"),
        (m.beta > 0, f"model.beta must be positive, got {m.beta}"),
        (0 <= m.depth_blocks <= 8, f"model.depth_blocks must be within 0..8, got {m.depth_blocks}"),
        (t.stage == "pretrain2d" or t.init is not None or t.stage == "full",
         "train.stage=weak needs train.init, the 2D-pretrained checkpoint (its model labels the multi-view data)"),
        (not t.freeze_2d or (t.init is not None and t.stage != "pretrain2d"),
         "train.freeze_2d keeps the 2D path of train.init: it needs train.init and train.stage weak or full"),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise InputError(message)
