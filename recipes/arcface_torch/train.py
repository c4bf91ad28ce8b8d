"""Train a face-recognition backbone with the partial-FC recipe (arcface_torch conventions).

    # one process (CPU, or one GPU)
    python recipes/arcface_torch/train.py recipes/arcface_torch/configs/synthetic_unpg
    # 2 CPU ranks (gloo), or one rank per GPU (nccl) -- the same code
    torchrun --nproc_per_node=2 recipes/arcface_torch/train.py recipes/arcface_torch/configs/synthetic_unpg
    # override config keys from the command line
    python recipes/arcface_torch/train.py configs/synthetic_unpg --set loss=margin_softmax --set max_steps=50

The output folder (config.output, default work_dirs/<config name>) receives config.json, model.pt
(plain backbone state_dict, loadable by upstream arcface_torch), checkpoint_step<N>_rank<r>.pt (with
save_all_states: upstream's checkpoint keys plus exact mid-epoch resume state; at epoch ends and every
checkpoint_every steps, the keep_checkpoints newest sets kept), training.log and tensorboard/. A folder that
already holds a run needs resume=True (or "auto") or --force; train.lock keeps a second run out while one is
writing. SIGTERM or SIGUSR1 stops every rank at the next step with a checkpoint and exit code 0; resume="auto"
continues from it with the same command (docs/long_runs.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from recipes.arcface_torch.atomic_file import write_bytes_atomically
from recipes.arcface_torch.backbone_training import backbone_frozen, backbone_parameter_group, embed
from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.checkpoint import CheckpointError
from recipes.arcface_torch.config import ConfigError, config_warnings, get_config, nest, parse_override
from recipes.arcface_torch.datasets.build import build_train_dataset, build_train_loader, build_val_sets
from recipes.arcface_torch.distributed import (
    Heartbeat,
    RankError,
    agree,
    cleanup_distributed,
    explain_collective_failure,
    post_progress,
    setup_distributed,
)
from recipes.arcface_torch.evaluation.callback import VerificationCallback
from recipes.arcface_torch.losses import build_head
from recipes.arcface_torch.lr_scheduler import PolynomialLRWarmup
from recipes.arcface_torch.registry import RegistryError
from recipes.arcface_torch.run_folder import RunFolderError, RunFolderLock, check_run_folder
from recipes.arcface_torch.run_start import start_run
from recipes.arcface_torch.run_stop import RunStop
from recipes.arcface_torch.stop_signals import StopSignals, error_prefix
from recipes.arcface_torch.training_log import AverageMeter, ProgressLogger, setup_logging
from recipes.arcface_torch.training_state import TrainingError, TrainingState
from recipes.arcface_torch.unrecognisable_faces import refresh_unrecognisable_centres

_COLLECTIVE_FAILURE = ("timed out", "timeout", "connection closed by peer", "connection reset", "broken pipe", "nccl")


def configure_cpu_threads(config, device: torch.device, world_size: int) -> int | None:
    """On CPU, unless OMP_NUM_THREADS is set, give each rank its share of the cores minus one for the
    DataLoader workers: oversubscribed OpenMP threads make every op wait on descheduled threads."""
    if device.type != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    threads = max(1, (os.cpu_count() or 1) // local_ranks - (1 if config.num_workers > 0 else 0))
    torch.set_num_threads(threads)
    return threads


def build_optimizer(config, params):
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def resolve_num_classes(config, dataset) -> int:
    found = int(dataset.num_classes)
    if config.num_classes and config.num_classes < found:
        raise ConfigError(
            f"config.num_classes={config.num_classes} but the dataset has {found} classes; "
            f"set num_classes to {found} (or 0 to read it from the dataset)"
        )
    return int(config.num_classes or found)


def resolve_amp_dtype(config, device: torch.device) -> torch.dtype | None:
    """The backbone's autocast type: None without fp16; "auto" is float16 on CUDA and bfloat16 on CPU."""
    if not config.fp16:
        return None
    if config.amp_dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return getattr(torch, config.amp_dtype)


def schedule_steps(config, num_image: int, world_size: int) -> tuple[int, int]:
    """(warmup, total) scheduler steps, counted in batches as upstream's train_v2 does:
    num_image // (batch_size * world_size) * warmup_epoch and * num_epoch."""
    per_epoch = num_image // (config.batch_size * world_size)
    return per_epoch * config.warmup_epoch, per_epoch * config.num_epoch


def write_run_config(config, path: Path, **extra) -> None:
    record = {key: value for key, value in config.items()}
    record.update(extra)
    write_bytes_atomically(path, json.dumps(record, indent=2, default=list).encode())


def _is_collective_failure(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in _COLLECTIVE_FAILURE)


