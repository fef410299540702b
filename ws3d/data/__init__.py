"""Data for ws3d: the embedded synthetic multi-view set, real-data loaders, crops and
batches, and tracklets of static people. See the README's "Data" section for formats."""

from ws3d.data.records import RecordDataset, open_records, save_records
from ws3d.data.sampling import MixedBatchSampler, MixedDataset, collate_mixed, group_indices
from ws3d.data.synthetic import ShardDataset, SynthConfig, SyntheticDataset, write_shards
from ws3d.data.transforms import PoseTransform

__all__ = [
    "MixedBatchSampler",
    "MixedDataset",
    "PoseTransform",
    "RecordDataset",
    "ShardDataset",
    "SynthConfig",
    "SyntheticDataset",
    "collate_mixed",
    "group_indices",
    "open_records",
    "save_records",
    "write_shards",
]
