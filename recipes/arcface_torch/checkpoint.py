"""Atomic checkpoint files: a crash mid-save never destroys the previous checkpoint.

Each save at global step N writes one set: every rank its own `checkpoint_step{N:08d}_rank{r}.pt` (the class
centres are sharded); rank 0 also writes `model.pt`, the plain backbone state_dict that upstream arcface_torch
and insightface tools read. checkpoint_sets.py decides which sets are complete, which to resume and which to
remove; a run folder of an earlier version holds `checkpoint_rank{r}.pt`, which resume still reads.

A checkpoint holds upstream train_v2's keys (state_dict_backbone, state_dict_softmax_fc, state_optimizer,
state_lr_scheduler, global_step, epoch: the next epoch to run) plus what an exact mid-epoch resume needs
(next_batch, world_size, scaler, rng). Resume reads ours or upstream's `checkpoint_gpu_{r}.pt`; an upstream
file lacks the extras and resumes at its epoch boundary.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import torch

from .atomic_file import write_atomically


class CheckpointError(ValueError):
    """A checkpoint or training config is missing, unreadable, or does not fit the network."""


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through a temp file in the same folder, fsync, then rename over `path`."""
    write_atomically(path, lambda file: torch.save(obj, file))


_STEP_FILE = re.compile(r"checkpoint_step(\d+)_rank(\d+)\.pt")


def checkpoint_path(output: str | Path, rank: int, step: int) -> Path:
    """Rank `rank`'s part of the checkpoint set saved at global step `step`."""
    return Path(output) / f"checkpoint_step{step:08d}_rank{rank}.pt"


def checkpoint_steps(output: str | Path, rank: int) -> list[int]:
    """The steps for which `output` holds rank `rank`'s checkpoint file, ascending."""
    steps = []
    for path in Path(output).glob(f"checkpoint_step*_rank{rank}.pt"):
        match = _STEP_FILE.fullmatch(path.name)
        if match and int(match.group(2)) == rank:
            steps.append(int(match.group(1)))
    return sorted(steps)


def holds_checkpoints(output: str | Path) -> bool:
    """Whether `output` holds any rank's checkpoint file: a step set, an earlier version's or upstream's."""
    output = Path(output)
    names = ("checkpoint_step*_rank*.pt", "checkpoint_rank*.pt", "checkpoint_gpu_*.pt")
    return output.is_dir() and any(next(output.glob(name), None) is not None for name in names)


def legacy_checkpoint_path(output: str | Path, rank: int) -> Path:
    """The single per-rank file an earlier version of this recipe overwrote at every save."""
    return Path(output) / f"checkpoint_rank{rank}.pt"


def upstream_checkpoint_path(output: str | Path, rank: int) -> Path:
    """The name upstream arcface_torch's train_v2 writes once per epoch."""
    return Path(output) / f"checkpoint_gpu_{rank}.pt"


def find_single_checkpoint(output: str | Path, rank: int) -> Path:
    """This rank's checkpoint outside the step sets: an earlier version's, else upstream's; FileNotFoundError
    naming what was looked for if neither."""
    ours, upstream = legacy_checkpoint_path(output, rank), upstream_checkpoint_path(output, rank)
    if ours.is_file():
        return ours
    if upstream.is_file():
        return upstream
    raise FileNotFoundError(
        f"no checkpoint in {Path(output)} (checkpoint_step*_rank{rank}.pt, or upstream's {upstream.name}); "
        f"set config.resume = False (or 'auto') to start a new run there, or set config.save_all_states = True "
        f"so runs can be resumed"
    )


UPSTREAM_KEYS = (
    "state_dict_backbone",
    "state_dict_softmax_fc",
    "state_optimizer",
    "state_lr_scheduler",
    "global_step",
    "epoch",
)


def check_checkpoint_keys(state: dict, path: str | Path) -> None:
    missing = [key for key in UPSTREAM_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}; it is not an arcface_torch training "
            f"checkpoint (model.pt holds weights only): set config.resume = False"
        )


def non_finite_tensors(*state_dicts: dict) -> list[str]:
    """Names of floating-point tensors holding NaN or Inf, across the given state_dicts."""
    bad = []
    for state in state_dicts:
        for name, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
                bad.append(name)
    return bad


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
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({error}); delete it to start over or restore a copy"
        ) from error