def train(config, force: bool = False, allow_config_change: bool = False) -> dict:
    """Run (or resume) the training described by `config`; returns the final step, losses and verification.
    force: train into an output folder that already holds a run; allow_config_change: resume although
    run-defining keys (lr, batch size, ...) changed since the checkpoint."""
    ctx = setup_distributed(config.dist_timeout)
    output = Path(config.output)
    lock = RunFolderLock(output) if ctx.is_main else None
    try:
        with StopSignals() as signals:  # SIGTERM / SIGUSR1 from here on: save and stop at the next step
            problem = None
            if lock is not None:
                try:
                    lock.acquire()
                    check_run_folder(output, config.resume, force)
                except RunFolderError as error:
                    problem = error
            agree(ctx, problem)
            return _train(config, ctx, output, lock, allow_config_change, signals)
    finally:
        if lock is not None:
            lock.release()


def _train(config, ctx, output: Path, lock, allow_config_change: bool, signals: StopSignals | None = None) -> dict:
    logger = setup_logging(output, ctx.rank)
    if lock is not None and lock.taken_over:
        logger.warning(f"took over a stale lock of {lock.taken_over} (that process no longer exists)")
    for note in config_warnings(config) if ctx.is_main else []:
        logger.warning(note)
    amp_dtype = resolve_amp_dtype(config, ctx.device)
    if amp_dtype is not None:
        logger.info(f"fp16: backbone trunk under {str(amp_dtype).replace('torch.', '')} autocast, head in float32")
    threads = configure_cpu_threads(config, ctx.device, ctx.world_size)
    if threads is not None:
        logger.info(f"CPU: {threads} compute thread(s) per rank (set OMP_NUM_THREADS to choose)")

    dataset = build_train_dataset(config)
    num_classes = resolve_num_classes(config, dataset)
    val_sets = build_val_sets(config, warn=logger.warning) if ctx.is_main else []
    loader, sampler = build_train_loader(dataset, config, ctx.rank, ctx.world_size, ctx.device)
    batches_per_epoch = sampler.batches_per_epoch
    num_image = int(config.num_image or len(dataset))
    warmup_steps, total_steps = schedule_steps(config, num_image, ctx.world_size)
    if total_steps < 1:
        raise ConfigError(
            f"num_image={num_image} gives no full global batch of {config.batch_size} x {ctx.world_size} "
            f"ranks; lower batch_size or set num_image to the dataset size (0 reads it)"
        )
    run_steps = batches_per_epoch * config.num_epoch
    last_step = min(run_steps, config.max_steps) if config.max_steps else run_steps

    state = build_training_state(config, ctx, num_classes, amp_dtype, warmup_steps, total_steps)
    backbone, head = state.backbone, state.head
    current = {**config, "num_image": num_image}
    position = start_run(config, current, ctx, output, state, allow_config_change, logger, dataset)
    model = DistributedDataParallel(backbone, broadcast_buffers=False) if ctx.world_size > 1 else backbone
    if ctx.is_main and (not position.resumed or allow_config_change):  # a resumed run keeps its config.json
        write_run_config(
            config,
            output / "config.json",
            num_classes=num_classes,
            num_image=num_image,
            world_size=ctx.world_size,
            total_steps=total_steps,
        )
    stop = RunStop(config, ctx, output, state, last_step, batches_per_epoch, position, signals)

    writer = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(output / "tensorboard"))
    verification = VerificationCallback(val_sets, config.verbose, output, summary_writer=writer, rank=ctx.rank)
    step, epoch, start_batch = position.step, position.epoch, position.batch
    progress = ProgressLogger(config.frequent, last_step, config.batch_size * ctx.world_size, step, logger, writer)
    loss_meter, loss_history, results = AverageMeter(), [], {}
    group = f" ({dist.get_backend()} group)" if dist.is_initialized() else ""
    logger.info(
        f"{config.config_name}: {config.network} + {config.loss} (margins {tuple(config.margin_list)}, s={config.scale}), "
        f"{num_classes} classes, {len(dataset)} images, {ctx.world_size} rank(s) on {ctx.device}{group}, "
        f"{batches_per_epoch} batches/epoch, {last_step} steps (LR schedule: {warmup_steps} warmup, {total_steps} total)"
    )

    try:
        with Heartbeat(ctx):  # lets a timeout tell the rank that stopped from the ranks that waited
            while step < last_step and epoch < config.num_epoch:
                sampler.set_epoch(epoch, start_batch)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)  # new flips every epoch, a function of (seed, epoch, index)
                head.set_epoch(epoch)  # losses that start at an epoch (USS) learn it here
                if start_batch == 0:  # a run resumed mid-epoch has the epoch's centre in its checkpoint
                    refresh_unrecognisable_centres(
                        head, backbone, dataset, epoch, config.seed, ctx.rank, ctx.world_size, ctx.device
                    )
                model.train()
                for batch, (images, labels) in enumerate(loader, start=start_batch):
                    post_progress(ctx, step + 1)
                    head.collect_diagnostics = (step + 1) % config.frequent == 0
                    images, labels = images.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
                    loss_value = optimisation_step(config, model, state, images, labels, step, epoch, stop)
                    step += 1
                    loss_meter.update(loss_value)
                    loss_history.append((step, loss_value))
                    progress(
                        step,
                        epoch,
                        loss_meter,
                        state.scheduler.get_last_lr()[1],  # the head's: config.lr x schedule
                        state.scaler.get_scale() if state.scaler.is_enabled() else None,
                        head.last_diagnostics if step % config.frequent == 0 else {},
                    )
                    results = verification(step, backbone) or results
                    if stop.after_step(step, epoch, batch):
                        break
                else:
                    epoch, start_batch = epoch + 1, 0
                    stop.at_epoch_end(step, epoch)
                    continue
                break
            stopped = stop.finish(step, epoch)  # None, or the line saying which stop signal ended the run here
    except RuntimeError as error:
        if ctx.world_size > 1 and not isinstance(error, (TrainingError, RankError)) and _is_collective_failure(error):
            raise explain_collective_failure(ctx, step + 1, error) from error
        raise

    if stopped is None:  # a stopped run leaves its grace period to the save, not to a verification
        results = verification(step, backbone, force=True) or results
        logger.info(f"finished at step {step}; model saved to {output / 'model.pt'}")
    if writer is not None:
        writer.close()
    return {
        "step": step,
        "loss_history": loss_history,
        "verification": results,
        "output": str(output),
        "stopped": stopped,
    }


