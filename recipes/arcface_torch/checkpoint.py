"""Atomic checkpoint files: a crash mid-save never destroys the previous checkpoint.

Each rank writes its own `checkpoint_rank{r}.pt` (the class centres are sharded); rank 0 also writes
`model.pt`, the plain backbone state_dict that upstream arcface_torch and insightface tools read.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from .atomic_file import write_atomically


class CheckpointError(ValueError):
    """A checkpoint or training config is missing, unreadable, or does not fit the network."""


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through a temp file in the same folder, fsync, then rename over `path`."""
    write_atomically(path, lambda file: torch.save(obj, file))


def checkpoint_path(output: str | Path, rank: int) -> Path:
    return Path(output) / f"checkpoint_rank{rank}.pt"


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def load_checkpoint(path: str | Path) -> dict:
    """Load a training checkpoint without executing code from the file (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; set config.resume = False to start a new run there")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: say which and what to do
        raise CheckpointError(f"checkpoint {path} cannot be read ({error}); delete it to start over or restore a copy") from error
