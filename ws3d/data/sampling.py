"""Mixed batches: 2D-labelled images plus multi-view groups, views re-drawn every epoch.

The paper trains on batches of 128 2D-labelled images and 32 multi-view samples of 4
views each. :class:`MixedDataset` puts a 2D set and a multi-view set behind one index;
:class:`MixedBatchSampler` yields, per batch, ``images`` indices from the 2D set and the
views of ``groups`` groups (at most ``max_views`` per group, a fresh random subset every
epoch); :func:`collate_mixed` turns a batch into ``{"2d": ..., "mv": ...}`` with the
multi-view part carrying ``view_group`` and the ordered view ``pairs`` that L_MC uses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from ws3d.data.schema import FIELDS
from ws3d.errors import InputError


def group_indices(groups: np.ndarray) -> list[np.ndarray]:
    """Indices of the views of each group, in order of first appearance. groups: (N,) ids."""
    groups = np.asarray(groups)
    _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == g) for g in order]


class MixedDataset(Dataset):
    """Index i < len(two_d) is a 2D-labelled image, the rest are multi-view views.

    Items are ``transform(sample)`` (multi-view views: ``mv_transform(sample)`` where
    given) with ``source`` = 0 (2D) or 1 (multi-view) added; multi-view samples must carry
    ``group``. With ``seed`` set, the transform is called as
    ``transform(sample, generator=g)`` with g seeded by (seed, epoch, i): the augmentation
    of an item then depends on nothing else (not on workers, nor on where a resumed run
    restarted). Call :meth:`set_epoch` before each epoch's DataLoader iterator is made.
    """

    def __init__(self, two_d: Dataset | None, multi_view: Dataset | None, transform: Callable | None = None,
                 seed: int | None = None, mv_transform: Callable | None = None):  # fmt: skip
        self.two_d, self.multi_view = two_d, multi_view
        self.n2d = len(two_d) if two_d is not None else 0
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.mv_transform = mv_transform or transform

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n2d + (len(self.multi_view) if self.multi_view is not None else 0)

    def __getitem__(self, i: int) -> dict:
        source = int(i >= self.n2d)
        sample = self.multi_view[i - self.n2d] if source else self.two_d[i]
        transform = self.mv_transform if source else self.transform
        if transform is None:
            item = dict(sample)
        elif self.seed is None:
            item = transform(sample)
        else:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
            item = transform(sample, generator=torch.Generator().manual_seed(seed))
        item["source"] = source
        return item


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of indices into a :class:`MixedDataset`.

    Args:
        n_images: size of the 2D set (0: multi-view only).
        groups: per multi-view group, the indices of its views within the multi-view set
            (:func:`group_indices`); empty for 2D only.
        images: 2D images per batch (paper: 128).
        groups_per_batch: multi-view groups per batch (paper: 32).
        max_views: views drawn per group and epoch (paper: 4); groups with fewer views use all.
        seed: base seed; the epoch set with :meth:`set_epoch` is mixed in.
        rank, world_size: for distributed training, every process builds the same sampler
            and gets its share of each global batch: ``images / world_size`` 2D images and
            ``groups_per_batch / world_size`` groups (both must divide).

    An epoch is one pass over the multi-view groups (over the 2D images when there are
    none); the 2D images are reshuffled and reused when they run out first. Every batch
    is full: a last partial batch is dropped, and the count is what ``len`` says.
    """

    def __init__(self, n_images: int, groups: list[np.ndarray], images: int = 128, groups_per_batch: int = 32,
                 max_views: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1):  # fmt: skip
        if images < 0 or groups_per_batch < 0 or images + groups_per_batch == 0:
            raise InputError(f"need a positive batch, got images={images}, groups_per_batch={groups_per_batch}")
        if images and n_images < images:
            raise InputError(f"the 2D set has {n_images} images, fewer than one batch of {images}")
        if groups_per_batch and len(groups) < groups_per_batch:
            raise InputError(f"the multi-view set has {len(groups)} groups, fewer than one batch of {groups_per_batch}")
        if max_views < 2:
            raise InputError(f"max_views must be at least 2, got {max_views}")
        if images % world_size or groups_per_batch % world_size or not 0 <= rank < world_size:
            raise InputError(f"images={images} and groups_per_batch={groups_per_batch} must split evenly over "
                             f"world_size={world_size} processes (rank {rank})")
        self.rank, self.world_size = rank, world_size
        self.n_images, self.groups = n_images, groups
        self.images, self.groups_per_batch, self.max_views = images, groups_per_batch, max_views
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.groups_per_batch:
            return len(self.groups) // self.groups_per_batch
        return self.n_images // self.images

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        image_order = rng.permutation(self.n_images) if self.images else np.zeros(0, np.int64)
        group_order = rng.permutation(len(self.groups)) if self.groups_per_batch else None
        cursor = 0
        for b in range(len(self)):
            images, groups = [], []
            if self.images:
                if cursor + self.images > len(image_order):
                    image_order, cursor = rng.permutation(self.n_images), 0
                images = image_order[cursor : cursor + self.images].tolist()
                cursor += self.images
            if self.groups_per_batch:
                for g in group_order[b * self.groups_per_batch : (b + 1) * self.groups_per_batch]:
                    views = self.groups[g]
                    chosen = rng.choice(views, min(self.max_views, len(views)), replace=False) if len(views) else views
                    groups.append((self.n_images + np.sort(chosen)).tolist())
            # Every rank draws the whole global batch (same rng), then keeps its share.
            n, m, r = self.images // self.world_size, self.groups_per_batch // self.world_size, self.rank
            yield images[r * n : (r + 1) * n] + [v for views in groups[r * m : (r + 1) * m] for v in views]


def view_pairs(view_group: torch.Tensor) -> torch.Tensor:
    """All ordered pairs (c, c'), c != c', of views in the same group. view_group: (M,) -> (P, 2)."""
    same = view_group[:, None] == view_group[None, :]
    same.fill_diagonal_(False)
    return same.nonzero()


def collate_mixed(items: list[dict]) -> dict:
    """Batch items of a :class:`MixedDataset` into ``{"2d": batch or None, "mv": batch or None}``.

    The multi-view batch adds ``view_group`` (M,) (0..G-1 in batch order) and ``pairs`` (P, 2).
    A field that :data:`ws3d.data.schema.FIELDS` does not list is refused (a new field is
    described there first).
    """
    unknown = sorted({k for it in items for k in it} - FIELDS.keys())
    if unknown:
        raise InputError(f"sample fields not in ws3d.data.schema.FIELDS: {', '.join(unknown)}")
    out = {}
    for name, source in (("2d", 0), ("mv", 1)):
        chosen = [{k: v for k, v in it.items() if k != "source"} for it in items if it["source"] == source]
        out[name] = default_collate(chosen) if chosen else None
    if out["mv"] is not None:
        _, out["mv"]["view_group"] = torch.unique_consecutive(out["mv"]["group"], return_inverse=True)
        out["mv"]["pairs"] = view_pairs(out["mv"]["view_group"])
    return out
