"""Where a run stops, and what it leaves behind: the saves at step and epoch boundaries.

RunStop is asked at every step boundary (`after_step`) and at every epoch end (`at_epoch_end`) whether to save
and whether to stop. A run saves at each epoch end (upstream's behaviour), every `checkpoint_every` steps, when
a stop signal reached any rank (stop_signals.py: every rank stops at the same optimizer step) and at its last
step (`max_steps` or the end of the schedule). A save writes one checkpoint set (with `save_all_states`: each
rank's exact checkpoint, checkpoint_sets.py) and model.pt (rank 0; with the "ri" loss also recognisability.pt
beside it), and only when every rank's weights are finite, so the files kept are always the last good ones. The
set counts as complete once every rank has written its file; only then are older sets removed, keeping the
`keep_checkpoints` newest. A write that fails on any rank (a full disk) stops every rank, removes the new set's
files and keeps the previous set.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .checkpoint import CheckpointError, atomic_torch_save, checkpoint_path, legacy_checkpoint_path, non_finite_tensors
from .checkpoint_sets import gather_inventory, remove_other_sets
from .distributed import agree
from .recognisability_file import FILE_NAME as RECOGNISABILITY_FILE
from .recognisability_file import from_head as recognisability_of
from .recognisability_file import save_recognisability
from .stop_signals import StopSignals
from .training_log import LOGGER_NAME
from .training_state import RunPosition, TrainingError, TrainingState


class RunStop:
    def __init__(
        self,
        config,
        ctx,
        output: Path,
        state: TrainingState,
        last_step: int,
        batches_per_epoch: int,
        start: RunPosition | None = None,
        signals: StopSignals | None = None,
    ):
        """`start`: where the run started (a resumed run's checkpoint need not be saved again); `signals`: the
        installed StopSignals (None: stop signals are not watched). Collective when save_all_states: every rank
        learns which checkpoint sets are complete."""
        self.config, self.ctx, self.output, self.state = config, ctx, Path(output), state
        self.last_step, self.batches_per_epoch = last_step, batches_per_epoch
        self.signals = signals if signals is not None else StopSignals()  # not entered: receives nothing
        self.complete_steps = gather_inventory(self.output, ctx).complete_steps() if config.save_all_states else []
        start = start or RunPosition()
        self.saved_step: int | None = start.step if start.resumed and start.step in self.complete_steps else None
        self.stop_request: dict[int, str] = {}  # {rank: signal name}, agreed by every rank
        self.stop_line: str | None = None

    @property
    def checkpoint_file(self) -> Path:
        """This rank's file of the newest complete checkpoint set (an earlier version's single file if none)."""
        if self.complete_steps:
            return checkpoint_path(self.output, self.ctx.rank, self.complete_steps[-1])
        return legacy_checkpoint_path(self.output, self.ctx.rank)

    def next_position(self, step: int, epoch: int, batch: int) -> RunPosition:
        """The position after training `batch` of `epoch` as global step `step`."""
        if batch + 1 < self.batches_per_epoch:
            return RunPosition(step, epoch, batch + 1)
        return RunPosition(step, epoch + 1, 0)

    def after_step(self, step: int, epoch: int, batch: int) -> bool:
        """Called after each trained batch on every rank; saves when due and returns True when the run stops here.
        Between optimizer steps (gradient_acc > 1) nothing is saved: accumulated gradients are no part of a
        checkpoint. At every optimizer step the ranks agree on stop signals (one small all-reduce)."""
        position = self.next_position(step, epoch, batch)
        if step >= self.last_step:
            self.save(position)
            return True
        if step % self.config.gradient_acc:
            return False
        self.stop_request = self.signals.agreed(self.ctx)  # collective: the same answer on every rank
        if self.stop_request:
            self.save(position)
            self.stop_line = self._stop_line(position)
            logging.getLogger(LOGGER_NAME).info(self.stop_line)
            return True
        if self.config.checkpoint_every and step % self.config.checkpoint_every == 0:
            self.save(position)
        return False

    def at_epoch_end(self, step: int, next_epoch: int) -> None:
        """Called when an epoch's batches are done; saves unless gradients are still being accumulated or this
        step was saved already (an interval checkpoint on the epoch's last batch)."""
        if step % self.config.gradient_acc == 0 and self.saved_step != step:
            self.save(RunPosition(step, next_epoch, 0))

    def finish(self, step: int, epoch: int) -> str | None:
        """After the loop: make sure the final step is saved. Returns the line saying why the run stopped early
        (a stop signal), None when it reached its end."""
        if self.saved_step != step:
            self.save(RunPosition(step, epoch, 0))
        return self.stop_line

    def save(self, position: RunPosition) -> None:
        """Each rank's checkpoint of the set at `position.step` and model.pt (rank 0), only when every rank's
        weights are finite; older sets are removed once this one is complete on every rank."""
        state, ctx, config = self.state, self.ctx, self.config
        bad = non_finite_tensors(state.backbone.state_dict(), state.head.state_dict())
        agree(  # collective: every rank learns whether any rank's weights went non-finite
            ctx,
            TrainingError(
                f"weights hold NaN/Inf ({', '.join(bad[:3])}) at step {position.step}; nothing was saved and "
                f"the last checkpoint is kept; lower config.lr or keep clip_grad_norm > 0"
            )
            if bad
            else None,
        )
        path = checkpoint_path(self.output, ctx.rank, position.step)
        new_file = config.save_all_states and position.step not in self.complete_steps
        error = None
        try:
            if config.save_all_states:
                atomic_torch_save(state.checkpoint(position, ctx.world_size), path)
            if ctx.is_main:
                atomic_torch_save(state.backbone.state_dict(), self.output / "model.pt")
                record = recognisability_of(state.head)  # the "ri" loss's centre and regressor, beside model.pt
                if record is not None:
                    save_recognisability(record, self.output / RECOGNISABILITY_FILE)
        except OSError as caught:  # a full disk, a lost mount: the message says which file and what is kept
            error = caught
        except RuntimeError as caught:  # torch's zip writer reports a failed write as a RuntimeError
            error = CheckpointError(
                f"could not write {path} or model.pt ({str(caught).splitlines()[0][:200]}); the last complete "
                f"checkpoint set is kept; check the space and permissions of {self.output}"
            )
        try:
            agree(ctx, error)  # collective: the set of this step is complete on every rank, or every rank stops
        except (OSError, RuntimeError):
            if new_file:
                path.unlink(missing_ok=True)  # an incomplete set is never resumed: remove this rank's part
            raise
        self.saved_step = position.step
        if config.save_all_states:
            self.complete_steps = sorted({*self.complete_steps, position.step})[-config.keep_checkpoints :]
            remove_other_sets(self.output, ctx.rank, keep=self.complete_steps)

    def _stop_line(self, position: RunPosition) -> str:
        who = ", ".join(f"{name} on rank {rank}" for rank, name in sorted(self.stop_request.items()))
        where = f"step {position.step} (epoch {position.epoch}, next batch {position.batch})"
        if self.config.save_all_states:
            return (
                f"{who}: stopped at {where} with a complete checkpoint set; run the same command with "
                f"resume='auto' (or resume=True) to continue exactly from it"
            )
        return f"{who}: stopped at {where}; model.pt saved (save_all_states=False: no checkpoint to resume from)"
