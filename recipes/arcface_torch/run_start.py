"""Where a run starts: from random weights, from a checkpoint of the same run (resume), or from a backbone of
another run (init_backbone, with a random or imprinted head).

One decision, made in one place before DistributedDataParallel wraps the backbone. `start_run` returns the
RunPosition training continues from. Resume always wins: with `config.resume` every rank loads its own file of the
newest complete checkpoint set (checkpoint_sets.py) after all ranks agree they can (same world size, same position,
unchanged run-defining config keys unless allowed), and nothing is re-loaded or re-initialised; an initialised run
resumes like any other. `config.resume = "auto"` does the same when the output folder holds a checkpoint and starts
a new run when it holds none, so a requeued or restarted job runs the same command. A new run with
`config.init_backbone` loads the backbone strictly on every rank (backbone_init.py) and, with init_head = "imprint",
imprints the class centres from it (head_imprint.py); errors on any rank stop every rank.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch.distributed as dist

from .backbone_init import load_init_backbone
from .checkpoint import CheckpointError, check_checkpoint_keys, checkpoint_path, find_single_checkpoint, load_checkpoint
from .checkpoint_sets import gather_inventory
from .distributed import agree
from .head_imprint import class_sums, imprint_from_sums
from .training_state import RunPosition, TrainingError, TrainingState

# config keys that define a run: changing one between a checkpoint and its resume is refused unless allowed
RUN_DEFINING_KEYS = (
    "network",
    "embedding_size",
    "margin_list",
    "scale",
    "margin_gradient",
    "sample_rate",
    "interclass_filtering_threshold",
    "loss",
    "optimizer",
    "lr",
    "lr_power",
    "momentum",
    "weight_decay",
    "batch_size",
    "gradient_acc",
    "clip_grad_norm",
    "num_epoch",
    "warmup_epoch",
    "num_image",
    "rec",
    "seed",
    "fp16",
    "amp_dtype",
    "init_backbone",
    "init_head",
    "backbone_lr_scale",
    "freeze_backbone_epochs",
    "bn_mode",
)


def changed_run_keys(current: dict, saved: dict) -> list[str]:
    """'key old -> new' for every run-defining key whose value differs from the saved config.json
    (`current` as config.json records it: the config with the resolved num_image)."""
    changes = []
    for key in RUN_DEFINING_KEYS:
        if key not in saved:
            continue
        old, new = saved[key], current[key]
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            changes.append(f"{key} {old!r} -> {new!r}")
    return changes


def start_run(
    config, current: dict, ctx, output: Path, state: TrainingState, allow_config_change: bool, logger, dataset=None
) -> RunPosition:
    """The position training starts from: step 0 for a new run, the checkpoint's position on resume.
    `current` is the config as config.json records it (with the resolved num_image); `dataset` is the training
    set (imprinting embeds it)."""
    if config.resume:
        position = resume(config, current, ctx, output, state, allow_config_change, logger)
        if position is not None:
            return position
    if config.init_backbone:
        initialise(config, ctx, state, dataset, logger)
    return RunPosition()


def initialise(config, ctx, state: TrainingState, dataset, logger) -> None:
    """A new run from another run's backbone: load it on every rank, then imprint the head if asked."""
    problem, source = None, None
    try:
        source = load_init_backbone(config, state.backbone)
    except CheckpointError as error:
        problem = error
    agree(ctx, problem)
    logger.info(f"backbone initialised from {source} ({config.network}, embedding_size {config.embedding_size})")
    if config.freeze_backbone_epochs or config.backbone_lr_scale != 1.0 or config.bn_mode != "train":
        logger.info(
            f"fine-tuning: backbone LR lr x {config.backbone_lr_scale:g}, frozen for the first "
            f"{config.freeze_backbone_epochs} epoch(s), BatchNorm {config.bn_mode}"
        )
    if config.init_head != "imprint":
        return
    started, problem, sums, images = time.time(), None, None, 0
    try:
        sums, images = class_sums(
            state.backbone,
            dataset,
            state.head.num_classes,
            state.head.embedding_size,
            ctx.rank,
            ctx.world_size,
            config.batch_size,
            config.num_workers,
            state.head.weight.device,
            progress=ctx.is_main,
        )
    except (ValueError, OSError) as error:  # a bad label or an unreadable image, on any rank
        problem = error
    agree(ctx, problem)
    report = imprint_from_sums(state.head, sums, images, started)
    empty = (
        f"; {report.empty} class(es) had no image and keep the random init (num_classes > the dataset's classes?)"
        if report.empty
        else ""
    )
    logger.info(
        f"imprinted {report.imprinted} class centres from {report.images} images in {report.seconds:.1f} s{empty}"
    )


