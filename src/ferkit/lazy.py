"""Public names that load on first use: how ``import ferkit`` and its subpackages stay cheap (no torch, OpenCV
or ONNX Runtime until a name that needs them is touched)."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, public: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that imports ``public[name]`` (a module path) the first
    time ``name`` is asked for."""

    def __getattr__(name: str) -> Any:
        if name in public:
            return getattr(importlib.import_module(public[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
