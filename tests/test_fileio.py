"""Atomic writes: whole files or the old ones, usual permissions, no temporary files left."""
from __future__ import annotations

import os

import pytest

from infra.fileio import atomic_write_bytes, atomic_write_text


def test_new_file_gets_umask_permissions_and_existing_keeps_its_own(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "table.md", "hello")
        assert path.read_text() == "hello" and path.stat().st_mode & 0o777 == 0o644
        os.chmod(path, 0o640)
        atomic_write_text(path, "again")
        assert path.read_text() == "again" and path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "study.json", "old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, object())  # not bytes: the write fails part-way
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.json"]
