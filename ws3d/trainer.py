"""The trainer: one loop for the three stages of the paper.

* ``pretrain2d``: 2D-labelled images, L_H.
* ``weak``: 2D-labelled images (L_H) plus unlabelled multi-view groups: L_H on their 2D
  labels (``data.mv_labels``: the 2D model's pseudo-labels by default) and either
  psi L_z against depths triangulated from those 2D joints (``loss.objective=
  triangulated``, ws3d's default, :mod:`ws3d.multiview`) or the paper's alpha L_MC +
  beta_B L_B (``loss.objective=paper``). No 3D label and no camera pose is used, unless
  ``data.rotations=known`` asks for the true rotations ("WS+R"). The labels and targets
  are made (and cached) by :mod:`ws3d.weak_data`.
* ``full``: the fully supervised baseline: the same images, L_H + psi L_z with the
  multi-view images' 3D labels.

``train.init`` starts any stage from a ws3d checkpoint or from a public 2D model, an
MMPose top-down HRNet-W32 trained on COCO (:mod:`ws3d.model.mmpose`: its backbone and
heatmaps; the depth maps start untrained).

Runs with ``torchrun`` use DistributedDataParallel: each process takes an equal share of
every global batch. ``run_dir/last.pt`` is written atomically every
``train.checkpoint_every`` steps; starting a run whose directory holds one resumes it
exactly (weights, optimiser, schedule, step, RNG; the data order and augmentation are
functions of (seed, epoch, index), so the resumed run sees the same batches). Resuming
with settings that change what is trained is refused (:data:`ws3d.config.RESUMABLE`), and
so is resuming on other data or from another ``train.init``: the checkpoint keeps a digest
of each training split and of the init weights (``data``: :func:`run_digests`), so
``data.root`` may move but not change its contents.
``run_dir/metrics.jsonl`` logs losses and validation metrics; ``run_dir/training.png``
plots them.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from ws3d.checkpoint import (
    git_revision,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trained_by,
    weights_digest,
)
from ws3d.config import Config, resume_conflicts
from ws3d.data.records import open_records
from ws3d.data.sampling import MixedBatchSampler, MixedDataset, collate_mixed, group_indices
from ws3d.data.schema import digest_arrays
from ws3d.data.synthetic import ShardDataset
from ws3d.data.transforms import PoseTransform
from ws3d.errors import InputError
from ws3d.evaluate import evaluate
from ws3d.losses import bone_loss, depth_loss, heatmap_loss, multiview_loss, relative_depths, uv_loss
from ws3d.model import build_model, load_weights
from ws3d.model.build import load_init, read_init
from ws3d.plots import read_jsonl, training_curves
from ws3d.progress import progress_bar
from ws3d.weak_data import multi_view_set


def _setup_distributed(cfg: Config) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether this call joined the process group that torchrun
    describes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise InputError("train.device=cuda but torch sees no CUDA device")
    device = torch.device(f"cuda:{local}") if wants_cuda else torch.device("cpu")
    if wants_cuda:
        torch.cuda.set_device(device)
    joined = world > 1 and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if wants_cuda else "gloo")
    return rank, world, device, joined


def split_dataset(cfg: Config, split: str) -> Dataset:
    """The images of one role (``2d``, ``mv`` or ``test``): the record-set file that
    ``data.records_<split>`` names (read lazily), else the synthetic shards in ``data.root``
    (``data.root_2d`` for the 2D-labelled split, where set)."""
    path = getattr(cfg.data, f"records_{split}")
    if path:
        return open_records(path, multi_view=split == "mv")
    root = cfg.data.root_2d if split == "2d" and cfg.data.root_2d else cfg.data.root
    return ShardDataset(root, split)


def validation_split(cfg: Config) -> tuple[str, Dataset] | None:
    """What training validates on, named: ``data.records_test``; else the ``val`` split of
    ``data.root`` (people that no test split shows, so that choices made on it do not
    leak the test); else, for sets rendered without one, its ``test`` split; else None."""
    if cfg.data.records_test:
        return cfg.data.records_test, split_dataset(cfg, "test")
    for split in ("val", "test"):
        if (Path(cfg.data.root) / f"{split}.json").is_file():
            return f"{cfg.data.root} ({split})", ShardDataset(cfg.data.root, split)
    return None


def _rank0_first(make, rank: int, world: int):
    """Run ``make`` (which fills a cache) on rank 0 first, then on the others (which read it)."""
    result = make() if rank == 0 else None
    if world > 1:
        dist.barrier()
    return make() if rank != 0 else result


def training_splits(cfg: Config) -> dict[str, Dataset]:
    """The data sets the stage trains on, by role: ``2d`` (where ``data.images`` > 0) and
    ``mv`` (every stage but ``pretrain2d``); the test split only validates and is not here."""
    d, stage = cfg.data, cfg.train.stage
    if stage != "pretrain2d" and not d.groups:
        raise InputError(f"train.stage={stage} needs multi-view groups: data.groups must be positive")
    if stage == "pretrain2d" and not d.images:
        raise InputError(f"train.stage={stage} trains on 2D-labelled images: data.images must be positive")
    roles = (["2d"] if d.images else []) + (["mv"] if stage != "pretrain2d" else [])
    return {role: split_dataset(cfg, role) for role in roles}


def run_digests(cfg: Config, splits: dict[str, Dataset]) -> dict[str, str]:
    """What a run is trained from: a digest of each split of :func:`training_splits`
    (:func:`ws3d.data.schema.digest_arrays`, by role) and, under ``"init"``, of the
    ``train.init`` weights, so that a checkpoint replaced at the same path is noticed."""
    digests = {role: digest_arrays(split.arrays) for role, split in splits.items()}
    if cfg.train.init:
        digests["init"] = weights_digest(read_init(cfg.train.init)["model"])
    return digests


def data_conflicts(saved: dict | None, now: dict[str, str], where: Path) -> str | None:
    """Why a run recorded with digests ``saved`` (a checkpoint's ``data``) cannot go on
    with, or be reported for, the inputs digested as ``now``; None if they are the same."""
    if saved is None:
        return f"{where} records no digest of its data (it predates that check), so it cannot be matched to this data"
    changed = [role for role in sorted(saved.keys() | now.keys()) if saved.get(role) != now.get(role)]
    if changed:
        what = ", ".join("the train.init weights" if role == "init" else f"the {role} split" for role in changed)
        return f"{where} was trained from other inputs ({what}: not what is configured now)"
    return None


def _data(cfg: Config, model, rank: int, world: int, run_dir: Path, expected: dict | None = None):
    """The mixed data set, this process's batch sampler and the digests of the training data
    (:func:`ws3d.data.schema.digest_arrays`, by role). ``expected`` (a resumed checkpoint's
    ``data``): refuse other data before anything is labelled."""
    d, stage = cfg.data, cfg.train.stage
    splits = training_splits(cfg)
    digests = run_digests(cfg, splits)
    if expected is not None and (why := data_conflicts(expected.get("data"), digests, Path(cfg.run_dir) / "last.pt")):
        raise InputError(f"cannot resume: {why}; use the run's data and init, or another run_dir")
    multi_view, groups = splits.get("mv"), []
    if stage == "weak":
        once = functools.partial(_rank0_first, rank=rank, world=world)
        multi_view = multi_view_set(cfg, model, multi_view, digests["mv"], run_dir, once)
        groups = group_indices(multi_view.views.arrays["group"])
    elif stage == "full":
        groups = group_indices(multi_view.arrays["group"])
    crop = functools.partial(PoseTransform, d.size, stride=model.stride, sigma=d.sigma, scale=d.scale,
                             rotation=d.rotation)  # fmt: skip
    two_d = splits.get("2d")
    dataset = MixedDataset(two_d, multi_view, crop(augment=d.augment), seed=cfg.train.seed, mv_transform=crop())
    sampler = MixedBatchSampler(len(two_d) if two_d else 0, groups, d.images, d.groups if stage != "pretrain2d" else 0,
                                d.max_views, seed=cfg.train.seed, rank=rank, world_size=world)  # fmt: skip
    if len(sampler) == 0:
        raise InputError(f"too few images for one batch of data.images={d.images}, data.groups={d.groups}")
    return dataset, sampler, digests


def compute_losses(model, batch: dict, cfg: Config, device: torch.device) -> tuple[torch.Tensor, dict]:
    """The stage's total loss and its unweighted terms for one mixed batch."""
    two_d, mv = batch["2d"], batch["mv"]
    parts = [p for p in (two_d, mv) if p is not None]
    images = torch.cat([p["image"] for p in parts]).to(device, non_blocking=True)
    L = cfg.loss
    paper = mv is not None and cfg.train.stage == "weak" and L.objective == "paper"
    n = len(two_d["image"]) if two_d is not None else 0
    # Only L_MC and L_B need the 3D poses. A source without intrinsics (MPII) brings a
    # nominal camera (has_K False, ws3d.data.records.with_cameras): its poses are never used.
    K = torch.cat([p["K"] for p in parts]).to(device) if paper else None
    autocast = torch.autocast("cuda", dtype=_amp_dtype(), enabled=device.type == "cuda" and cfg.train.amp)
    with autocast:
        out = model(images, K)
    terms = {}
    total = torch.zeros((), device=device)
    if two_d is not None:
        terms["l_h"] = heatmap_loss(out["heatmaps"][:n], two_d["heatmaps"].to(device), two_d["vis"].to(device))
        total = total + terms["l_h"]
        if L.uv:
            stride = images.shape[-1] // out["heatmaps"].shape[-1]  # model may be DDP-wrapped: no .stride
            terms["l_uv"] = uv_loss(out["uv"][:n], two_d["uv"].to(device), two_d["vis"].to(device), stride)
            total = total + L.uv * terms["l_uv"]
    if mv is not None:
        group = mv["view_group"].to(device)
        terms["l_h_mv"] = heatmap_loss(out["heatmaps"][n:], mv["heatmaps"].to(device), mv["vis"].to(device), group)
        total = total + terms["l_h_mv"]
        z = out["z"][n:]
        if "joints_cam" in mv:  # the fully supervised baseline: true depths of every joint
            terms["l_z"] = depth_loss(z, relative_depths(mv["joints_cam"].to(device)), torch.ones_like(z), group)
            total = total + L.psi * terms["l_z"]
        if "depth" in mv:  # ws3d's weak stage: triangulated depths where they are determined
            terms["l_z_mv"] = depth_loss(z, mv["depth"].to(device), mv["depth_weight"].to(device), group)
            total = total + L.psi * terms["l_z_mv"]
        if paper:
            # phi >= 0. Views without a real root depth keep their weight: their (finite) clamped
            # poses still pull towards valid ones, while a zero weight would let training park
            # every view there at zero loss.
            phi = out["conf"][n:].clamp_min(0)
            R, known = (mv["R"].to(device), mv["extrinsics_known"].to(device)) if "R" in mv else (None, None)
            terms["l_mc"] = multiview_loss(out["pose"][n:], phi, mv["pairs"].to(device), group, R, known,
                                           through_alignment=L.procrustes_grad)
            terms["l_b"] = bone_loss(out["pose"][n:], phi, group)
            total = total + L.alpha * terms["l_mc"] + L.beta_b * terms["l_b"]
    return total, terms


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16


def _log(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop records after ``step`` (written after the checkpoint a resumed run starts from)."""
    if path.is_file():
        keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def build(cfg: Config, rank: int = 0, world: int = 1, device: torch.device | str = "cpu",
          resume: dict | None = None):  # fmt: skip
    """The stage's model (initialised from ``train.init``), mixed data set, batch sampler and
    the digests of its training data by role (kept in checkpoints). ``resume``: the
    checkpoint a run resumes from, whose data must be the same."""
    # A ws3d checkpoint or an MMPose COCO HRNet-W32 (ws3d.model.mmpose); fail before anything is written.
    init = read_init(cfg.train.init, cfg.model.backbone) if cfg.train.init else None
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg).to(device)
    if init is not None:
        load_init(model, init, cfg.train.init, cfg.train.stage)
    if cfg.train.freeze_2d:
        model.freeze_2d()
    if cfg.train.stage == "pretrain2d":
        # L_H never reaches the depth branch (nor does loss.uv, whose gradient on the depth maps
        # is zero): under DDP a parameter without a gradient stalls the reduction, so it does not
        # train here. The weak and full stages re-initialise it (model.reset_depth).
        model.depth_branch.requires_grad_(False)
    dataset, sampler, digests = _data(cfg, model, rank, world, run_dir, resume)  # labelled by the init model
    return model, dataset, sampler, digests


def train(cfg: Config) -> dict:
    """Run (or resume) one stage. Returns {"step", "seconds", "val": metrics or None}.

    A process group this call joins (under torchrun) is left again before it returns."""
    rank, world, device, joined = _setup_distributed(cfg)
    try:
        return _train(cfg, rank, world, device)
    finally:
        if joined:  # torch asks for this before exit (NCCL warns otherwise); a caller's own group stays
            dist.destroy_process_group()


def _train(cfg: Config, rank: int, world: int, device: torch.device) -> dict:
    run_dir, last = Path(cfg.run_dir), Path(cfg.run_dir) / "last.pt"
    resume = load_checkpoint(last) if last.is_file() else None  # a bad file fails before any work
    if resume is not None and (conflicts := resume_conflicts(resume["config"], cfg)):
        raise InputError(f"{last}: cannot resume with a different config: {', '.join(conflicts)}; "
                         "use the run's settings or another run_dir")  # fmt: skip
    model, dataset, sampler, digests = build(cfg, rank, world, device, resume)
    revisions = trained_by(resume, git_revision())  # what one command must check out to redo it
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    drop = max(1, round(cfg.train.steps * cfg.train.lr_drop_at))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [drop], gamma=cfg.train.lr_final / cfg.train.lr)
    step, log_path = 0, run_dir / "metrics.jsonl"
    if resume is not None:
        load_weights(model, resume, last)
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        set_rng_state(resume["rng"])
        step = resume["step"]
        if rank == 0:
            _truncate_log(log_path, step)
            print(f"resuming {run_dir} at step {step} of {cfg.train.steps}")
    elif rank == 0 and log_path.exists():
        log_path.unlink()
    net = DistributedDataParallel(model) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.train.amp
                                  and _amp_dtype() == torch.float16)  # fmt: skip
    val_images, val_name = None, ""
    validation = validation_split(cfg) if rank == 0 and cfg.data.eval_images else None
    if validation is not None:
        name, split = validation
        val_images = Subset(split, range(min(cfg.data.eval_images, len(split))))
        val_name = f"{len(val_images)} images of {name}"
        print(f"validating on {val_name}")

    def checkpoint():
        if rank == 0:
            save_checkpoint(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "step": step, "rng": rng_state(),
                                   "config": cfg.to_dict(), "data": digests, "git": revisions})  # fmt: skip

    def validate():
        metrics = evaluate(model, val_images, cfg.data.size) if val_images is not None else None
        if metrics is not None:
            _log(log_path, {"step": step, "val": metrics})
        if log_path.is_file():  # nothing logged yet: eval_every came before log_every, and no validation set
            training_curves(log_path, run_dir / "training.png", val_name)
        return metrics

    bar = progress_bar(total=cfg.train.steps, initial=step, desc=cfg.train.stage, unit="step",
                   disable=not (cfg.train.progress and rank == 0))  # fmt: skip
    start, window, window_images, window_start, metrics = time.perf_counter(), [], 0, time.perf_counter(), None
    model.train()
    while step < cfg.train.steps:
        epoch, skip = divmod(step, len(sampler))
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_sampler=list(sampler)[skip:], num_workers=cfg.data.workers,
                            collate_fn=collate_mixed, pin_memory=device.type == "cuda")  # fmt: skip
        for batch in loader:
            total, terms = compute_losses(net, batch, cfg, device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            window.append({"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}})
            window_images += sum(len(p["image"]) for p in (batch["2d"], batch["mv"]) if p is not None) * world
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                means = {k: float(torch.stack([w[k] for w in window]).mean()) for k in window[0]}
                if world > 1:  # every process logs the same, global means
                    values = torch.tensor(list(means.values()), device=device)
                    dist.all_reduce(values)
                    means = dict(zip(means, (values / world).tolist(), strict=True))
                rate = window_images / (time.perf_counter() - window_start)
                if rank == 0:
                    _log(log_path, {"step": step, **means, "lr": scheduler.get_last_lr()[0], "images_per_s": rate})
                bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()} | {"img/s": f"{rate:.0f}"}, refresh=False)
                window, window_images, window_start = [], 0, time.perf_counter()
            bar.update(1)
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
                checkpoint()
            if rank == 0 and (step % cfg.train.eval_every == 0 or step == cfg.train.steps):
                metrics = validate()
            if step >= cfg.train.steps:
                break
    bar.close()
    if rank == 0 and metrics is None and step == cfg.train.steps and log_path.is_file():
        metrics = next((r["val"] for r in reversed(read_jsonl(log_path)) if "val" in r), None)
    if world > 1:
        dist.barrier()
    return {"step": step, "seconds": time.perf_counter() - start, "val": metrics}
