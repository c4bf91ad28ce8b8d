"""Training throughput (samples/s) of the recipe on CPU: margin softmax vs UNPG, per backbone and rank count.

Every run is a real `recipes/arcface_torch/train.py` process on the synthetic dataset config
(recipes/arcface_torch/configs/synthetic_unpg: 500 identities, embedding 128, s=32), with
`--set network=... --set loss=... --set batch_size=... --set max_steps=... --set frequent=F
--set val_targets=[]` and a temporary output folder; 2 ranks run under
`python -m torch.distributed.run --standalone --nproc_per_node=2` (gloo). The trainer logs a
"Speed ... samples/sec" line every F steps (global batch * F / interval time). The first interval
(DataLoader start-up, first-touch allocations) is discarded as warm-up; a run's throughput is the
measured samples divided by the measured time of the following intervals (--steps steps in all).
Defaults per network (a few steps; mbf and r18 take seconds per step on this CPU): tiny F=10, 30 steps,
4 rounds; mbf F=2, 4 steps, 2 rounds; r18 F=1, 3 steps, 2 rounds. For each (network, ranks) the two
losses alternate round by round (the order flips every round) so both see the same machine load; the
table shows the median over rounds and the ratio UNPG / margin_softmax, plus the ratio of the best
(least disturbed) runs. Note: with loss=unpg the trainer also computes the UNPG similarity statistics on
each logging step (part of what a user pays at that `frequent`).

Threads: OMP_NUM_THREADS=1 for every process by default (--threads 0: the recipe's own default, i.e.
torch's intra-op threads for one process, 1 per rank under torch.distributed.run). On a shared CPU whose
cores are also busy with the DataLoader workers, multi-threaded ops stall on descheduled OpenMP threads:
the per-step time then jumps between modes (e.g. 0.2 s and 1.5 s for the same step) and buries the
comparison.

    python benchmarks/bench_train_throughput.py                                   # mbf r18 tiny, 1 and 2 ranks
    python benchmarks/bench_train_throughput.py --networks tiny --ranks 1 --steps 20 --rounds 3
    python benchmarks/bench_train_throughput.py --networks r18 --batch-size 64 --steps 8 --threads 1
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "recipes" / "arcface_torch" / "train.py"
CONFIG = REPO / "recipes" / "arcface_torch" / "configs" / "synthetic_unpg"
LOSSES = ("margin_softmax", "unpg")
# network -> (frequent, measured steps, rounds) when --frequent / --steps / --rounds are not given
DEFAULT_SCHEDULE = {"tiny": (10, 30, 4), "mbf": (2, 4, 2), "r18": (1, 3, 2)}
FALLBACK_SCHEDULE = (1, 3, 2)
SPEED_LINE = re.compile(r"Speed ([0-9.]+) samples/sec .*Global Step: (\d+)")


class RunFailed(RuntimeError):
    pass


def schedule(network: str, args) -> tuple[int, int, int]:
    """(frequent, measured steps, rounds) for a network: the flags where given, else the per-network default."""
    frequent, steps, rounds = DEFAULT_SCHEDULE.get(network, FALLBACK_SCHEDULE)
    frequent = args.frequent or frequent
    steps = args.steps or max(steps, frequent)
    return frequent, -(-steps // frequent) * frequent, args.rounds or rounds  # whole intervals


def train_command(network: str, loss: str, ranks: int, args, output: Path) -> list[str]:
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    frequent, steps, _ = schedule(network, args)
    overrides = {
        "network": network,
        "loss": loss,
        "batch_size": args.batch_size,
        "max_steps": frequent + steps,
        "frequent": frequent,
        "val_targets": "[]",
        "verbose": 1_000_000,
        "save_all_states": False,
        "output": str(output),
    }
    if args.num_workers is not None:
        overrides["num_workers"] = args.num_workers
    command = launcher + [str(TRAIN), str(CONFIG)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    return command


def run_once(network: str, loss: str, ranks: int, args, workdir: Path, index: int) -> dict:
    """One training process (group) -> per-step speeds and the throughput after the warm-up step."""
    output = workdir / f"{network}_{loss}_{ranks}r_{index}"
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    command = train_command(network, loss, ranks, args, output)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as error:
        raise RunFailed(f"{network}/{loss}/{ranks} rank(s) ran past --timeout {args.timeout} s") from error
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise RunFailed(f"{network}/{loss}/{ranks} rank(s) exited with {done.returncode}:\n  " + "\n  ".join(tail))
    frequent = schedule(network, args)[0]
    speeds = {int(step): float(speed) for speed, step in SPEED_LINE.findall(done.stdout)}
    measured = [speeds[step] for step in sorted(speeds) if step > frequent]
    if not measured:
        raise RunFailed(
            f"{network}/{loss}/{ranks} rank(s): no Speed lines after the warm-up interval in the training log"
        )
    # samples / time over the measured intervals (each holds the same number of samples)
    throughput = len(measured) / sum(1.0 / speed for speed in measured)
    return {"speeds": measured, "throughput": throughput, "wall": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--networks", nargs="+", default=["mbf", "r18", "tiny"], help="backbones (default mbf r18 tiny)"
    )
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts (default 1 2)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="measured steps per run, after one warm-up interval (default: tiny 30, mbf 4, r18 3)",
    )
    parser.add_argument(
        "--frequent",
        type=int,
        default=None,
        help="steps per logged interval (config.frequent; default: tiny 10, mbf 2, r18 1)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="per-rank batch size (default 16)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="runs per loss, alternating the losses (default: tiny 4, mbf 2, r18 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="OMP_NUM_THREADS for every process (default 1; 0 = the recipe's default)"
    )
    parser.add_argument(
        "--num-workers", type=int, default=None, help="DataLoader workers per rank (default: the config's)"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per training run (default 600)")
    args = parser.parse_args(argv)
    if (
        any(value is not None and value < 1 for value in (args.steps, args.frequent))
        or args.batch_size < 1
        or (args.rounds is not None and args.rounds < 1)
    ):
        parser.error("--steps, --frequent, --batch-size and --rounds must be >= 1")
    if args.threads < 0:
        parser.error("--threads must be >= 0")

    plans = []
    for net in args.networks:
        frequent, steps, rounds = schedule(net, args)
        plans.append(f"{net} {steps} steps (frequent {frequent}) x {rounds} rounds")
    plan = ", ".join(plans)
    print(
        f"config {CONFIG.relative_to(REPO)}, per-rank batch {args.batch_size}; measured per run after one "
        f"warm-up interval: {plan}; threads {args.threads or 'recipe default'}; {os.cpu_count()} CPUs"
    )
    results: dict[tuple[str, int], dict[str, list[dict]]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        workdir = Path(tmp)
        for network in args.networks:
            for ranks in args.ranks:
                runs: dict[str, list[dict]] = {loss: [] for loss in LOSSES}
                for round_index in range(schedule(network, args)[2]):
                    order = LOSSES if round_index % 2 == 0 else LOSSES[::-1]
                    for loss in order:
                        try:
                            run = run_once(network, loss, ranks, args, workdir, round_index)
                        except RunFailed as error:
                            print(f"error: {error}", file=sys.stderr)
                            return 1
                        runs[loss].append(run)
                        intervals = " ".join(f"{speed:.1f}" for speed in run["speeds"])
                        print(
                            f"  {network:>5} {ranks} rank(s) {loss:>14} round {round_index + 1}: "
                            f"{run['throughput']:8.2f} samples/s (intervals: {intervals}; run {run['wall']:.0f} s wall, "
                            f"{time.perf_counter() - started:.0f} s elapsed)",
                            flush=True,
                        )
                results[(network, ranks)] = runs

    print()
    print("Training throughput, samples/s (median over rounds; warm-up interval excluded)")
    header = (
        f"{'network':>8} {'ranks':>5} {'global batch':>12} {'margin_softmax':>15} {'unpg':>10} {'unpg/margin':>12}"
        f" {'best-run ratio':>15}"
    )
    print(header)
    print("-" * len(header))
    for (network, ranks), runs in results.items():
        margin = statistics.median(run["throughput"] for run in runs["margin_softmax"])
        unpg = statistics.median(run["throughput"] for run in runs["unpg"])
        # the least-disturbed run of each loss: a second view on a machine shared with other work
        best = max(run["throughput"] for run in runs["unpg"]) / max(run["throughput"] for run in runs["margin_softmax"])
        print(
            f"{network:>8} {ranks:>5} {args.batch_size * ranks:>12} {margin:>15.2f} {unpg:>10.2f} {unpg / margin:>12.3f}"
            f" {best:>15.3f}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
