"""The embedded synthetic multi-view data set: splits, on-the-fly rendering and shards.

Four splits, all seeded and reproducible image by image (image i depends only on the
seed, the split, the domain and i, so any worker can render any image):

- ``2d``: single images with 2D labels;
- ``mv``: unlabelled multi-view groups, 2-8 views of one static person (h36m rig: 4
  calibrated views; orbit rig: 2-8 hand-held views), with R, t and a flag saying whether
  training may use the extrinsics (h36m: yes, orbit: no);
- ``val``: single images with 3D ground truth of the validation people: never used for
  training and never in a test split, so choices can be made on them;
- ``test``: single images with 3D ground truth of subjects never used for training
  (nor for choices: that is what ``val`` is for).

Each split is rendered in one domain (:mod:`ws3d.data.domains`): ``source``, the default
and the renderer as it always was, or ``target``, one capture setting.

Every sample is a dict of numpy arrays, the fields :mod:`ws3d.data.schema` lists for
``shards`` (and ``has_K``, always True): the image is an S x S person-centred crop and K
its intrinsics; ``vis`` is 1 where the joint is inside the crop and not under an
occluder; ``joints_cam`` is for evaluation only, never for weakly supervised training;
``mv`` samples add the group, the view and the world-to-camera R, t.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import torch

from ws3d.camera import affine_to_3x3, project, transform_points, world_to_camera
from ws3d.data.domains import CAMERA_HEIGHT_MM, DOMAINS, activity, degrade, dress, room
from ws3d.data.poses import ACTIVITIES, make_subject, sample_person
from ws3d.data.render import background, draw_person, occlude
from ws3d.data.rigs import RIGS, STUDIOS, sample_rig, studio_cameras
from ws3d.data.schema import FIELDS, SHARDS, check_stored, stored_fields, with_rigs
from ws3d.data.transforms import crop_affine, inside_crop, person_box
from ws3d.errors import InputError, MissingFileError, read_input
from ws3d.progress import progress_bar
from ws3d.skeleton import JOINTS, NUM_JOINTS

SPLITS = ("2d", "mv", "val", "test")
_SPLIT_CODE = {"2d": 1, "mv": 2, "test": 3, "val": 4}
TRAIN_SUBJECTS = range(0, 200)  # 2d and mv draw from these ...
TEST_SUBJECTS = range(100_000, 100_040)  # ... test from these, so test people are unseen ...
VAL_SUBJECTS = range(200_000, 200_040)  # ... and val from these: neither trained on nor tested
_SUBJECTS = {"test": TEST_SUBJECTS, "val": VAL_SUBJECTS}
FORMAT_VERSION = 1
STUDIO_SPREAD_MM = 1200.0  # studio rig: people stand anywhere within this of the volume's centre (x and z)
BOX_JITTER = 0.05  # studio multi-view crops: a detector's box, off by this share of its side (centre and side)

@dataclass(frozen=True)
class SynthConfig:
    """What to render. n counts images (for mv: all views of all groups)."""

    split: str
    n: int
    size: int = 128
    seed: int = 0
    rig: str = "mixed"
    occlusion: float = 0.25  # probability of an occluder in front of the person
    truncation: float = 0.15  # probability of a crop that cuts part of the person off
    domain: str = "source"  # one of ws3d.data.domains.DOMAINS

    def __post_init__(self):
        if self.split not in SPLITS:
            raise InputError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.domain not in DOMAINS:
            raise InputError(f"domain must be one of {tuple(DOMAINS)}, got {self.domain!r}")
        if self.rig not in RIGS:
            raise InputError(f"rig must be one of {RIGS}, got {self.rig!r}")
        if not 32 <= self.size <= 512:
            raise InputError(f"size must be within 32..512 pixels, got {self.size}")
        if self.n < (2 if self.split == "mv" else 1):
            raise InputError(f"n must be at least {2 if self.split == 'mv' else 1} for split {self.split!r}")


def group_layout(cfg: SynthConfig) -> tuple[np.ndarray, list[str]]:
    """Views per group and each group's rig. Outside mv every image is its own group.

    mv groups: h36m 4 views, orbit 2-8, studio every camera of the group's studio (group
    g is filmed in studio g % STUDIOS); the last group is trimmed so the views add up to
    exactly cfg.n, and no group is left with a single view.
    """
    rng = np.random.default_rng([cfg.seed, _SPLIT_CODE[cfg.split], 0xA1])
    if cfg.split != "mv":
        rigs = rng.choice(["h36m", "orbit"], cfg.n) if cfg.rig == "mixed" else np.full(cfg.n, cfg.rig)
        return np.ones(cfg.n, np.int64), [str(r) for r in rigs]
    counts, rigs, total = [], [], 0
    studio_views = [len(studio_cameras(cfg.seed, s)[0]) for s in range(STUDIOS)] if cfg.rig == "studio" else []
    while total < cfg.n:
        rig = cfg.rig if cfg.rig != "mixed" else ("h36m" if rng.random() < 0.5 else "orbit")
        if rig == "studio":
            views = min(studio_views[len(counts) % STUDIOS], cfg.n - total)
        else:
            views = min(4 if rig == "h36m" else int(rng.integers(2, 9)), cfg.n - total)
        counts.append(views)
        rigs.append(rig)
        total += views
    if counts[-1] == 1:  # a single view is not a multi-view sample: borrow one from the group before
        if counts[-2] > 2:
            counts[-2] -= 1
            counts[-1] = 2
        else:  # a 2-view orbit group takes the last image as its third view
            counts.pop()
            rigs.pop()
            counts[-1] += 1
    return np.asarray(counts, np.int64), rigs


def render_group(cfg: SynthConfig, group: int, views: int, rig: str, only_view: int | None = None) -> list[dict]:
    """Render the views of one group (one person, one instant); only_view renders just that one."""
    code = _SPLIT_CODE[cfg.split]
    rng = np.random.default_rng([cfg.seed, code, group])
    pool = _SUBJECTS.get(cfg.split, TRAIN_SUBJECTS)
    # The domain's own draws come from streams of their own, so that the source's images stay
    # as they always were and one factor alone changes only what it is about.
    factors = DOMAINS[cfg.domain]
    domain_rng = np.random.default_rng([cfg.seed, code, group, 0xD0])
    subject = dress(factors, make_subject(pool[int(rng.integers(len(pool)))]), domain_rng)
    heights = CAMERA_HEIGHT_MM if "camera" in factors else None
    if rig == "studio":  # fixed cameras, the person anywhere in the capture volume
        studio = group % STUDIOS
        world, posed, _ = sample_person(subject, rng, activity(factors, domain_rng), spread_mm=STUDIO_SPREAD_MM)
        K_full, R, t = studio_cameras(cfg.seed, studio, heights)
        cameras = np.arange(views) if cfg.split == "mv" else rng.integers(len(K_full), size=1)
        K_full, R, t = K_full[cameras], R[cameras], t[cameras]
    else:  # cameras drawn for this group, aimed at the person
        world, posed, _ = sample_person(subject, rng, activity(factors, domain_rng))
        K_full, R, t = sample_rig(rig, views, world, rng, heights)
    light = np.array([rng.uniform(-1, 1), -rng.uniform(0.6, 1.5), rng.uniform(-1, 1)])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.25, 0.45)
    samples = []
    for v in range(views) if only_view is None else (only_view,):
        vrng = np.random.default_rng([cfg.seed, code, group, v + 1])
        view_domain_rng = np.random.default_rng([cfg.seed, code, group, v + 1, 0xD0])
        joints_cam = world_to_camera(world, R[v], t[v])
        uv_full = project(joints_cam, K_full[v])
        centre, side = person_box(uv_full, np.ones(NUM_JOINTS))
        if rig == "studio" and cfg.split == "mv":  # a person detector's box, not the true joints'
            centre = centre + vrng.normal(0.0, BOX_JITTER * side, 2)
            side = side * np.exp(vrng.normal(0.0, BOX_JITTER))
        if vrng.random() < cfg.truncation:
            angle = vrng.uniform(0, 2 * np.pi)
            centre = centre + vrng.uniform(0.2, 0.4) * side * np.array([np.cos(angle), np.sin(angle)])
        A = crop_affine(centre, side, cfg.size)
        K = affine_to_3x3(A) @ K_full[v]
        uv = transform_points(A, uv_full)
        if "room" in factors:  # a studio camera stays put: it sees one room, always the same
            fixed = rig == "studio" and np.random.default_rng([cfg.seed, 0x57D10, studio, int(cameras[v])])
            image = room(cfg.size, fixed or view_domain_rng)
        else:
            image = background(cfg.size, vrng)
        draw_person(image, joints_cam, K, subject, R[v] @ light, ambient)
        vis = inside_crop(uv, cfg.size)
        if vrng.random() < cfg.occlusion:
            covered = occlude(image, uv, vrng)
            px = np.clip(np.round(uv).astype(int), 0, cfg.size - 1)
            vis &= ~covered[px[:, 1], px[:, 0]]
        image += vrng.normal(0.0, vrng.uniform(0.0, 0.03), image.shape).astype(np.float32)
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
        sample = {
            "image": degrade(image, view_domain_rng) if "camera_noise" in factors else image,
            "K": K, "uv": uv, "vis": vis, "joints_cam": joints_cam,
            "subject": subject.subject_id, "activity": ACTIVITIES.index(posed),
        }  # fmt: skip
        if cfg.split == "mv":  # h36m and orbit rigs are drawn for every group: each group is a rig of its own
            rig_id, camera = (studio, int(cameras[v])) if rig == "studio" else (group, v)
            sample.update(group=group, view=v, rig=rig_id, camera=camera, R=R[v], t=t[v],
                          extrinsics_known=rig in ("h36m", "studio"))  # fmt: skip
        sample["has_K"] = True
        samples.append({k: np.asarray(x, dtype=_dtype(k)) for k, x in sample.items()})
    return samples


def _dtype(name: str):
    return FIELDS[name].dtype


class SyntheticDataset(torch.utils.data.Dataset):
    """Renders image i on demand (for DataLoader workers); the same images as the shards.

    Items are the dicts described in the module docstring.
    """

    def __init__(self, cfg: SynthConfig):
        self.cfg = cfg
        counts, self.rigs = group_layout(cfg)
        self.group = np.repeat(np.arange(len(counts)), counts)
        self.view = np.arange(cfg.n) - np.repeat(np.cumsum(counts) - counts, counts)
        self.counts = counts

    def __len__(self) -> int:
        return self.cfg.n

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        g = int(self.group[i])
        return render_group(self.cfg, g, int(self.counts[g]), self.rigs[g], only_view=int(self.view[i]))[0]


def _render_range(cfg: SynthConfig, start: int, stop: int) -> dict[str, np.ndarray]:
    cv2.setNumThreads(1)
    dataset = SyntheticDataset(cfg)
    items = [dataset[i] for i in range(start, stop)]
    return {k: np.stack([it[k] for it in items]) for k in stored_fields(SHARDS, cfg.split == "mv")}


def write_shards(cfg: SynthConfig, out: str | os.PathLike, workers: int | None = None, shard_size: int = 1000,
                 progress: bool = True) -> dict:  # fmt: skip
    """Render a split into ``out/{split}_{k:04d}.npz`` shards plus ``out/{split}.json``.

    Returns the metadata written to the JSON file, including the measured images/s.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    chunk = min(64, shard_size)  # progress granularity; chunks never straddle two shards
    ranges = [
        (s, min(s + chunk, shard + shard_size, cfg.n))
        for shard in range(0, cfg.n, shard_size)
        for s in range(shard, min(shard + shard_size, cfg.n), chunk)
    ]
    names, buffer, start_time = [], [], time.perf_counter()

    def flush():
        name = f"{cfg.split}_{len(names):04d}.npz"
        arrays = {k: np.concatenate([b[k] for b in buffer]) for k in buffer[0]}
        tmp = out / (name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, out / name)  # a killed run never leaves a half-written shard
        names.append(name)
        buffer.clear()

    bar = progress_bar(total=cfg.n, desc=f"render {cfg.split}", unit="img", disable=not progress)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = pool.map(_render_range, [cfg] * len(ranges), *zip(*ranges, strict=True))
        for arrays in results:
            buffer.append(arrays)
            bar.update(len(arrays["image"]))
            if sum(len(b["image"]) for b in buffer) == shard_size:
                flush()
    if buffer:
        flush()
    bar.close()
    seconds = time.perf_counter() - start_time
    meta = {
        **asdict(cfg), "format_version": FORMAT_VERSION, "joints": list(JOINTS), "shards": names,
        "seconds": round(seconds, 2), "images_per_second": round(cfg.n / seconds, 1), "workers": workers,
    }  # fmt: skip
    (out / f"{cfg.split}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


class ShardDataset(torch.utils.data.Dataset):
    """A split written by :func:`write_shards`, loaded into memory.

    ``arrays`` holds the concatenated fields (first axis N); items are per-image dicts.
    Missing files, a wrong format version and fields of the wrong shape raise
    ``InputError`` naming the file and field.
    """

    def __init__(self, root: str | os.PathLike, split: str):
        root = Path(root)
        meta_path = root / f"{split}.json"
        if not meta_path.is_file():
            raise MissingFileError(f"{meta_path}: no such file (render it with `ws3d data synth --split {split}`)")
        self.meta = read_input(meta_path, lambda p: json.loads(p.read_text()), "split index (JSON)")
        if self.meta.get("format_version") != FORMAT_VERSION:
            found = self.meta.get("format_version")
            raise InputError(f"{meta_path}: format_version {found}, expected {FORMAT_VERSION}")
        expected = stored_fields(SHARDS, split == "mv")
        parts = {k: [] for k in expected}
        for name in self.meta["shards"]:
            path = root / name
            if not path.is_file():
                raise MissingFileError(f"{path}: shard listed in {meta_path.name} is missing")
            with read_input(path, np.load, "shard .npz") as shard:
                arrays = with_rigs({k: shard[k] for k in shard.files})  # shards from before rig ids load too
            check_stored(arrays, SHARDS, split == "mv", path, image_size=self.meta["size"])
            for field in expected:
                parts[field].append(arrays[field])
        self.arrays = {k: np.concatenate(v) for k, v in parts.items()}
        self.arrays["has_K"] = np.ones(len(self.arrays["image"]), bool)  # rendered: always known
        if len(self.arrays["image"]) != self.meta["n"]:
            raise InputError(f"{meta_path}: lists n={self.meta['n']} images but the shards hold {len(self)}")

    def __len__(self) -> int:
        return len(self.arrays["image"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.arrays.items()}
