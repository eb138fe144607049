"""Datasets: readers per format, the decoded-array cache, splits and the quality report."""
from ferkit.data.dataset import SPLITS, FaceDataset

__all__ = ["FaceDataset", "SPLITS", "load_dataset"]


def load_dataset(path, **kwargs) -> FaceDataset:
    """Read any supported dataset (FER2013 folder, zip or csv), through the cache. See ferkit.data.loader."""
    from ferkit.data.loader import load_dataset as _load

    return _load(path, **kwargs)
