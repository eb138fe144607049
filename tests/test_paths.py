"""Atomic writes: all or nothing, with ordinary file permissions."""
from __future__ import annotations

import os
import stat

import pytest

from ferkit.paths import atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with atomic_write(target) as f:
        f.write(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"half of the second")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"  # the previous file survives
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # no temporary left behind


def test_atomic_write_gives_normal_permissions(tmp_path):
    # mkstemp creates 0600 files; shipped weights and shared caches must be readable like any other file.
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "w.pt") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.pt").stat().st_mode) == 0o644
