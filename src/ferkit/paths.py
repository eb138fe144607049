"""Where ferkit keeps its cache (decoded datasets, downloaded detector models): $FERKIT_CACHE_DIR, else
$XDG_CACHE_HOME/ferkit, else ~/.cache/ferkit."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir(sub: str = "") -> Path:
    root = os.environ.get("FERKIT_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ferkit"
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path
