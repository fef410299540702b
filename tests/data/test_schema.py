"""ws3d.data.schema is the one description of a sample: what the writers store, what a
batch may carry, and where unknown intrinsics are decided."""

import numpy as np
import pytest
import torch

from ws3d.data.records import open_records, save_records
from ws3d.data.sampling import collate_mixed
from ws3d.data.schema import FIELDS, RECORDS, SHARDS, stored_fields
from ws3d.data.synthetic import ShardDataset, SynthConfig, write_shards
from ws3d.errors import InputError


def _assert_matches_table(arrays, fields, image_kind):
    """The stored arrays are the table's fields, with its shapes and dtypes (image: uint8
    pixels in shards, path strings in record sets)."""
    assert set(arrays) == set(fields)
    for name, value in arrays.items():
        shape = FIELDS[name].shape if name != "image" or image_kind == "u" else ()
        assert len(value.shape) == len(shape) + 1, name
        assert all(t is None or s == t for s, t in zip(value.shape[1:], shape, strict=True)), (name, value.shape)
        assert value.dtype.kind == image_kind if name == "image" else value.dtype == FIELDS[name].dtype, name


@pytest.mark.parametrize("split", ["2d", "mv"])
def test_shards_store_exactly_the_fields_of_the_table(split, tmp_path):
    write_shards(SynthConfig(split, 4, size=32), tmp_path, workers=1, progress=False)
    with np.load(tmp_path / f"{split}_0000.npz") as shard:
        _assert_matches_table({k: shard[k] for k in shard.files}, stored_fields(SHARDS, split == "mv"), "u")


def _mpii_like(root=None, n=3):
    """A record set of a source without intrinsics (K NaN), written by hand; with ``root``,
    its (empty) image files too."""
    rng = np.random.default_rng(0)
    if root is not None:
        (root / "images").mkdir(exist_ok=True)
        for i in range(n):
            (root / "images" / f"{i}.jpg").write_bytes(b"")
    return {
        "image": np.array([f"images/{i}.jpg" for i in range(n)]),
        "uv": rng.uniform(0, 100, (n, 17, 2)).astype(np.float32),
        "vis": np.ones((n, 17), np.uint8),
        "centre": np.array([[50.0, 60.0], [10.0, 20.0], [0.0, 0.0]], np.float32)[:n],
        "side": np.array([120.0, 80.0, 40.0], np.float32)[:n],
        "K": np.full((n, 3, 3), np.nan, np.float32),
        "joints_cam": np.full((n, 17, 3), np.nan, np.float32),
    }


def test_record_sets_store_the_fields_of_the_table_and_decide_unknown_cameras(tmp_path):
    save_records(tmp_path / "r.npz", _mpii_like(tmp_path), tmp_path)
    with np.load(tmp_path / "r.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "root"}
    _assert_matches_table(arrays, stored_fields(RECORDS, False), "U")
    assert not arrays["has_K"].any()
    np.testing.assert_array_equal(arrays["K"][0], [[120, 0, 50], [0, 120, 60], [0, 0, 1]])
    np.testing.assert_array_equal(arrays["K"][1], [[80, 0, 10], [0, 80, 20], [0, 0, 1]])


def test_a_record_file_from_before_has_K_opens_with_nominal_cameras(tmp_path):
    records = _mpii_like(tmp_path)
    records["K"][2] = np.eye(3)  # one row with a real camera
    np.savez(tmp_path / "old.npz", root=np.array(str(tmp_path)), **records)  # no has_K field
    dataset = open_records(tmp_path / "old.npz")
    assert dataset.arrays["has_K"].tolist() == [False, False, True]
    np.testing.assert_array_equal(dataset.arrays["K"][2], np.eye(3))
    assert np.isfinite(dataset.arrays["K"]).all()


def test_a_misshapen_stored_field_is_named(tmp_path):
    records = _mpii_like()
    records["centre"] = records["centre"][:, :1]
    with pytest.raises(InputError, match=r"field 'centre' has shape \(3, 1\), expected \(N, 2\)"):
        save_records(tmp_path / "r.npz", records, tmp_path)
    records = _mpii_like()
    records["side"] = records["side"][:2]
    with pytest.raises(InputError, match="field 'side' has 2 rows but 'image' has 3"):
        save_records(tmp_path / "r.npz", records, tmp_path)


def test_a_batch_may_carry_only_fields_of_the_table():
    item = {"image": torch.zeros(3, 8, 8), "vis": torch.ones(17), "source": 0}
    assert collate_mixed([item, item])["2d"]["image"].shape == (2, 3, 8, 8)
    with pytest.raises(InputError, match="not in ws3d.data.schema.FIELDS: extra"):
        collate_mixed([item, {**item, "extra": 1}])


def test_missing_images_are_counted_when_a_record_set_is_made_or_opened(tmp_path):
    records = _mpii_like(tmp_path)
    save_records(tmp_path / "r.npz", records, tmp_path)
    (tmp_path / "images" / "1.jpg").unlink()
    (tmp_path / "images" / "2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"r.npz: 2 of 3 images are missing under .* \(first: .*images/1.jpg\)"):
        open_records(tmp_path / "r.npz")
    with pytest.raises(FileNotFoundError, match=r"s.npz: 2 of 3 images are missing"):
        save_records(tmp_path / "s.npz", records, tmp_path)


def test_multi_view_sets_from_before_rig_ids_load_as_one_rig_per_group(tmp_path):
    """Shards and record sets written before ``rig`` and ``camera`` existed: each group is a
    rig of its own and each view a camera of its own (what those files always meant)."""
    write_shards(SynthConfig("mv", 9, size=32, rig="h36m"), tmp_path, workers=1, progress=False)
    with np.load(tmp_path / "mv_0000.npz") as shard:
        arrays = {k: shard[k] for k in shard.files}
    np.savez(tmp_path / "mv_0000.npz", **{k: v for k, v in arrays.items() if k not in ("rig", "camera")})
    old = ShardDataset(tmp_path, "mv").arrays
    assert old["rig"].tolist() == old["group"].tolist() == [0] * 4 + [1] * 3 + [2] * 2
    assert old["camera"].tolist() == old["view"].tolist()
    records = {k: v for k, v in arrays.items() if k in stored_fields(RECORDS, True) and k not in ("rig", "camera")}
    records["group"] = np.array([7, 7, 3, 7, 3, 3, 3, 9, 9])
    records["image"] = np.array([f"images/{i}.jpg" for i in range(9)])
    records["centre"], records["side"] = np.zeros((9, 2), np.float32), np.full(9, 32.0, np.float32)
    (tmp_path / "images").mkdir()
    for i in range(9):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(b"")
    np.savez(tmp_path / "old.npz", root=np.array(str(tmp_path)), **records)
    dataset = open_records(tmp_path / "old.npz", multi_view=True)
    assert dataset.arrays["rig"].tolist() == [7, 7, 3, 7, 3, 3, 3, 9, 9]
    assert dataset.arrays["camera"].tolist() == [0, 1, 0, 2, 1, 2, 3, 0, 1]  # the place in its group
