"""Train a face-recognition backbone with the partial-FC recipe (arcface_torch conventions).

    # one process (CPU, or one GPU)
    python recipes/arcface_torch/train.py recipes/arcface_torch/configs/synthetic_mbf_unpg
    # 2 CPU ranks (gloo), or one rank per GPU (nccl) -- the same code
    torchrun --nproc_per_node=2 recipes/arcface_torch/train.py recipes/arcface_torch/configs/synthetic_mbf_unpg
    # override config keys from the command line
    python recipes/arcface_torch/train.py configs/synthetic_mbf_unpg --set loss=margin_softmax --set max_steps=50

The output folder (config.output, default work_dirs/<config name>) receives config.json, model.pt
(plain backbone state_dict, loadable by upstream arcface_torch), checkpoint_rank<r>.pt (exact resume),
training.log and tensorboard/.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
from torch.nn.parallel import DistributedDataParallel

from recipes.arcface_torch.atomic_file import write_bytes_atomically
from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.checkpoint import CheckpointError, atomic_torch_save, checkpoint_path, load_checkpoint, rng_state, set_rng_state
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.datasets.build import build_train_dataset, build_train_loader, build_val_sets
from recipes.arcface_torch.distributed import cleanup_distributed, setup_distributed
from recipes.arcface_torch.evaluation.callback import VerificationCallback
from recipes.arcface_torch.losses import build_head
from recipes.arcface_torch.lr_scheduler import PolynomialLRWarmup
from recipes.arcface_torch.registry import RegistryError
from recipes.arcface_torch.training_log import AverageMeter, ProgressLogger, setup_logging


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, mismatched resume state)."""


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
        raise ConfigError(f"config.num_classes={config.num_classes} but the dataset has {found} classes; "
                          f"set num_classes to {found} (or 0 to read it from the dataset)")
    return int(config.num_classes or found)


def write_run_config(config, path: Path, **extra) -> None:
    record = {key: value for key, value in config.items()}
    record.update(extra)
    write_bytes_atomically(path, json.dumps(record, indent=2, default=list).encode())


