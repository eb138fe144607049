"""Datasets: readers per format (FER2013, FER+, RAF-DB, AffectNet, CK+, JAFFE, ExpW, class-folder trees, CSVs),
the decoded-array cache, validation splits and folds, and the quality report."""
from ferkit.data.dataset import SPLITS, FaceDataset

__all__ = ["FaceDataset", "SPLITS", "load_dataset", "sample_faces"]


def load_dataset(path, **kwargs) -> FaceDataset:
    """Read any supported dataset (``ferkit data formats`` lists them), through the cache. See ferkit.data.loader."""
    from ferkit.data.loader import load_dataset as _load

    return _load(path, **kwargs)


def sample_faces(path, n: int, *, split: str = "train", seed: int = 0):
    """A seeded sample of ``n`` faces (uint8 array) from a dataset's ``split``, or from all of it when it has no
    such split: e.g. training faces to calibrate INT8 quantization, never the faces a model is evaluated on."""
    import numpy as np

    from ferkit.errors import DataError

    if n < 1:
        raise DataError(f"a sample needs at least one face, got {n}")
    dataset = load_dataset(path)
    if split in dataset.available_splits():
        dataset = dataset.split(split)
    pick = np.random.default_rng(seed).choice(len(dataset), min(n, len(dataset)), replace=False)
    return dataset.images[np.sort(pick)]