def build_training_state(config, ctx, num_classes: int, amp_dtype, warmup_steps: int, total_steps: int):
    """The backbone (identical initialisation on every rank), this rank's fp32 head, optimizer, scheduler, scaler."""
    torch.manual_seed(config.seed)  # identical backbone initialisation on every rank
    backbone = get_model(
        config.network,
        dropout=config.dropout,
        fp16=amp_dtype is not None,
        num_features=config.embedding_size,
        amp_dtype=amp_dtype,
    ).to(ctx.device)
    torch.manual_seed(config.seed + ctx.rank)
    head = build_head(config, num_classes, fp16=False).to(ctx.device)  # fp32 head, as upstream's train_v2
    optimizer = build_optimizer(config, [backbone_parameter_group(config, backbone), *head.parameter_groups()])
    scheduler = PolynomialLRWarmup(optimizer, warmup_steps, total_steps, power=config.lr_power)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=amp_dtype == torch.float16, growth_interval=100)
    return TrainingState(backbone, head, optimizer, scheduler, scaler)


def optimisation_step(config, model, state: TrainingState, images, labels, step: int, epoch: int, stop) -> float:
    """Forward, backward and (every gradient_acc batches) one optimizer step, then the per-batch scheduler
    step, as upstream's train_v2; returns the batch's loss. A non-finite loss stops the run with nothing saved."""
    embeddings = embed(model, state.backbone, images, backbone_frozen(config, epoch))  # autocasts its own trunk
    loss = state.head(embeddings.float(), labels)
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        kept = (
            f"the last good checkpoint {stop.checkpoint_file} is kept"
            if stop.checkpoint_file.exists()
            else "no checkpoint was written"
        )
        raise TrainingError(
            f"loss is {loss_value} at step {step + 1} (epoch {epoch}); training stopped and {kept}; "
            f"lower config.lr, keep clip_grad_norm > 0 or check the data"
        )
    optimizer, scaler = state.optimizer, state.scaler
    scaler.scale(loss / config.gradient_acc).backward()
    if (step + 1) % config.gradient_acc == 0:  # upstream: one optimizer step per gradient_acc batches
        scaler.unscale_(optimizer)
        if config.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(state.backbone.parameters(), config.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():  # with gradient_acc > 1 torch warns that no optimizer step came first
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        state.scheduler.step()  # every batch, as upstream's train_v2
    return loss_value


def first_cause(error: BaseException) -> str:
    """One line for a user-facing error; an error re-raised from a DataLoader worker shows its original last line."""
    text = str(error)
    if "Original Traceback" in text:  # DataLoader worker: the original exception is the last line
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = re.sub(r"^(?:\w+\.)*[A-Z]\w*(?:Error|Exception): ", "", lines[-1]) if lines else text
    return " ".join(text.split())


def main(argv=None) -> int:
    from recipes.arcface_torch.cli.train import build_parser

    return run_parsed(build_parser().parse_args(argv))


def run_parsed(args) -> int:
    """Train with the parsed command line (cli/train.py's parser); one line and exit status 1 on a known error."""
    try:
        config = get_config(args.config, **nest(parse_override(item) for item in args.set))
        train(config, force=args.force, allow_config_change=args.allow_config_change)
    except (
        ConfigError,
        RegistryError,
        TrainingError,
        CheckpointError,
        RunFolderError,
        RankError,
        OSError,
        ValueError,
    ) as error:
        print(error_prefix() + first_cause(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C (SIGINT): one line and the shell's code, not a traceback
        print(error_prefix() + "interrupted (SIGINT); the last complete checkpoint set is kept", file=sys.stderr)
        return 130
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
