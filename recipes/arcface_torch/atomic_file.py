"""Write files and folders so that readers see the old version or the complete new one, never a half.

write_atomically(path, lambda f: torch.save(obj, f))   # temp file in the same folder, fsync, os.replace
write_bytes_atomically(path, data)
staging = staging_folder(target); ...; publish_folder(staging, target, replace=True)
"""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

PathLike = str | os.PathLike
_STALE_TEMP_AGE_S = 60.0


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: PathLike, write: Callable[[BinaryIO], None], durable: bool = True) -> Path:
    """Call `write(handle)` on a temp file next to `path`, fsync it, then os.replace it onto `path`.
    On any error (or interrupt) the temp file is removed and `path` keeps its previous content.
    durable=False skips the fsync: still never half a file for a killed process, but a power cut may lose the
    newest files (for many small files that a resumable job can redo, where one fsync each costs more than the work)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    done = False
    try:
        with os.fdopen(handle, "wb") as temp:
            write(temp)
            temp.flush()
            if durable:
                os.fsync(temp.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temp_name, path)
        done = True
    except OSError as error:
        if _is_disk_full(error):
            kept = f"the previous {path.name} is kept" if path.exists() else f"{path.name} was not written"
            raise DiskFullError(
                errno.ENOSPC,
                f"no space left on the device while writing {path}; {kept}; free space there and run again",
            ) from error
        raise
    finally:
        if not done:
            Path(temp_name).unlink(missing_ok=True)
    return path


class DiskFullError(OSError):
    """The device ran out of space during an atomic write; the target file is unchanged."""

    def __str__(self) -> str:
        return self.strerror


def _is_disk_full(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        error = error.__cause__ or error.__context__
    return False


def remove_stale_temp_files(path: PathLike) -> list[Path]:
    """Remove temp files `.<name>.*.tmp` that an interrupted write of `path` left beside it (a killed process
    cannot clean up after itself). Only files older than a minute: a concurrent writer's live temp file stays."""
    path = Path(path)
    removed = []
    for temp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if temp.is_file() and time.time() - temp.stat().st_mtime > _STALE_TEMP_AGE_S:
                temp.unlink()
                removed.append(temp)
        except FileNotFoundError:
            continue
    return removed


def write_bytes_atomically(path: PathLike, data: bytes, durable: bool = True) -> Path:
    return write_atomically(path, lambda stream: stream.write(data), durable)


def staging_folder(target: PathLike) -> Path:
    """A new empty folder beside `target` (same filesystem, so it can be renamed onto it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    folder.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
    return folder


def publish_folder(staging: PathLike, target: PathLike, replace: bool) -> None:
    """Move the finished `staging` folder to `target`; an old `target` is swapped out only when `replace`."""
    staging, target = Path(staging), Path(target)
    if not target.exists():
        os.replace(staging, target)
        return
    if not replace:
        raise FileExistsError(f"{target} already exists; pass --force to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    done = False
    try:
        os.replace(staging, target)
        done = True
    finally:
        if not done:  # put the old folder back
            os.replace(old, target)
    shutil.rmtree(old, ignore_errors=True)
