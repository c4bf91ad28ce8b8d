"""Checkpoint sets: which saves are complete on every rank, which one a run resumes, which ones are removed.

A save at global step N is a set of files, one per rank (`checkpoint_step{N:08d}_rank{r}.pt`). It is complete
when every rank has written its file, which RunStop establishes with one agreement after the writes; a set that
some rank never finished (killed mid-save, full disk) is incomplete and never resumed. Ranks learn what the
others hold through one all_gather_object, so a run folder that is node-local (each node sees only its own
ranks' files) works as well as a shared one.

    inventory = gather_inventory(output, ctx)     # collective: every rank's steps and single files
    inventory.complete_steps()                    # steps whose set every rank holds, ascending
    remove_other_sets(output, rank, keep=[...])   # this rank's files of every other step
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from .checkpoint import checkpoint_path, checkpoint_steps, legacy_checkpoint_path, upstream_checkpoint_path


@dataclass
class CheckpointInventory:
    """What each rank's view of the output folder holds: `steps[r]` the steps of rank r's step files,
    `single[r]` whether rank r has a checkpoint outside the step sets (an earlier version's or upstream's)."""

    steps: list[list[int]]
    single: list[bool]

    def complete_steps(self) -> list[int]:
        """Steps for which every rank holds its file, ascending."""
        common = set(self.steps[0])
        for steps in self.steps[1:]:
            common &= set(steps)
        return sorted(common)

    @property
    def empty(self) -> bool:
        return not any(self.steps) and not any(self.single)

    def describe(self) -> str:
        """'rank 0 holds steps [6, 9], rank 1 holds steps [9]' (the last three steps of each rank)."""
        parts = []
        for rank, steps in enumerate(self.steps):
            shown = steps[-3:]
            more = "..., " if len(steps) > 3 else ""
            parts.append(
                f"rank {rank} holds steps [{more}{', '.join(map(str, shown))}]" if steps else f"rank {rank} none"
            )
        return ", ".join(parts)


def gather_inventory(output: str | Path, ctx) -> CheckpointInventory:
    """Every rank's checkpoint files as seen from that rank. Collective when the run has several ranks."""
    mine = (
        checkpoint_steps(output, ctx.rank),
        legacy_checkpoint_path(output, ctx.rank).is_file() or upstream_checkpoint_path(output, ctx.rank).is_file(),
    )
    views = [mine] * ctx.world_size
    if ctx.world_size > 1 and dist.is_initialized():
        dist.all_gather_object(views, mine)  # collective: each rank's (steps, single file present)
    return CheckpointInventory(steps=[list(steps) for steps, _ in views], single=[bool(single) for _, single in views])


def remove_other_sets(output: str | Path, rank: int, keep: list[int]) -> list[int]:
    """Delete this rank's step files whose step is not in `keep`; returns the steps removed."""
    removed = []
    for step in checkpoint_steps(output, rank):
        if step not in keep:
            checkpoint_path(output, rank, step).unlink(missing_ok=True)
            removed.append(step)
    return removed
