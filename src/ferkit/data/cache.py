"""The decoded-array cache: one uncompressed .npz per source content, written atomically.

Uncompressed because FER2013's 80 MB of pixels load in a fraction of a second that way, while zlib would
cost seconds on every read to save disk space nobody misses. Strings are fixed-width unicode arrays and the
read report is JSON, so ``np.load(allow_pickle=False)`` reads it all: nothing pickled.
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from ferkit.paths import atomic_write

log = logging.getLogger(__name__)

# Bump when a reader's output changes for the same input, so existing caches are re-read.
READER_VERSION = 1

_ARRAYS = ("images", "labels", "splits", "sources")


def cache_path(cache_dir: Path, kind: str, fingerprint: str) -> Path:
    return cache_dir / f"fer2013-{kind}-v{READER_VERSION}-{fingerprint[:20]}.npz"


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write to a temporary file beside ``path`` and rename: a reader never sees a half-written cache."""
    with atomic_write(path) as fh:
        np.savez(fh, **{k: arrays[k] for k in _ARRAYS}, meta=np.array(json.dumps(meta)))


def load(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The cached arrays and metadata, or None when absent or unreadable (then the source is read again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _ARRAYS}
            meta = json.loads(str(npz["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable cache file %s (%s); reading the source again", path, exc)
        return None
    return arrays, meta
