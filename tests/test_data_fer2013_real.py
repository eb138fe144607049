"""Integration: the real Kaggle FER2013 zip from ../shared (skipped when absent).

The zip is decoded once for the module (a few seconds, up to ~30 s on a busy machine) into a module-wide cache
folder; every other test reads that cache.
"""
from __future__ import annotations

import pytest

from ferkit.data.loader import load_dataset_with_report
from ferkit.data.quality import quality_report

pytestmark = pytest.mark.integration

TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830,
                "surprise": 3171}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("fer2013-cache")


@pytest.fixture(scope="module")
def fer2013(fer2013_zip, cache):
    ds, report = load_dataset_with_report(fer2013_zip, cache_dir=cache)
    return ds, report


def test_kaggle_release_counts(fer2013):
    ds, report = fer2013
    assert report.junk_skipped == 0 and report.issues == []
    assert ds.available_splits() == ["train", "publictest"]
    assert ds.images.shape == (28_709 + 3_589, 48, 48)
    assert len(ds.split("train")) == 28_709 and len(ds.split("val")) == 3_589 and len(ds.split("test")) == 3_589
    assert ds.split("train").class_counts() == TRAIN_COUNTS


def test_second_read_comes_from_the_cache_and_is_identical(fer2013, fer2013_zip, cache):
    # How much faster the cached read is belongs to benchmarks/bench_data.py, not to a timed test.
    first, _ = fer2013
    ds, report = load_dataset_with_report(fer2013_zip, cache_dir=cache)
    assert report.from_cache
    assert (ds.labels == first.labels).all() and (ds.sources == first.sources).all()


def test_quality_report_finds_known_problems(fer2013):
    report = quality_report(fer2013[0])
    # Figures measured on this release (see BENCHMARKS.md); exact duplicates by decoded pixels.
    assert len(report.duplicate_groups) == 1061 and report.duplicate_images == 1262
    assert len(report.leak_groups) == 270 and report.leaked_train_images == 351
    assert len(report.blanks) == 13
