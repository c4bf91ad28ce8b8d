"""Atomic writes on a full disk, and temp files left behind by an interrupted process."""

import errno
import os
import time

import pytest

from recipes.arcface_torch import atomic_file
from recipes.arcface_torch.atomic_file import DiskFullError, remove_stale_temp_files, write_bytes_atomically


def test_full_disk_keeps_the_old_file_and_says_so(tmp_path):
    path = tmp_path / "model.pt"
    write_bytes_atomically(path, b"old")

    def fill_disk(stream):
        stream.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        DiskFullError,
        match=rf"^no space left on the device while writing {path}; the previous model.pt is kept; free space",
    ):
        atomic_file.write_atomically(path, fill_disk)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left


def test_full_disk_on_a_new_file_says_it_was_not_written(tmp_path):
    def fill_disk(stream):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="config.json was not written"):
        atomic_file.write_atomically(tmp_path / "config.json", fill_disk)


def test_leftover_temp_files_of_an_interrupted_write_are_removed_on_the_next_write(tmp_path):
    path = tmp_path / "checkpoint_rank0.pt"
    stale = tmp_path / ".checkpoint_rank0.pt.abc123.tmp"  # what a killed process leaves behind
    stale.write_bytes(b"torn")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    live = tmp_path / ".checkpoint_rank0.pt.live99.tmp"  # a concurrent writer's temp file is young: kept
    live.write_bytes(b"in progress")
    other = tmp_path / ".model.pt.zzz.tmp"  # another file's temp file: not ours to remove
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    write_bytes_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temp_files(tmp_path / "model.pt") == [other]


def test_durable_writes_fsync_and_quick_ones_only_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic_file.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    write_bytes_atomically(tmp_path / "model.pt", b"weights")
    assert len(synced) == 1
    write_bytes_atomically(tmp_path / "face.jpg", b"old")
    synced.clear()
    write_bytes_atomically(tmp_path / "face.jpg", b"new face", durable=False)
    assert synced == [] and (tmp_path / "face.jpg").read_bytes() == b"new face"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg", "model.pt"]
