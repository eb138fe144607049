"""The decoded-array cache: one uncompressed .npz per source content, written atomically.

Uncompressed because FER2013's 80 MB of pixels load in a fraction of a second that way, while zlib would
cost seconds on every read to save disk space nobody misses. Strings are fixed-width unicode arrays and the
read report is JSON, so ``np.load(allow_pickle=False)`` reads it all: nothing pickled.

Faces beyond ``MMAP_BYTES`` (AffectNet at 112x112 RGB is 11 GB) never sit in memory: the decoder streams them
into a ``.faces.npy`` beside the .npz (a :class:`Spill`), which later reads map read-only, so the operating
system pages in what is used. Such a build records which chunks are done and resumes after an interruption.
"""
from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from ferkit.batching import iter_batches
from ferkit.paths import atomic_write

log = logging.getLogger(__name__)

# Bump when a reader's output changes for the same input, so existing caches are re-read.
READER_VERSION = 2

# Every cache holds these; readers may add more (groups, extra_<name> columns).
_ARRAYS = ("images", "labels", "splits", "sources")
# Decoded faces larger than this go to a memory-mapped file instead of memory.
MMAP_BYTES = 1 << 30


def cache_path(cache_dir: Path, kind: str, fingerprint: str) -> Path:
    return cache_dir / f"dataset-{kind}-v{READER_VERSION}-{fingerprint[:20]}.npz"


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict, spill: "Spill | None" = None) -> None:
    """Write to a temporary file beside ``path`` and rename: a reader never sees a half-written cache. Faces
    that a ``spill`` holds in a memory-mapped file stay there (renamed into place), not in the .npz."""
    arrays = dict(arrays)
    if spill is not None and spill.holds(arrays["images"]):
        images = arrays.pop("images")
        meta = {**meta, "images_file": spill.finish(images), "n_images": len(images)}
    with atomic_write(path) as fh:
        np.savez(fh, **arrays, meta=np.array(json.dumps(meta)))


def load_faces(path: Path, n: int) -> np.ndarray:
    """The first ``n`` faces of a ``.faces.npy``, mapped read-only (pages load as they are touched)."""
    return np.load(path, mmap_mode="r")[:n]


def load(path: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """The cached arrays and metadata, or None when absent or unreadable (then the source is read again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "meta"}
            meta = json.loads(str(npz["meta"]))
        if meta.get("images_file"):
            arrays["images"] = load_faces(path.parent / meta["images_file"], meta["n_images"])
        missing = [k for k in _ARRAYS if k not in arrays]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable cache file %s (%s); reading the source again", path, exc)
        return None
    return arrays, meta


class Spill:
    """Where a large build streams its decoded faces: ``<cache>.faces.npy``, memory-mapped, with a progress
    file beside it while the build runs. Small builds get a plain in-memory array."""

    def __init__(self, cache_file: Path, threshold: int | None = None):
        self.final = cache_file.with_suffix(".faces.npy")
        self.partial = cache_file.with_suffix(".faces.partial.npy")
        self.progress = cache_file.with_suffix(".faces.progress.json")
        self.threshold = MMAP_BYTES if threshold is None else threshold

    def resume(self, n: int, channels: tuple[int, ...]) -> dict | None:
        """The progress of an interrupted build of the same faces, if one is on disk."""
        try:
            state = json.loads(self.progress.read_text())
        except (OSError, ValueError):
            return None
        if state.get("n") != n or state.get("channels") != list(channels) or not self.partial.is_file():
            return None
        log.info("resuming the build of %s: %d chunk(s) already decoded", self.final.name, len(state["done"]))
        return state

    def allocate(self, shape: tuple[int, ...], state: dict | None) -> tuple[np.ndarray, dict | None]:
        if state is not None:
            try:
                images = np.lib.format.open_memmap(self.partial, mode="r+")
                if images.shape == shape:
                    return images, state
            except (OSError, ValueError):
                pass
        if int(np.prod(shape)) < self.threshold:
            return np.zeros(shape, np.uint8), None
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        return np.lib.format.open_memmap(self.partial, mode="w+", dtype=np.uint8, shape=shape), None

    def holds(self, images: np.ndarray) -> bool:
        return isinstance(images, np.memmap) and Path(images.filename or "").resolve() in (
            self.partial.resolve(), self.partial.with_suffix(".gray.npy").resolve())

    def checkpoint(self, images: np.ndarray, state: dict) -> None:
        """Flush the faces, then record them as done: a crash between the two only loses the record."""
        if not isinstance(images, np.memmap):
            return
        images.flush()
        meta = {"n": images.shape[0], "channels": list(images.shape[3:])}
        with atomic_write(self.progress, "w") as fh:
            json.dump({**state, **meta}, fh)

    def gray(self, images: np.ndarray) -> np.ndarray:
        """The first channel of every face (an all-gray dataset), copied block by block."""
        if not isinstance(images, np.memmap):
            return np.ascontiguousarray(images[..., 0])
        path = self.partial.with_suffix(".gray.npy")
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=images.shape[:3])
        for sl in iter_batches(len(images), 4096):
            out[sl] = images[sl, ..., 0]
        out.flush()
        return out

    def finish(self, images: np.memmap) -> str:
        """Move the finished faces into place; the name the .npz records."""
        images.flush()
        os.replace(images.filename, self.final)
        for leftover in (self.partial, self.progress):
            leftover.unlink(missing_ok=True)
        return self.final.name
