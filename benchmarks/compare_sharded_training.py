"""Train the embedded config with torchrun on 4 CPU gloo ranks twice -- sharded UNPG and replicated UNPG, same
seed -- and print the logged loss of both step for step (only the head's summation order differs).

    python benchmarks/compare_sharded_training.py [--steps 12] [--ranks 4] [--lr 0.01] [--set unpg.filter=False] [--json out.json] [--log out.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "recipes/arcface_torch/configs/synthetic_unpg"
LOSS_LINE = re.compile(r"Loss (\S+) .*Global Step: (\d+)")


def train(
    sharded: bool, steps: int, ranks: int, output: Path, port: int, lr: float | None, extra: list[str]
) -> dict[int, float]:
    """One torchrun training; -> {step: logged loss} from rank 0's progress lines (one per step)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={ranks}",
        f"--master_port={port}",
        "recipes/arcface_torch/train.py",
        CONFIG,
        "--set",
        f"output={output}",
        "--set",
        f"max_steps={steps}",
        "--set",
        "frequent=1",
        "--set",
        "num_workers=0",
        "--set",
        "batch_size=8",
        "--set",
        "val_targets=[]",
        "--set",
        "embedding_size=32",
        "--set",
        f"unpg.sharded={sharded}",
        "--set",
        "synthetic={'num_identities': 40, 'images_per_identity': 8}",
    ]
    if lr is not None:
        command += ["--set", f"lr={lr}"]
    for setting in extra:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"torchrun with unpg.sharded={sharded} failed: {result.stderr.strip().splitlines()[-1:]}")
    return {int(step): float(loss) for loss, step in LOSS_LINE.findall(result.stdout)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--lr", type=float, help="learning rate (default: the config's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--json", help="write {'sharded': {step: loss}, 'replicated': {...}} here")
    parser.add_argument("--log", help="also write the printed table here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        losses = {
            name: train(name == "sharded", args.steps, args.ranks, Path(tmp) / name, port, args.lr, args.set)
            for name, port in (("sharded", 29561), ("replicated", 29562))
        }
    lines = [
        f"torchrun --nproc_per_node={args.ranks} (gloo, CPU), {CONFIG}: tiny backbone, embedding 32, "
        f"8 per rank (B = {8 * args.ranks}), 40 identities, lr {args.lr or 'of the config'}, seed from the config"
        f"{''.join(', ' + s for s in args.set)}; loss as logged (4 decimals)",
        "| step | sharded UNPG | replicated UNPG | difference |",
        "|---:|---:|---:|---:|",
    ]
    for step in sorted(losses["replicated"]):
        a, b = losses["sharded"].get(step), losses["replicated"][step]
        lines.append(
            f"| {step} | {a:.4f} | {b:.4f} | {a - b:+.4f} |" if a is not None else f"| {step} | - | {b:.4f} | - |"
        )
    text = "\n".join(lines)
    print(text)
    if args.log:
        Path(args.log).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(losses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
