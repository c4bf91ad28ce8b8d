"""Write a file so that readers see either the old content or the complete new one, never a partial file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union


def write_atomically(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(handle)` on a temporary file next to `path`, fsync it, then os.replace it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    done = False
    try:
        with os.fdopen(handle, "wb") as temp:
            write(temp)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
        done = True
    finally:
        if not done and os.path.exists(temp_name):
            os.unlink(temp_name)
    return path
