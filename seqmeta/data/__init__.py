"""Offline data: collection, the trajectory dataset, importers and samplers."""

from seqmeta.data.dataset import TrajectoryDataset, load_trajectories, write_dataset
from seqmeta.data.episodes import Episodes

__all__ = ["Episodes", "TrajectoryDataset", "load_trajectories", "write_dataset"]
