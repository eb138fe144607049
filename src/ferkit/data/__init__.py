"""Datasets: readers per format (FER2013, FER+, RAF-DB, AffectNet, CK+, JAFFE, ExpW, class-folder trees, CSVs),
the decoded-array cache, validation splits and folds, and the quality report."""
from ferkit.data.dataset import SPLITS, FaceDataset

__all__ = ["FaceDataset", "SPLITS", "load_dataset"]


def load_dataset(path, **kwargs) -> FaceDataset:
    """Read any supported dataset (``ferkit data formats`` lists them), through the cache. See ferkit.data.loader."""
    from ferkit.data.loader import load_dataset as _load

    return _load(path, **kwargs)
