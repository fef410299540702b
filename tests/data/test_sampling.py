"""Mixed 2D + multi-view batches: sizes, view subsets per epoch, pairs."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ws3d.data.sampling import MixedBatchSampler, MixedDataset, collate_mixed, group_indices, view_pairs
from ws3d.data.synthetic import SynthConfig, SyntheticDataset
from ws3d.data.transforms import PoseTransform


def test_group_indices_keep_first_appearance_order():
    groups = group_indices(np.array([5, 5, 2, 2, 2, 9, 9]))
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3, 4], [5, 6]]


def test_view_pairs_are_all_ordered_pairs_within_groups():
    pairs = view_pairs(torch.tensor([0, 0, 0, 1, 1]))
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (4, 3)]


def test_batches_mix_images_and_groups_and_redraw_views_every_epoch():
    groups = [np.arange(8 * g, 8 * g + 8) for g in range(10)]  # ten 8-view groups
    sampler = MixedBatchSampler(n_images=30, groups=groups, images=8, groups_per_batch=2, max_views=4, seed=1)
    assert len(sampler) == 5
    seen_views = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == 5
        for batch in batches:
            images, views = [i for i in batch if i < 30], [i - 30 for i in batch if i >= 30]
            assert len(images) == 8 and len(set(images)) == 8
            assert len(views) == 8 and len({v // 8 for v in views}) == 2  # 2 groups x 4 views
        seen_views.append(sorted(i - 30 for b in batches for i in b if i >= 30))
        assert len({i // 8 for i in seen_views[-1]}) == 10  # every group once per epoch
    assert seen_views[0] != seen_views[1]  # a new subset of views in the next epoch
    sampler.set_epoch(0)
    assert list(sampler) == list(MixedBatchSampler(30, groups, 8, 2, 4, seed=1))  # reproducible


def test_small_groups_use_all_their_views_and_bad_sizes_are_rejected():
    sampler = MixedBatchSampler(0, [np.array([0, 1]), np.array([2, 3, 4])], images=0, groups_per_batch=2)
    assert sorted(next(iter(sampler))) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="fewer than one batch"):
        MixedBatchSampler(5, [], images=8, groups_per_batch=0)
    with pytest.raises(ValueError, match="groups"):
        MixedBatchSampler(50, [np.arange(3)], images=8, groups_per_batch=2)


def test_dataloader_yields_collated_mixed_batches():
    two_d = SyntheticDataset(SynthConfig("2d", 12, size=64))
    multi = SyntheticDataset(SynthConfig("mv", 24, size=64))
    dataset = MixedDataset(two_d, multi, PoseTransform(out_size=64))
    sampler = MixedBatchSampler(12, group_indices(multi.group), images=4, groups_per_batch=2, max_views=3)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_mixed, num_workers=2)
    batch = next(iter(loader))
    assert batch["2d"]["image"].shape == (4, 3, 64, 64) and batch["2d"]["heatmaps"].shape == (4, 17, 16, 16)
    mv = batch["mv"]
    counts = torch.bincount(mv["view_group"])
    assert len(counts) == 2 and (counts >= 2).all() and (counts <= 3).all()
    assert len(mv["pairs"]) == int((counts * (counts - 1)).sum())
    assert (mv["group"][mv["pairs"][:, 0]] == mv["group"][mv["pairs"][:, 1]]).all()
    assert mv["R"].shape == (len(mv["group"]), 3, 3)
