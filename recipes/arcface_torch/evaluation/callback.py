"""Periodic verification during training, logged the way arcface_torch logs it.

    callback = VerificationCallback(val_sets, frequent=2000, output_dir=cfg.output,
                                    summary_writer=writer, rank=rank)
    for step in ...:
        ...
        callback(step, backbone)                 # rank 0, every `frequent` steps
    callback(step, backbone, force=True)         # once more at the end

Per target and evaluation it logs (logger "arcface_torch")
    [lfw][2000]XNorm: 21.123456
    [lfw][2000]Accuracy-Flip: 0.99500+-0.00300
    [lfw][2000]Accuracy-Highest: 0.99500
plus TAR@FAR and the positive/negative similarity overlap, writes TensorBoard scalars, and saves
`similarity_<target>_step<step>.png` in output_dir.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from .plots import plot_similarity_histograms
from .verification import evaluate
from .verification_set import VerificationSet

LOGGER = logging.getLogger("arcface_torch")


class VerificationCallback:
    """Evaluates every VerificationSet on rank 0 each `frequent` steps (step > 0), or when forced."""

    def __init__(
        self,
        val_sets: Sequence[VerificationSet],
        frequent: int,
        output_dir: str | os.PathLike,
        summary_writer=None,
        rank: int = 0,
        batch_size: int = 64,
    ) -> None:
        if int(frequent) <= 0:
            raise ValueError(f"verification frequent is {frequent}; it must be a positive number of steps")
        names = [vset.name for vset in val_sets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"verification targets {duplicates} appear more than once; give each set a unique name")
        self.val_sets: list[VerificationSet] = list(val_sets)
        self.frequent = int(frequent)
        self.output_dir = Path(output_dir)
        self.summary_writer = summary_writer
        self.rank = int(rank)
        self.batch_size = int(batch_size)
        self.highest_accuracy: dict[str, float] = {vset.name: 0.0 for vset in self.val_sets}

    def is_due(self, step: int, force: bool = False) -> bool:
        if self.rank != 0 or not self.val_sets:
            return False
        return force or (step > 0 and step % self.frequent == 0)

    def __call__(self, step: int, model: nn.Module, force: bool = False) -> dict[str, dict]:
        """Run the evaluation if due; returns {target name: results of `evaluate` + overlap, highest}."""
        if not self.is_due(step, force):
            return {}
        results: dict[str, dict] = {}
        for vset in self.val_sets:
            result = evaluate(model, vset, self.batch_size)
            name = vset.name
            self.highest_accuracy[name] = max(self.highest_accuracy[name], result["accuracy"])
            result["accuracy_highest"] = self.highest_accuracy[name]
            image_path = self.output_dir / f"similarity_{name}_step{step:07d}.png"
            result["similarity_overlap"] = plot_similarity_histograms(
                result["positive_similarities"],
                result["negative_similarities"],
                image_path,
                title=f"{name} step {step}: accuracy {result['accuracy']:.5f}",
            )
            result["similarity_plot"] = str(image_path)
            self._log(name, step, result)
            results[name] = result
        return results

    def _log(self, name: str, step: int, result: dict) -> None:
        LOGGER.info("[%s][%d]XNorm: %f", name, step, result["xnorm"])
        LOGGER.info("[%s][%d]Accuracy-Flip: %1.5f+-%1.5f", name, step, result["accuracy"], result["accuracy_std"])
        LOGGER.info("[%s][%d]Accuracy-Highest: %1.5f", name, step, result["accuracy_highest"])
        for far, tar in result["tar_at_far"].items():
            note = result["tar_at_far_notes"][far]
            LOGGER.info("[%s][%d]TAR@FAR=%g: %s", name, step, far, f"{tar:1.5f}" if not note else f"nan ({note})")
        LOGGER.info("[%s][%d]Similarity-Overlap: %1.5f", name, step, result["similarity_overlap"])
        writer = self.summary_writer
        if writer is None:
            return
        writer.add_scalar(tag=name, scalar_value=result["accuracy"], global_step=step)
        writer.add_scalar(tag=f"{name}/xnorm", scalar_value=result["xnorm"], global_step=step)
        writer.add_scalar(tag=f"{name}/similarity_overlap", scalar_value=result["similarity_overlap"], global_step=step)
        for far, tar in result["tar_at_far"].items():
            if not math.isnan(tar):
                writer.add_scalar(tag=f"{name}/tar_at_far_{far:g}", scalar_value=tar, global_step=step)
