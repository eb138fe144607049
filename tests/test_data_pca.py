"""PCA compression of cached faces: the share of variance kept per channel, the rebuilt faces, the store."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.data import load_dataset
from ferkit.data.pca import PCACodec
from ferkit.errors import DataError

from synthetic import standard_items, write_zip


def _low_rank_faces(n: int, side: int, rank: int, channels: int = 0, seed: int = 0) -> np.ndarray:
    """Faces that are mixtures of ``rank`` patterns plus a little noise: PCA should need about ``rank``
    components per channel for 95% of the variance."""
    rng = np.random.default_rng(seed)
    shape = (side, side) + ((channels,) if channels else ())
    patterns = rng.normal(0, 40, (rank, *shape))
    weights = rng.normal(0, 1, (n, rank))
    faces = 128 + np.tensordot(weights, patterns, 1) + rng.normal(0, 2, (n, *shape))
    return np.clip(faces, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("n, side", [(400, 12), (60, 16)])  # more faces than pixels, and fewer
def test_components_keep_the_share_of_variance_asked_for(n, side):
    faces = _low_rank_faces(n, side, rank=5)
    codec = PCACodec.fit(faces, 0.95)
    assert 3 <= codec.kept[0] <= 6  # about the rank, far fewer than the side * side pixels
    rebuilt = codec.decode(codec.encode(faces))
    assert rebuilt.shape == faces.shape and rebuilt.dtype == np.uint8
    x = faces.astype(np.float64)
    residual = ((x - rebuilt) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert residual < 0.05 + 0.01  # what was not kept, plus float16 and uint8 rounding


def test_each_colour_channel_gets_its_own_components():
    gray = _low_rank_faces(300, 10, rank=2, seed=1)
    busy = _low_rank_faces(300, 10, rank=8, seed=2)
    faces = np.stack([gray, busy, gray], -1)
    codec = PCACodec.fit(faces, 0.95)
    assert codec.kept[1] > codec.kept[0] == codec.kept[2]
    assert codec.decode(codec.encode(faces)).shape == faces.shape


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.2])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(DataError, match="share of variance to keep is in \\(0, 1\\)"):
        PCACodec.fit(_low_rank_faces(20, 8, 2), share)


def test_load_dataset_rebuilds_faces_and_reads_the_stored_codes_next_time(tmp_path, monkeypatch):
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    source = write_zip(tmp_path / "fer.zip", standard_items(per_class=6))
    raw = load_dataset(source)
    compressed = load_dataset(source, pca=0.9)
    assert compressed.images.shape == raw.images.shape and not np.array_equal(compressed.images, raw.images)
    assert list(compressed.labels) == list(raw.labels)
    stores = list((tmp_path / "cache").rglob("*-pca-*.npz"))
    assert len(stores) == 1

    def no_refit(*args, **kwargs):
        raise AssertionError("refitted although the codes were stored")

    monkeypatch.setattr(PCACodec, "fit", no_refit)
    again = load_dataset(source, pca=0.9)
    assert np.array_equal(again.images, compressed.images)