def train(config) -> dict:
    """Run (or resume) the training described by `config`; returns the final step, losses and verification."""
    ctx = setup_distributed()
    output = Path(config.output)
    logger = setup_logging(output, ctx.rank)
    amp = bool(config.fp16) and ctx.device.type == "cuda"
    if config.fp16 and not amp:
        logger.warning("config.fp16 is ignored on CPU: training runs in fp32")
    threads = configure_cpu_threads(config, ctx.device, ctx.world_size)
    if threads is not None:
        logger.info(f"CPU: {threads} compute thread(s) per rank (set OMP_NUM_THREADS to choose)")

    dataset = build_train_dataset(config)
    num_classes = resolve_num_classes(config, dataset)
    val_sets = build_val_sets(config) if ctx.is_main else []
    loader, sampler = build_train_loader(dataset, config, ctx.rank, ctx.world_size)
    batches_per_epoch = sampler.batches_per_epoch
    total_steps = batches_per_epoch * config.num_epoch // config.gradient_acc
    warmup_steps = batches_per_epoch * config.warmup_epoch // config.gradient_acc
    last_step = min(total_steps, config.max_steps) if config.max_steps else total_steps

    torch.manual_seed(config.seed)  # identical backbone initialisation on every rank
    backbone = get_model(config.network, dropout=config.dropout, fp16=amp, num_features=config.embedding_size).to(ctx.device)
    torch.manual_seed(config.seed + ctx.rank)
    head = build_head(config, num_classes, fp16=amp).to(ctx.device)
    model = DistributedDataParallel(backbone, broadcast_buffers=False) if ctx.world_size > 1 else backbone
    optimizer = build_optimizer(config, [{"params": backbone.parameters()}, *head.parameter_groups()])
    scheduler = PolynomialLRWarmup(optimizer, warmup_steps, total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    step, epoch, start_batch = 0, 0, 0
    ckpt_file = checkpoint_path(output, ctx.rank)
    if config.resume:
        state = load_checkpoint(ckpt_file)
        if state["world_size"] != ctx.world_size:
            raise TrainingError(f"{ckpt_file} was written by {state['world_size']} ranks but this run has "
                                f"{ctx.world_size}; resume with the same number of processes")
        backbone.load_state_dict(state["backbone"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        step, epoch, start_batch = state["step"], state["epoch"], state["next_batch"]
        logger.info(f"resumed from {ckpt_file} at step {step} (epoch {epoch}, batch {start_batch})")
    elif ctx.is_main:
        output.mkdir(parents=True, exist_ok=True)
        write_run_config(config, output / "config.json", num_classes=num_classes, num_image=len(dataset),
                         world_size=ctx.world_size, total_steps=total_steps)

    def save(next_epoch: int, next_batch: int) -> None:
        if ctx.is_main:
            atomic_torch_save(backbone.state_dict(), output / "model.pt")
        if config.save_all_states:
            atomic_torch_save({
                "step": step, "epoch": next_epoch, "next_batch": next_batch, "world_size": ctx.world_size,
                "backbone": backbone.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
            }, ckpt_file)

    writer = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(output / "tensorboard"))
    verification = VerificationCallback(val_sets, config.verbose, output, summary_writer=writer, rank=ctx.rank)
    progress = ProgressLogger(config.frequent, last_step, config.batch_size * ctx.world_size, step, logger, writer)
    loss_meter, loss_history, results = AverageMeter(), [], {}
    logger.info(f"{config.config_name}: {config.network} + {config.loss} (margins {tuple(config.margin_list)}, s={config.scale}), "
                f"{num_classes} classes, {len(dataset)} images, {ctx.world_size} rank(s) on {ctx.device}, "
                f"{batches_per_epoch} batches/epoch, {total_steps} steps")

    accumulated = 0
    while step < last_step and epoch < config.num_epoch:
        sampler.set_epoch(epoch, start_batch)
        head.set_epoch(epoch)
        model.train()
        for batch, (images, labels) in enumerate(loader, start=start_batch):
            head.collect_diagnostics = (step + 1) % config.frequent == 0
            images, labels = images.to(ctx.device, non_blocking=True), labels.to(ctx.device, non_blocking=True)
            with torch.autocast(device_type=ctx.device.type, enabled=amp):
                embeddings = model(images)
            loss = head(embeddings.float(), labels)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                kept = f"the last good checkpoint {ckpt_file} is kept" if ckpt_file.exists() else "no checkpoint was written"
                raise TrainingError(f"loss is {loss_value} at step {step + 1} (epoch {epoch}); training stopped and {kept}; "
                                    f"lower config.lr, keep clip_grad_norm > 0 or check the data")
            scaler.scale(loss / config.gradient_acc).backward()
            accumulated += 1
            if accumulated < config.gradient_acc:
                continue
            accumulated = 0
            scaler.unscale_(optimizer)
            if config.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(backbone.parameters(), config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            loss_meter.update(loss_value)
            loss_history.append((step, loss_value))
            progress(step, epoch, loss_meter, optimizer.param_groups[0]["lr"], scaler.get_scale() if amp else None,
                     head.last_diagnostics if step % config.frequent == 0 else {})
            results = verification(step, backbone) or results
            if step >= last_step:
                next_epoch, next_batch = (epoch, batch + 1) if batch + 1 < batches_per_epoch else (epoch + 1, 0)
                save(next_epoch, next_batch)
                break
        else:
            epoch, start_batch = epoch + 1, 0
            if accumulated == 0:
                save(epoch, 0)
            continue
        break

    results = verification(step, backbone, force=True) or results
    if writer is not None:
        writer.close()
    logger.info(f"finished at step {step}; model saved to {output / 'model.pt'}")
    return {"step": step, "loss_history": loss_history, "verification": results, "output": str(output)}


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not KEY=VALUE; write e.g. --set loss=unpg or --set unpg.wisk=1.0")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw  # a bare word such as unpg or r50
    return key.strip(), value


def nest(pairs) -> dict:
    """[("unpg.wisk", 1.0)] -> {"unpg": {"wisk": 1.0}}"""
    tree: dict = {}
    for key, value in pairs:
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Partial-FC face recognition training (arcface_torch conventions).")
    parser.add_argument("config", help="config file, e.g. recipes/arcface_torch/configs/synthetic_mbf_unpg")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    args = parser.parse_args(argv)
    try:
        config = get_config(args.config, **nest(parse_override(item) for item in args.set))
        train(config)
    except (ConfigError, RegistryError, TrainingError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
