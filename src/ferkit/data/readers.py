"""Byte-level access to image trees: a folder on disk or a .zip read in place, plus the batched decoder.

A source lists its files as POSIX paths relative to its root, hands out their bytes and fingerprints its
content cheaply (names, sizes, CRCs or mtimes, never the pixels) so the cache can tell when it changed.
Which files mean what (splits, classes, junk) is the format reader's business (see ferkit.data.fer2013).
"""
from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
import time
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferkit.errors import DataError


@dataclass
class Listing:
    """Files and folders of a source, as POSIX paths relative to its root."""

    files: list[str]
    dirs: set[str] = field(default_factory=set)  # every folder, explicit or implied by a file path


def _parent_dirs(files: list[str], explicit: set[str] = frozenset()) -> set[str]:
    dirs = set(explicit)
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


class FolderSource:
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        self._stats: dict[str, os.stat_result] = {}

    def list(self) -> Listing:
        files: list[str] = []
        dirs: set[str] = set()
        # os.scandir is several times faster than Path.rglob on 30k files, and gives the stat we fingerprint.
        stack = [("", self.root)]
        while stack:
            rel, path = stack.pop()
            try:
                it = os.scandir(path)
            except OSError as exc:
                raise DataError(f"{self.root}: cannot list {rel or 'the folder'} ({exc.strerror or exc})") from None
            with it:
                for entry in it:
                    name = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir():
                        dirs.add(name)
                        stack.append((name, entry.path))
                    elif entry.is_file():
                        files.append(name)
                        self._stats[name] = entry.stat()
        files.sort()
        return Listing(files, dirs)

    def fingerprint(self) -> str:
        if not self._stats:
            self.list()
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(self._stats):
            st = self._stats[name]
            h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def read_many(self, names: list[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for name in names:
            try:
                out.append((self.root / name).read_bytes())
            except OSError:
                out.append(None)  # reported as unreadable by the caller
        return out

    def open_text(self, name: str):
        return open(self.root / name, newline="", encoding="utf-8")


def _unsafe_entry(name: str) -> bool:
    """True for a zip entry that would land outside the archive's folder if extracted."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return True
    depth = 0
    for part in norm.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def zip_fingerprint(path: Path) -> str:
    """A hash of the zip's raw central directory: every entry's name, CRC-32 and sizes (plus timestamps),
    read without building 32k ZipInfo objects, so a cache hit on FER2013 costs milliseconds, not ~0.5 s."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        tail_len = min(size, 65536 + 22)  # the end record sits within the last 64 KiB comment + 22 bytes
        fh.seek(size - tail_len)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            raise DataError(f"{path}: expected a readable .zip archive; found no zip end-of-directory record")
        cd_size, cd_offset = struct.unpack_from("<II", tail, at + 12)
        if 0xFFFFFFFF in (cd_size, cd_offset):  # ZIP64: the real values are in the zip64 end record
            locator = tail.rfind(b"PK\x06\x07", 0, at)
            fh.seek(struct.unpack_from("<Q", tail, locator + 8)[0])
            cd_size, cd_offset = struct.unpack_from("<QQ", fh.read(56), 40)
        fh.seek(cd_offset)
        return hashlib.blake2b(fh.read(cd_size), digest_size=16).hexdigest()


class ZipSource:
    """A .zip read in place. Entries are sliced out of one read of the archive: per-entry ZipFile.read
    re-parses each local header through Python and is ~10x slower on FER2013's 32k tiny files."""

    kind = "zip"

    def __init__(self, path: Path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: expected a readable .zip archive; found: {exc}") from None
        self._map: mmap.mmap | None = None
        self._infos = {i.filename: i for i in self._zip.infolist()}
        for name in self._infos:
            if _unsafe_entry(name):
                raise DataError(
                    f"{path}: zip entry {name!r} points outside the archive (absolute path or '..'); "
                    f"refusing to read it. Rebuild the zip with relative paths."
                )

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._zip.close()

    def _buffer(self) -> mmap.mmap:
        # Mapped, not read: a reader asks for a few hundred entries at a time, and a 30 GB archive must not be
        # copied into memory (nor re-read) for each batch. Slicing a map is thread-safe.
        if self._map is None:
            with open(self.path, "rb") as fh:
                self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def list(self) -> Listing:
        files = sorted(n for n, i in self._infos.items() if not i.is_dir())
        explicit = {n.rstrip("/") for n, i in self._infos.items() if i.is_dir()}
        return Listing(files, _parent_dirs(files, explicit))

    def read_many(self, names: list[str]) -> list[bytes | None]:
        buf = self._buffer()
        out: list[bytes | None] = []
        for name in names:
            info = self._infos[name]
            try:
                out.append(self._slice(buf, info))
            except (zlib.error, struct.error, zipfile.BadZipFile, NotImplementedError, ValueError):
                out.append(None)
        return out

    def _slice(self, buf, info: zipfile.ZipInfo) -> bytes:
        off = info.header_offset
        if buf[off:off + 4] != b"PK\x03\x04":
            raise zipfile.BadZipFile(info.filename)
        name_len, extra_len = struct.unpack_from("<HH", buf, off + 26)
        start = off + 30 + name_len + extra_len
        raw = buf[start:start + info.compress_size]
        if info.compress_type == zipfile.ZIP_STORED:
            data = raw
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            data = zlib.decompress(raw, -15)
        else:  # bzip2/lzma/encrypted: rare, let zipfile handle them
            return self._zip.read(info)
        if zlib.crc32(data) != info.CRC:
            raise ValueError(f"CRC mismatch in {info.filename}")
        return data

    def open_text(self, name: str):
        import io

        return io.TextIOWrapper(self._zip.open(name), encoding="utf-8", newline="")


def _decode_gray(blob: bytes | None) -> np.ndarray | str:
    """A uint8 gray image, or the reason it cannot be one."""
    if blob is None:
        return "unreadable"
    if not blob:
        return "empty file"
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return "not a decodable image"
    # Older OpenCV builds let libjpeg fill a truncated JPEG with gray and return it; the missing end-of-image
    # marker gives it away.
    if blob[:2] == b"\xff\xd8" and b"\xff\xd9" not in blob[-16:]:
        return "truncated JPEG (no end-of-image marker)"
    return img


def _decode_chunk(blobs: list[bytes | None]) -> list[np.ndarray | str]:
    return [_decode_gray(b) for b in blobs]


def decode_gray_many(blobs: list[bytes | None], workers: int | None = None) -> list[np.ndarray | str]:
    """Decode in parallel chunks (cv2.imdecode releases the GIL); each item is an image or a failure reason.

    ``workers`` defaults to $OMP_NUM_THREADS when set, else the usable cores (at most 8): on a machine shared
    with a training run, extra decode threads only fight it for cores.
    """
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(8, int(os.environ.get("OMP_NUM_THREADS") or cores))
    if workers <= 1 or len(blobs) < 2048:
        return _decode_chunk(blobs)
    size = -(-len(blobs) // (workers * 4))
    chunks = [blobs[i:i + size] for i in range(0, len(blobs), size)]
    with ThreadPoolExecutor(workers) as pool:
        return [img for part in pool.map(_decode_chunk, chunks) for img in part]


# ---------------------------------------------------------------------------------------------------------------
# Faces of any size and colour, cropped from face boxes, streamed into one array


COLORS = ("auto", "gray", "rgb")
# A colour image whose channels differ by at most this much everywhere is gray (JPEG chroma rounding).
_GRAY_TOLERANCE = 3


@dataclass
class Decoded:
    """``images`` has one row per requested face; the rows whose ``reasons`` entry is not None are blank."""

    images: np.ndarray
    reasons: list[str | None]
    size: int
    resized: int = 0  # faces that were not already size x size (a mixed-size folder says so)
    clipped: int = 0  # face boxes that reached past their image's border (the border is repeated)


CHUNK = 128  # files per decode task: small enough to stream, large enough to amortise the thread hand-off
CHECKPOINT_SECONDS = 5.0  # how often a resumable (memory-mapped) build records its progress


def decode_faces(source, names: list[str], boxes: list | None = None, *, size: int | None, color: str = "auto",
                 fit: str = "crop", workers: int | None = None, progress: bool = False, desc: str = "decode",
                 spill=None) -> Decoded:
    """Decode ``names`` from ``source`` into square uint8 faces of side ``size``, streaming: at most a few chunks
    of file bytes are in memory at once, whatever the dataset's size.

    A face with a box (x, y, w, h) is the square of side max(w, h) around the box's centre; a face without one
    is its image's centre square (``fit="crop"``) or the whole image padded to a square with black
    (``fit="pad"``: photos a face detector will search). ``size=None`` takes the side of the most common image
    shape among the first files (the native size of a folder of crops). ``color``: ``gray``, ``rgb`` (H x W x 3,
    RGB order) or ``auto`` (RGB, stored gray when every face turns out gray). Several boxes may name one file
    (ExpW): it is decoded once.

    ``spill`` (``ferkit.data.cache.Spill``) puts large results in a memory-mapped file instead of memory and
    records which chunks are done, so an interrupted build resumes where it stopped.
    """
    if color not in COLORS:
        raise DataError(f"unknown colour {color!r}; expected one of {', '.join(COLORS)}")
    boxes = boxes if boxes is not None else [None] * len(names)
    by_file: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_file.setdefault(name, []).append(i)
    files = list(by_file)
    chunks = [files[i:i + CHUNK] for i in range(0, len(files), CHUNK)]
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    channels = () if color == "gray" else (3,)

    def decode_file(blob: bytes | None, factor: int = 1) -> np.ndarray | str:
        img = _decode(blob, _REDUCED[color == "gray"][factor] if factor > 1 else flag)
        if isinstance(img, np.ndarray) and img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img

    def reduction(file: str, blob: bytes | None) -> int:
        """How much smaller a JPEG can be decoded (in the DCT, several times faster) with every face box of
        it still at least ``size`` pixels: photos many times the face's size (AffectNet) need not be decoded
        whole."""
        if not blob or blob[:2] != b"\xff\xd8" or any(boxes[i] is None for i in by_file[file]):
            return 1
        smallest = min(max(boxes[i][2], boxes[i][3]) for i in by_file[file])
        # A margin of 1.5x leaves the final area resize to antialias; at 1/8 JPEG keeps only block means and
        # the faces visibly differ, so 1/4 is the most.
        return next((k for k in (4, 2) if smallest / k >= 1.5 * size), 1)

    state = spill.resume(len(names), channels) if spill is not None else None
    first: list[np.ndarray | str] = []
    if state is not None:
        size = state["size"]
    elif size is None and chunks:  # the first chunk decides (decoded once, here)
        first = [decode_file(b) for b in source.read_many(chunks[0])]
        shapes = Counter(img.shape[:2] for img in first if isinstance(img, np.ndarray))
        side = max if fit == "pad" else min  # the side of the square each image becomes
        size = side(shapes.most_common(1)[0][0]) if shapes else 48
    size = size or 48
    shape = (len(names), size, size, *channels)
    if spill is not None:
        images, state = spill.allocate(shape, state)
    else:
        images, state = np.zeros(shape, np.uint8), None
    state = state or {"size": size, "done": [], "reasons": {}, "resized": 0, "clipped": 0, "colour": False}
    reasons: list[str | None] = [None] * len(names)
    for i, reason in state["reasons"].items():
        reasons[int(i)] = reason
    stats = {"resized": state["resized"], "clipped": state["clipped"], "colour": color == "rgb" or state["colour"]}
    lock = threading.Lock()

    def place(file: str, img: np.ndarray | str, factor: int = 1) -> None:
        resized = clipped = 0
        colour = False
        for i in by_file[file]:
            if isinstance(img, str):
                reasons[i] = img
                continue
            box = boxes[i] if factor == 1 else tuple(v / factor for v in boxes[i])
            face = _crop_square(img, box, pad=fit == "pad")
            if isinstance(face, str):
                reasons[i] = face if factor == 1 else _crop_square(_full_size(img, factor), boxes[i])
                continue
            clipped += box is not None and not _inside(box, img.shape)
            if face.shape[:2] != (size, size):
                resized += 1
                interp = cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR
                face = cv2.resize(face, (size, size), interpolation=interp)
            if face.ndim == 3 and not colour:
                colour = int(np.abs(face.astype(np.int16) - face[..., [1, 2, 0]]).max()) > _GRAY_TOLERANCE
            images[i] = face
        with lock:
            stats["resized"] += resized
            stats["clipped"] += clipped
            stats["colour"] = stats["colour"] or colour

    def work(k: int) -> int:
        batch = chunks[k]
        if k == 0 and first:
            for file, img in zip(batch, first):
                place(file, img)
            return k
        for file, blob in zip(batch, source.read_many(batch)):
            factor = reduction(file, blob)
            place(file, decode_file(blob, factor), factor)
        return k

    done = set(state["done"])
    last_checkpoint = time.monotonic()

    def finished(k: int) -> None:
        nonlocal last_checkpoint
        done.add(k)
        bar.update(len(chunks[k]))
        if spill is not None and time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
            checkpoint()
            last_checkpoint = time.monotonic()

    def checkpoint() -> None:
        # Only chunks whose faces are all written count as done; reasons of those chunks' faces go with them.
        ids = {i for k in done for f in chunks[k] for i in by_file[f]}
        spill.checkpoint(images, {"size": size, "done": sorted(done), "resized": stats["resized"],
                                  "clipped": stats["clipped"], "colour": stats["colour"],
                                  "reasons": {str(i): r for i, r in enumerate(reasons) if r and i in ids}})

    from tqdm import tqdm

    todo = [k for k in range(len(chunks)) if k not in done]
    bar = tqdm(total=len(files), initial=sum(len(chunks[k]) for k in done), desc=desc, unit="file",
               disable=not progress, dynamic_ncols=True)
    workers = _workers(workers)
    try:
        if workers <= 1 or len(todo) < 3:
            for k in todo:
                finished(work(k))
        else:
            # cv2 decodes and resizes without the GIL; at most 2 chunks per worker are in flight.
            with ThreadPoolExecutor(workers) as pool:
                pending = []
                for k in todo:
                    pending.append(pool.submit(work, k))
                    if len(pending) >= 2 * workers:
                        finished(pending.pop(0).result())
                for job in pending:
                    finished(job.result())
    finally:
        bar.close()
        if spill is not None and len(done) < len(chunks):
            checkpoint()  # interrupted: keep what is done for the next run
    if color == "auto" and not stats["colour"]:
        images = spill.gray(images) if spill is not None else np.ascontiguousarray(images[..., 0])
    return Decoded(images, reasons, size, stats["resized"], stats["clipped"])


_REDUCED = ({2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4},
            {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4})


def _full_size(img: np.ndarray, factor: int) -> np.ndarray:
    """A stand-in of the full-size image's shape, for the message about a box that misses it."""
    return np.empty((img.shape[0] * factor, img.shape[1] * factor), np.uint8)


def _decode(blob: bytes | None, flag: int) -> np.ndarray | str:
    if blob is None:
        return "unreadable"
    if not blob:
        return "empty file"
    try:
        img = cv2.imdecode(np.frombuffer(blob, np.uint8), flag)
    except cv2.error:  # a few malformed TIFFs and PNGs make the codec raise instead of returning None
        img = None
    if img is None:
        return "not a decodable image"
    if blob[:2] == b"\xff\xd8" and b"\xff\xd9" not in blob[-16:]:
        return "truncated JPEG (no end-of-image marker)"
    return img


def _inside(box, shape) -> bool:
    x, y, w, h = box
    return x >= 0 and y >= 0 and x + w <= shape[1] and y + h <= shape[0]


def _crop_square(img: np.ndarray, box, pad: bool = False) -> np.ndarray | str:
    """The square around ``box`` (or the image's centre square, or with ``pad`` all of it on black), its part
    outside the image filled by repeating the border; or why there is none."""
    height, width = img.shape[:2]
    if box is None and pad:
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        return cv2.copyMakeBorder(img, top, side - height - top, left, side - width - left, cv2.BORDER_CONSTANT,
                                  value=0)
    if box is None:
        side = min(height, width)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return img[y0:y0 + side, x0:x0 + side]
    x, y, w, h = box
    if not (w > 0 and h > 0):
        return f"empty face box {_box_text(box)}"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"face box {_box_text(box)} lies outside the {width}x{height} image"
    side = max(1, round(max(w, h)))
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    crop = img[max(0, y0):min(height, y0 + side), max(0, x0):min(width, x0 + side)]
    if crop.size == 0:
        return f"face box {_box_text(box)} lies outside the {width}x{height} image"
    pads = (max(0, -y0), max(0, y0 + side - height), max(0, -x0), max(0, x0 + side - width))
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
    return crop


def _box_text(box) -> str:
    return "(x, y, w, h) = (" + ", ".join(f"{v:g}" for v in box) + ")"


def _workers(workers: int | None) -> int:
    if workers is not None:
        return workers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, int(os.environ.get("OMP_NUM_THREADS") or cores))
