"""How long each command-line tool takes to print --help, against a bare `python -c pass`.

Every command runs as its own process, in interleaved rounds (bare python, tool 1, tool 2, ..., then again), so a
slow moment of the machine hits all of them alike; the table gives the median wall time of each, its spread, and its
median difference to the bare interpreter of the same round (the target: within 0.3 s).

    python benchmarks/bench_cli_startup.py
    python benchmarks/bench_cli_startup.py --rounds 9 --repo /path/to/another/checkout
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the tools of this tree (a module of the cli package but its shared helpers and the training entry point); an
# older tree is timed on those of them it has
TOOLS = sorted(
    path.stem
    for path in (REPO / "recipes" / "arcface_torch" / "cli").glob("*.py")
    if path.stem not in ("__init__", "common", "train")
)


def commands(repo: Path) -> dict[str, list[str]]:
    found = {"python -c pass": [sys.executable, "-c", "pass"]}
    for tool in TOOLS:
        script = repo / "tools" / f"{tool}.py"
        if script.is_file():
            found[f"{tool} --help"] = [sys.executable, str(script), "--help"]
    if (repo / "recipes" / "arcface_torch" / "cli" / "train.py").is_file():
        found["unpg-train --help"] = [sys.executable, "-m", "recipes.arcface_torch.cli.train", "--help"]
    return found


def run_once(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument(
        "--repo", type=Path, default=REPO, help="the checkout whose tools are timed (default: this one)"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()))
    timed = commands(args.repo.resolve())
    for command in timed.values():  # warm the file cache once
        run_once(command, env)
    times: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(args.rounds):
        for name, command in timed.items():
            times[name].append(run_once(command, env))
    bare = times["python -c pass"]
    print(f"{args.rounds} interleaved rounds, {args.repo.resolve()}")
    print(f"| {'command':<24} | median s | min-max s   | minus bare python (median) |")
    print(f"|{'-' * 26}|---------:|------------:|---------------------------:|")
    for name, values in times.items():
        extra = statistics.median(value - base for value, base in zip(values, bare, strict=True))
        print(
            f"| {name:<24} | {statistics.median(values):8.3f} | {min(values):5.3f}-{max(values):5.3f} | {extra:+26.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
