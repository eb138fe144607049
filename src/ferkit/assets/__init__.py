"""Files that ship with ferkit.

``grace_hopper.jpg``: official U.S. Navy portrait of Rear Admiral Grace M. Hopper (1984), a work of the U.S.
federal government and so in the public domain; the copy matplotlib ships in its sample data (512 x 600, one
frontal face). Used by the README examples and the tests.
"""
from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).parent


def sample_image_path() -> Path:
    """Path to the bundled sample photo (one frontal face)."""
    return ASSETS_DIR / "grace_hopper.jpg"
