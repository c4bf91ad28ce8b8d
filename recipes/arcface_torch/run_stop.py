"""Where a run stops, and what it leaves behind: the saves at step and epoch boundaries.

RunStop is asked at every step boundary (`after_step`) and at every epoch end (`at_epoch_end`) whether to save
and whether to stop. Today a run saves at each epoch end and at its last step (`max_steps` or the end of the
schedule). Every save writes model.pt (rank 0; with the "ri" loss also recognisability.pt beside it) and, with
`save_all_states`, each rank's exact checkpoint, and only when every rank's weights are finite (agreed across
ranks), so the files kept are always the last good ones.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import atomic_torch_save, checkpoint_path, non_finite_tensors
from .distributed import agree
from .recognisability_file import FILE_NAME as RECOGNISABILITY_FILE
from .recognisability_file import from_head as recognisability_of
from .recognisability_file import save_recognisability
from .training_state import RunPosition, TrainingError, TrainingState


class RunStop:
    def __init__(self, config, ctx, output: Path, state: TrainingState, last_step: int, batches_per_epoch: int):
        self.config, self.ctx, self.output, self.state = config, ctx, Path(output), state
        self.last_step, self.batches_per_epoch = last_step, batches_per_epoch
        self.checkpoint_file = checkpoint_path(output, ctx.rank)
        self.saved_step: int | None = None

    def next_position(self, step: int, epoch: int, batch: int) -> RunPosition:
        """The position after training `batch` of `epoch` as global step `step`."""
        if batch + 1 < self.batches_per_epoch:
            return RunPosition(step, epoch, batch + 1)
        return RunPosition(step, epoch + 1, 0)

    def after_step(self, step: int, epoch: int, batch: int) -> bool:
        """Called after each trained batch; saves and returns True when the run stops here."""
        if step >= self.last_step:
            self.save(self.next_position(step, epoch, batch))
            return True
        return False

    def at_epoch_end(self, step: int, next_epoch: int) -> None:
        """Called when an epoch's batches are done; saves unless gradients are still being accumulated."""
        if step % self.config.gradient_acc == 0:
            self.save(RunPosition(step, next_epoch, 0))

    def finish(self, step: int, epoch: int) -> None:
        """After the loop: make sure the final step is saved."""
        if self.saved_step != step:
            self.save(RunPosition(step, epoch, 0))

    def save(self, position: RunPosition) -> None:
        """model.pt (rank 0) and each rank's checkpoint, only when every rank's weights are finite."""
        state, ctx = self.state, self.ctx
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
        if ctx.is_main:
            atomic_torch_save(state.backbone.state_dict(), self.output / "model.pt")
            record = recognisability_of(state.head)  # the "ri" loss's centre and regressor, beside model.pt
            if record is not None:
                save_recognisability(record, self.output / RECOGNISABILITY_FILE)
        if self.config.save_all_states:
            atomic_torch_save(state.checkpoint(position, ctx.world_size), self.checkpoint_file)
        self.saved_step = position.step
