"""Upstream-style progress lines (speed, loss, lr, epoch, step, ETA) and the losses' diagnostics."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

LOGGER_NAME = "arcface_torch"


def setup_logging(output: str | Path, rank: int) -> logging.Logger:
    """Rank 0 logs to stdout and <output>/training.log; other ranks only warn."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    formatter = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
    handlers = [logging.StreamHandler(sys.stdout)]
    if rank == 0:
        Path(output).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output) / "training.log"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


class AverageMeter:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sum, self.count = 0.0, 0

    def update(self, value: float, n: int = 1) -> None:
        self.sum += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.sum / max(1, self.count)


class ProgressLogger:
    """Every `frequent` steps: samples/s over the interval, mean loss, lr, epoch, step and time left."""

    def __init__(
        self, frequent: int, total_steps: int, global_batch: int, start_step: int, logger: logging.Logger, writer=None
    ):
        self.frequent, self.total_steps, self.global_batch = frequent, total_steps, global_batch
        self.logger, self.writer = logger, writer
        self.start_time = self.tick_time = time.time()
        self.start_step = self.tick_step = start_step

    def __call__(
        self, step: int, epoch: int, loss: AverageMeter, lr: float, grad_scale: float | None, stats: dict
    ) -> None:
        if step % self.frequent != 0:
            return
        now = time.time()
        speed = (step - self.tick_step) * self.global_batch / max(now - self.tick_time, 1e-9)
        per_step = (now - self.start_time) / max(step - self.start_step, 1)
        hours_left = per_step * (self.total_steps - step) / 3600
        scale = f"   Fp16 Grad Scale: {grad_scale:.0f}" if grad_scale is not None else ""
        self.logger.info(
            f"Speed {speed:.2f} samples/sec   Loss {loss.avg:.4f}   LearningRate {lr:.6f}   "
            f"Epoch: {epoch}   Global Step: {step}{scale}   Required: {hours_left:.2f} hours"
        )
        if stats:
            self.logger.info(format_diagnostics(stats))
        if self.writer is not None:
            self.writer.add_scalar("loss", loss.avg, step)
            self.writer.add_scalar("learning_rate", lr, step)
            for key, value in stats.items():
                self.writer.add_scalar(key, float(value), step)
        loss.reset()
        self.tick_time, self.tick_step = now, step


def format_diagnostics(stats: dict) -> str:
    """One line of "<loss>/<name> value" pairs, e.g. "unpg/pairs_kept 1234   unpg/q1 0.0312"."""
    parts = []
    for key, value in stats.items():
        number = float(value)
        parts.append(f"{key} {int(number)}" if number.is_integer() and abs(number) >= 1 else f"{key} {number:.4f}")
    return "   ".join(parts)
