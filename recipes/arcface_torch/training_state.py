"""What a training checkpoint holds, written and read in one place.

TrainingState bundles the objects whose state makes up a run on one rank: the backbone, the partial-FC head
(this rank's shard of the class centres W and any loss parameters), the optimizer, the LR scheduler and the
grad scaler. `checkpoint()` is the dict a rank saves (upstream train_v2's keys plus the exact-resume extras);
`restore()` loads such a dict back, keeping the current config's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import CheckpointError, rng_state, set_rng_state


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss or weights, mismatched resume state)."""


@dataclass
class RunPosition:
    """Where a run stands: `step` batches trained, the next batch to train is `batch` of `epoch`; `resumed`:
    the position was read from a checkpoint."""

    step: int = 0
    epoch: int = 0
    batch: int = 0
    resumed: bool = False


@dataclass
class TrainingState:
    backbone: torch.nn.Module
    head: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    def checkpoint(self, position: RunPosition, world_size: int) -> dict:
        """This rank's checkpoint at `position` (the next batch to train): upstream's keys, then ours."""
        return {
            "epoch": position.epoch,
            "global_step": position.step,
            "state_dict_backbone": self.backbone.state_dict(),
            "state_dict_softmax_fc": self.head.state_dict(),
            "state_optimizer": self.optimizer.state_dict(),
            "state_lr_scheduler": self.scheduler.state_dict(),
            "next_batch": position.batch,
            "world_size": world_size,
            "state_scaler": self.scaler.state_dict(),
            "rng": rng_state(),
        }

    def restore(self, state: dict, path: Path, lr: float) -> None:
        """Load a checkpoint (ours or upstream's) into every object; the scheduler keeps the current config's
        warmup, total and power, and each optimizer group this run's LR scale (`lr_scale`, 1 if none): its base
        LR is `lr` * scale."""
        scales = [group.get("lr_scale") for group in self.optimizer.param_groups]  # this run's, before loading
        try:
            self.backbone.load_state_dict(state["state_dict_backbone"])
            self.head.load_state_dict(state["state_dict_softmax_fc"])
            self.optimizer.load_state_dict(state["state_optimizer"])
        except (RuntimeError, ValueError) as error:
            raise CheckpointError(
                f"{path} does not fit this run ({str(error).splitlines()[0][:200]}); resume with the "
                f"network, embedding_size, num_classes and world size that wrote it"
            ) from error
        scheduler = self.scheduler
        warmup, total, power = scheduler.warmup_iters, scheduler.total_iters, scheduler.power
        scheduler.load_state_dict(state["state_lr_scheduler"])
        scheduler.warmup_iters, scheduler.total_iters, scheduler.power = warmup, total, power  # the current config's
        for group, scale in zip(self.optimizer.param_groups, scales, strict=True):
            group.pop("lr_scale", None)
            if scale is not None:
                group["lr_scale"] = scale
            group["initial_lr"] = lr * (1.0 if scale is None else scale)
        scheduler.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        for group, group_lr in zip(self.optimizer.param_groups, scheduler.get_lr(), strict=True):
            group["lr"] = group_lr
        scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        if "state_scaler" in state:
            self.scaler.load_state_dict(state["state_scaler"])
        if "rng" in state:
            set_rng_state(state["rng"])
