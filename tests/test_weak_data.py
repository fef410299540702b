"""data.rotations=rig: the weak stage calibrates each studio rig from its views' 2D joints
(crops and all) and triangulates with those rotations; per-group rigs keep their own."""

import numpy as np
import pytest
import torch
from test_trainer import _config  # the tiny training settings

from ws3d.data.sampling import collate_mixed
from ws3d.data.synthetic import ShardDataset, SynthConfig, write_shards
from ws3d.geometry import rotation_angle_deg
from ws3d.trainer import build, train
from ws3d.weak_data import rig_rotations


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """Three studios of 4-8 fixed cameras, a dozen or more groups each, detector-placed crops."""
    root = tmp_path_factory.mktemp("studio")
    write_shards(SynthConfig("mv", 300, size=64, rig="studio"), root, workers=1, progress=False)
    for split, n in (("2d", 24), ("test", 8)):
        write_shards(SynthConfig(split, n, size=64), root, workers=1, progress=False)
    return root


def test_rig_rotations_recover_every_studios_cameras_from_the_crops_2d_joints(studio):
    a = ShardDataset(studio, "mv").arrays
    R, found = rig_rotations(a, a["uv"].astype(np.float64), a["vis"].astype(np.float64))
    assert found.all()
    for rig in np.unique(a["rig"]):
        rows = np.flatnonzero(a["rig"] == rig)
        first = rows[a["camera"][rows] == a["camera"][rows].min()][0]  # the rig's camera 0 is its world
        truth = torch.from_numpy(a["R"][rows].astype(np.float64) @ a["R"][first].astype(np.float64).T)
        error = rotation_angle_deg(torch.from_numpy(R[rows]) @ truth.mT)
        assert error.max() < 0.5, (rig, error.max())  # float32 crops of 64 px, a few joints occluded


def test_groups_that_are_their_own_rig_keep_their_own_rotations(studio, tmp_path):
    write_shards(SynthConfig("mv", 40, size=64, rig="h36m"), tmp_path, workers=1, progress=False)
    a = ShardDataset(tmp_path, "mv").arrays
    assert (a["rig"] == a["group"]).all()
    _, found = rig_rotations(a, a["uv"].astype(np.float64), a["vis"].astype(np.float64))
    assert not found.any()


def test_the_weak_stage_gives_each_view_its_rigs_rotation_and_trains(studio, tmp_path):
    pretrain = _config(studio, tmp_path / "2d", "pretrain2d", None, "train.steps=2")
    init = tmp_path / "2d" / "last.pt"
    train(pretrain)
    cfg = _config(studio, tmp_path / "weak", "weak", init, "data.mv_labels=given", "data.rotations=rig",
                  "train.steps=2")  # fmt: skip
    _, dataset, sampler, _ = build(cfg)
    a = dataset.multi_view.views.arrays
    expected, found = rig_rotations(a, a["uv"].astype(np.float64), a["vis"].astype(np.float64))
    batch = collate_mixed([dataset[i] for i in next(iter(sampler))])["mv"]
    assert "R" in batch and batch["extrinsics_known"].all() and "t" not in batch and "joints_cam" not in batch
    first = dataset.multi_view[0]
    np.testing.assert_allclose(first["R"], expected[0], atol=1e-6)
    assert not np.allclose(first["R"], a["R"][0], atol=1e-3)  # the estimate in its rig's frame, not the truth's
    assert train(cfg)["step"] == 2
