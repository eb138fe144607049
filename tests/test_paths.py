"""Atomic writes: all or nothing, with ordinary file permissions; output paths checked before the work."""
from __future__ import annotations

import os
import stat

import pytest

from ferkit.errors import FerkitError
from ferkit.paths import atomic_write, check_writable


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


def test_check_writable_accepts_missing_folders_and_refuses_a_file_in_the_way(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "out.csv", "--csv") == tmp_path / "new" / "deeper" / "out.csv"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FerkitError, match=r"--out .*a-file/sub/model.onnx: cannot write into .*a-file"):
        check_writable(tmp_path / "a-file" / "sub" / "model.onnx", "--out")
