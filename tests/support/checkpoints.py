"""Find a run's checkpoint files as a user would: by their names in the output folder."""

from __future__ import annotations

import re
from pathlib import Path


def checkpoint_files(output, rank: int = 0) -> dict[int, Path]:
    """{step: path} of rank `rank`'s checkpoint_step<N>_rank<r>.pt files in `output`."""
    found = {}
    for path in Path(output).iterdir():
        match = re.fullmatch(r"checkpoint_step(\d+)_rank(\d+)\.pt", path.name)
        if match and int(match.group(2)) == rank:
            found[int(match.group(1))] = path
    return found


def newest_checkpoint(output, rank: int = 0) -> Path:
    """Rank `rank`'s checkpoint file of the highest step in `output`."""
    files = checkpoint_files(output, rank)
    assert files, f"no checkpoint_step*_rank{rank}.pt in {output}: {sorted(p.name for p in Path(output).iterdir())}"
    return files[max(files)]
