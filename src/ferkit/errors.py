"""User-facing errors.

Anything raised as a FerkitError is a problem with the user's input or environment: the CLI prints its
message (no traceback) and exits with status 2. Everything else is a bug in ferkit.
"""
from __future__ import annotations


class FerkitError(Exception):
    """A problem the user can fix; the message says what was expected, what was found and how to fix it."""


class DataError(FerkitError):
    """A dataset path, layout, file or label that ferkit cannot read."""


class ModelError(FerkitError):
    """An unknown model name, a checkpoint that does not match, or a pretrained file with wrong keys."""
