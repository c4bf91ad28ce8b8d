"""What long-run safety costs per training step: interval checkpoints and the stop-signal agreement.

Each rank (2 gloo CPU processes by default, or one) builds the recipe's own training state
(train.build_training_state: backbone, partial-FC head, SGD, scheduler, scaler) for --network and trains on one
fixed random batch, the backbone wrapped in DistributedDataParallel as train.py does. Variants, each timed over
--steps optimizer steps of train.optimisation_step:
    bare           the step alone, no RunStop at all
    agreement      + RunStop.after_step with checkpoint_every=0: the per-step stop-signal agreement (one
                   all-reduce of world_size int32 values; nothing on one rank), no saves
    every=K        + RunStop.after_step with checkpoint_every=K, keep_checkpoints=1: the agreement plus a
                   complete checkpoint set every K steps (each rank's file, model.pt on rank 0, the finite-
                   weights and write agreements, the removal of the previous set), written into --folder
The variants alternate within every round (the order rotates each round) so machine load hits all alike; a
variant's time is the median over rounds of the slowest rank's mean step time. The table shows ms per step and
the ratio to `bare` (and, for the saves, to `agreement`); a last line times the agreement alone (--steps calls
of StopSignals.agreed per round, the same all-reduce) against a bare step. Checkpoints are fsync'd files: their cost depends on
the disk under --folder, so run it where your runs write.

    python benchmarks/bench_checkpoint_cost.py                                  # tiny, 2 ranks
    python benchmarks/bench_checkpoint_cost.py --network mbf --every 100 20 5 --steps 40 --rounds 3
    python benchmarks/bench_checkpoint_cost.py --ranks 1 --network r18 --batch-size 32 --every 50 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "recipes/arcface_torch/configs/synthetic_unpg"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="tiny", help="backbone (tiny, mbf, r18, r50, ...)")
    parser.add_argument("--ranks", type=int, default=2, choices=(1, 2), help="gloo processes")
    parser.add_argument("--batch-size", type=int, default=32, help="images per rank per step")
    parser.add_argument("--classes", type=int, default=2000, help="class centres (sharded across ranks)")
    parser.add_argument("--every", type=int, nargs="+", default=[100, 20, 5], help="checkpoint_every values")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each runs every variant once)")
    parser.add_argument("--folder", default=None, help="where checkpoints are written (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    return parser.parse_args(argv)


def _variants(args) -> list[tuple[str, int | None]]:
    return [("bare", None), ("agreement", 0), *[(f"every={k}", k) for k in args.every]]


def _rank(rank: int, world_size: int, init_file: str, args, folder: str, results: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.distributed import DistContext
    from recipes.arcface_torch.run_stop import RunStop
    from recipes.arcface_torch.stop_signals import StopSignals
    from recipes.arcface_torch.train import build_training_state, optimisation_step

    torch.set_num_threads(args.threads)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    ctx = DistContext(rank=rank, local_rank=rank, world_size=world_size, device=torch.device("cpu"))
    base = dict(network=args.network, batch_size=args.batch_size, save_all_states=True, val_targets=[], lr=0.01)
    config = get_config(CONFIG, **base, output=folder)
    total = args.steps * args.rounds * len(_variants(args)) * 2
    state = build_training_state(config, ctx, args.classes, None, 0, total)
    model = DistributedDataParallel(state.backbone, broadcast_buffers=False) if world_size > 1 else state.backbone
    generator = torch.Generator().manual_seed(rank)
    images = torch.randn(args.batch_size, 3, 112, 112, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    timings: dict[str, list[float]] = {name: [] for name, _ in _variants(args)}
    step = 0
    with StopSignals() as signals:  # installed as train() installs them; nothing is sent
        for _ in range(2):  # warm-up, untimed
            step += 1
            optimisation_step(config, model, state, images, labels, step - 1, 0, None)
        variants = _variants(args)
        for round_index in range(args.rounds):
            order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
            for name, every in order:
                stop = None
                if every is not None:
                    run_config = get_config(CONFIG, **base, output=folder, checkpoint_every=every)
                    stop = RunStop(run_config, ctx, Path(folder), state, 10**9, 10**9, None, signals)
                if world_size > 1:
                    dist.barrier()  # collective: every rank starts the variant together
                started = time.perf_counter()
                for _ in range(args.steps):
                    optimisation_step(config, model, state, images, labels, step, 0, stop)
                    step += 1
                    if stop is not None:
                        stop.after_step(step, 0, 0)
                elapsed = torch.tensor([(time.perf_counter() - started) / args.steps])
                if world_size > 1:
                    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)  # collective: the slowest rank's mean step
                timings[name].append(float(elapsed))
        agreements = []
        for _ in range(args.rounds):  # the agreement alone, as many calls as a variant has steps
            if world_size > 1:
                dist.barrier()  # collective: every rank starts together
            started = time.perf_counter()
            for _ in range(args.steps):
                signals.agreed(ctx)  # collective: the all-reduce RunStop makes at every optimizer step
            agreements.append((time.perf_counter() - started) / args.steps)
    size = sum(p.stat().st_size for p in Path(folder).glob(f"checkpoint_step*_rank{rank}.pt"))
    report = {"timings": timings, "agreement_alone": statistics.median(agreements), "checkpoint_bytes": size}
    torch.save(report, os.path.join(results, f"rank{rank}.pt"))
    if world_size > 1:
        dist.destroy_process_group()


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or os.path.join(scratch, "run")
        Path(folder).mkdir(parents=True, exist_ok=True)
        results = os.path.join(scratch, "results")
        os.mkdir(results)
        init_file = os.path.join(scratch, "rendezvous")
        if args.ranks == 1:
            _rank(0, 1, init_file, args, folder, results)
        else:
            mp.spawn(_rank, args=(args.ranks, init_file, args, folder, results), nprocs=args.ranks, join=True)
        report = torch.load(os.path.join(results, "rank0.pt"), weights_only=False)
    timings = {name: statistics.median(values) for name, values in report["timings"].items()}
    megabytes = report["checkpoint_bytes"] / 2**20
    print(
        f"network={args.network} ranks={args.ranks} batch={args.batch_size}/rank classes={args.classes} "
        f"steps={args.steps} x rounds={args.rounds} threads={args.threads}; "
        f"checkpoint file per rank {megabytes:.1f} MiB (+ model.pt on rank 0)"
    )
    print(f"{'variant':<12} {'ms/step':>9} {'vs bare':>8} {'vs agreement':>13}")
    for name, value in timings.items():
        against = f"{value / timings['agreement']:.3f}" if name.startswith("every") else ""
        print(f"{name:<12} {value * 1e3:>9.2f} {value / timings['bare']:>8.3f} {against:>13}")
    alone = report["agreement_alone"]
    print(
        f"the agreement alone: {alone * 1e3:.3f} ms per call = {alone / timings['bare']:.5f} of a bare step "
        f"(median over rounds of rank 0's mean)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
