"""Large decoded datasets: faces streamed into a memory-mapped file beside the cache, read back mapped, and
a build that was interrupted resumes where it stopped."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from synthetic import write_ckplus_crops, write_rafdb

import ferkit.data.cache as cache
import ferkit.data.readers as readers
from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report


@pytest.fixture
def spill_everything(monkeypatch):
    monkeypatch.setattr(cache, "MMAP_BYTES", 0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one decode thread: the interruption below lands on a known chunk


def test_large_faces_live_in_a_mapped_file(tmp_path, spill_everything):
    root = write_rafdb(tmp_path / "basic", per_class=2, test_per_class=2)
    in_memory = load_dataset(root, cache=False)
    ds, report = load_dataset_with_report(root)
    mapped_file = report.cache_file.replace(".npz", ".faces.npy")
    assert isinstance(ds.images, np.memmap) and str(ds.images.filename) == mapped_file
    np.testing.assert_array_equal(ds.images, in_memory.images)
    again, report = load_dataset_with_report(root)
    assert report.from_cache and isinstance(again.images, np.memmap) and not again.images.flags.writeable
    np.testing.assert_array_equal(again.images, in_memory.images)
    test = again.split("test")  # the test rows are contiguous: a view of the file, not a copy
    assert isinstance(test.images, np.memmap) and np.shares_memory(test.images, again.images)
    np.testing.assert_array_equal(test.images, in_memory.split("test").images)


def test_gray_faces_are_stored_gray(tmp_path, spill_everything):
    root = write_ckplus_crops(tmp_path / "crops")
    ds = load_dataset(root)
    assert isinstance(ds.images, np.memmap) and ds.images.ndim == 3
    np.testing.assert_array_equal(ds.images, load_dataset(root, cache=False).images)


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, spill_everything, monkeypatch):
    root = write_rafdb(tmp_path / "basic", per_class=2, test_per_class=2)  # 28 images: 7 chunks of 4
    expected = load_dataset(root, cache=False)
    monkeypatch.setattr(readers, "CHUNK", 4)
    monkeypatch.setattr(readers, "CHECKPOINT_SECONDS", 0.0)
    real = readers.FolderSource.read_many
    read: list[str] = []

    def interrupted(self, names):
        if len(read) >= 12:  # three chunks in
            raise KeyboardInterrupt
        read.extend(names)
        return real(self, names)

    monkeypatch.setattr(readers.FolderSource, "read_many", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(root)
    progress = list(Path(os.environ["FERKIT_CACHE_DIR"]).rglob("*.faces.progress.json"))
    assert len(progress) == 1

    read.clear()
    monkeypatch.setattr(readers.FolderSource, "read_many", lambda self, names: read.extend(names) or real(self, names))
    ds, report = load_dataset_with_report(root)
    assert len(read) == 28 - 12  # only the chunks not yet done
    np.testing.assert_array_equal(ds.images, expected.images)
    assert ds.sources.tolist() == expected.sources.tolist() and not report.issues
    assert not progress[0].exists()
