"""Files: where ferkit keeps its cache (decoded datasets, downloaded detector models: $FERKIT_CACHE_DIR, else
$XDG_CACHE_HOME/ferkit, else ~/.cache/ferkit), where the shipped weights are, atomic writes and file hashes."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

# The models shipped inside the package (default.pt and its default.onnx twin, ...). Defined here, in a module
# without torch, so the ONNX path (recognizer, export) can find them without importing it.
WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED_MODELS = ("default", "fast", "robust")


def cache_dir(sub: str = "") -> Path:
    root = os.environ.get("FERKIT_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ferkit"
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: str | Path, flag: str) -> Path:
    """Refuse an output ``path`` whose folder cannot be made or written before the work that fills it, not
    after (a folder of predictions, an export)."""
    from ferkit.errors import FerkitError

    path = Path(path)
    existing = path.absolute().parent
    while not existing.exists():  # atomic_write makes the missing folders; the first existing one decides
        existing = existing.parent
    try:  # a real file, not os.access: root passes access checks on read-only and virtual file systems
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise FerkitError(f"{flag} {path}: cannot write into {existing} ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write through a temporary file beside ``path`` that replaces it only when the block succeeds, so a
    crash mid-write never leaves a half-written file (or destroys the previous one). The result gets the
    permissions of a normally created file (0666 minus the umask), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB chunks (checkpoints, downloads, dataset cache keys). SHA-256 rather
    than BLAKE2: CPUs with SHA extensions hash the 270 MB fer2013.csv about twice as fast."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