def checkpoint_to_resume(output: Path, ctx, auto: bool) -> Path | None:
    """This rank's file of the newest checkpoint set every rank holds; else (no step sets at all) an earlier
    version's or upstream's single file; None when `auto` and no rank holds any checkpoint (a new run).
    Collective; every rank reaches the same decision (a rank without its file raises FileNotFoundError)."""
    inventory = gather_inventory(output, ctx)
    complete = inventory.complete_steps()
    if complete:
        return checkpoint_path(output, ctx.rank, complete[-1])
    if any(inventory.steps):
        raise TrainingError(
            f"no checkpoint set in {output} is complete on all {ctx.world_size} ranks ({inventory.describe()}); "
            f"a save was interrupted or another number of ranks wrote them: resume with the ranks that wrote "
            f"them, or restore one step's files for every rank"
        )
    if auto and inventory.empty:
        return None
    return find_single_checkpoint(output, ctx.rank)


def resume(
    config, current: dict, ctx, output: Path, state: TrainingState, allow_config_change: bool, logger
) -> RunPosition | None:
    """Load this rank's checkpoint (ours or upstream's) after every rank agrees it can; None (a new run) with
    resume="auto" and no checkpoint anywhere."""
    problem, saved, path = None, None, None
    try:
        path = checkpoint_to_resume(output, ctx, auto=config.resume == "auto")
        if path is None:
            logger.info(f"resume='auto': no checkpoint in {output}; starting a new run")
            return None
        saved = load_checkpoint(path)
        check_checkpoint_keys(saved, path)
        written_by = saved.get("world_size", len(list(output.glob("checkpoint_gpu_*.pt"))) or None)
        if written_by is not None and written_by != ctx.world_size:
            problem = TrainingError(
                f"{path} was written by {written_by} ranks but this run has {ctx.world_size}; the class "
                f"centres are sharded per rank, so resume with {written_by} processes (reshard the "
                f"centres to change it)"
            )
    except (FileNotFoundError, CheckpointError, TrainingError) as error:
        problem = error
    if problem is None and ctx.is_main and (output / "config.json").is_file():
        changes = changed_run_keys(current, json.loads((output / "config.json").read_text()))
        if changes and not allow_config_change:
            problem = TrainingError(
                f"the config changed since the checkpoint ({'; '.join(changes)}); restore those values, "
                f"or pass --allow-config-change to continue the run with the new ones"
            )
        elif changes:
            logger.warning(f"resuming with changed config values: {'; '.join(changes)}")
    agree(ctx, problem)

    position = [int(saved["global_step"]), int(saved["epoch"]), int(saved.get("next_batch", 0))]
    positions = [position] * ctx.world_size
    if ctx.world_size > 1:
        dist.all_gather_object(positions, position)  # collective: every rank's (step, epoch, batch)
    if any(p != positions[0] for p in positions):
        raise TrainingError(
            f"rank checkpoints disagree on (step, epoch, batch): "
            f"{', '.join(f'rank {r} {tuple(p)}' for r, p in enumerate(positions))}; a save was interrupted, "
            f"restore one consistent set of checkpoint files"
        )
    state.restore(saved, path, config.lr)
    step, epoch, batch = position
    exact = "" if "next_batch" in saved else " (an upstream checkpoint: at its epoch boundary)"
    logger.info(f"resumed from {path} at step {step} (epoch {epoch}, batch {batch}){exact}")
    return RunPosition(step, epoch, batch, resumed=True)
