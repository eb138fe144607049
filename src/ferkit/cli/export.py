"""`ferkit export` (not implemented yet)."""
from __future__ import annotations


def register(sub) -> None:
    pass
