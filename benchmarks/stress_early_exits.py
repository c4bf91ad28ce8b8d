"""Every way a 2-rank run ends, repeated: each rank must end with its one-line message and a code, never a signal.

A rank that leaves a C++ thread running at interpreter exit (the heartbeat inside a store call, say) can die of
SIGABRT with "terminate called without an active exception" once in a while; one run proves nothing, so each
path runs --runs times. Every run starts 2 fresh processes joined as torchrun joins them (env://, a TCPStore on
rank 0) that call the real command line, train.main, on a tiny synthetic run, with the fault of that path
injected; the table counts each rank's exit codes and the runs in which a rank died of a signal it was not sent
(SIGABRT: code -6) or printed "terminate called".

    python benchmarks/stress_early_exits.py                      # every path, 10 runs each
    python benchmarks/stress_early_exits.py --paths refusal_positions signal_stop --runs 30

Paths (expected codes per rank):
    finish              trains to max_steps                                     0 0
    signal_stop         SIGTERM to rank 1 mid-run: both save and stop            0 0
    second_signal       rank 1 gets SIGTERM twice: it ends at once (143), rank 0 stops on the lost rank  1 143
    lost_rank           rank 1 is SIGKILLed mid-run: rank 0 ends naming it        1 -9 (killed, as asked)
    nan_loss            the loss turns NaN at step 3 on every rank                1 1
    full_disk           rank 1's interval checkpoint hits a full disk             1 1
    refusal_positions   resume with rank files that disagree on the position      1 1
    refusal_no_set      resume with no checkpoint set complete on both ranks      1 1
    refusal_config      resume with a changed run-defining key (lr)               1 1
    refusal_folder      a new run into a folder holding a run                     1 1
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = "recipes/arcface_torch/configs/synthetic_unpg"
RUN = {
    "num_workers": 0,
    "batch_size": 4,
    "num_epoch": 2,
    "val_targets": [],
    "embedding_size": 16,
    "frequent": 1,
    "dist_timeout": 60,
    "synthetic": {"num_identities": 8, "images_per_identity": 4},
}
EXPECTED = {
    "finish": (0, 0),
    "signal_stop": (0, 0),
    "second_signal": (1, 143),
    "lost_rank": (1, -9),
    "nan_loss": (1, 1),
    "full_disk": (1, 1),
    "refusal_positions": (1, 1),
    "refusal_no_set": (1, 1),
    "refusal_config": (1, 1),
    "refusal_folder": (1, 1),
}


def _argv(output: Path, **extra) -> list[str]:
    argv = [CONFIG]
    for key, value in {**RUN, "output": str(output), **extra}.items():
        argv += ["--set", f"{key}={value if isinstance(value, str) else repr(value)}"]
    return argv


def _at_forward(call: int, action) -> None:
    """Run `action(loss)` on the `call`-th head forward of this process; it returns the loss to use."""
    from plugins.partial_fc import PartialFC

    real_forward, calls = PartialFC.forward, [0]

    def forward(self, embeddings, labels):
        calls[0] += 1
        loss = real_forward(self, embeddings, labels)
        return action(loss) if calls[0] == call else loss

    PartialFC.forward = forward


def _inject(path: str, rank: int) -> None:
    """The fault of `path` on this rank, before train.main runs."""
    import signal

    from recipes.arcface_torch import checkpoint, stop_signals

    if path == "signal_stop" and rank == 1:
        _at_forward(3, lambda loss: (os.kill(os.getpid(), signal.SIGTERM), loss)[1])
    if path == "second_signal" and rank == 1:
        stop_signals.REPEAT_WINDOW_S = 0.0

        def twice(loss):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            return loss

        _at_forward(3, twice)
    if path == "lost_rank" and rank == 1:
        _at_forward(3, lambda loss: os.kill(os.getpid(), signal.SIGKILL))
    if path == "nan_loss":
        _at_forward(3, lambda loss: loss * float("nan"))
    if path == "full_disk" and rank == 1:
        real = checkpoint.write_atomically

        def full(target, write):
            if "_step00000002_" in str(target):

                def failing(stream):
                    raise OSError(errno.ENOSPC, "No space left on device")

                return real(target, failing)
            return real(target, write)

        checkpoint.write_atomically = full


def _rank_main(path: str, rank: int, port: int, output: str, log: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(handle, 1)
    os.dup2(handle, 2)  # C++'s "terminate called ..." goes here too
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    _inject(path, rank)
    from recipes.arcface_torch.train import main

    extra = {
        "finish": {"max_steps": 4},
        "signal_stop": {"max_steps": 12},
        "second_signal": {"max_steps": 12},
        "lost_rank": {"max_steps": 12},
        "nan_loss": {"max_steps": 12},
        "full_disk": {"max_steps": 12, "checkpoint_every": 2},
        "refusal_positions": {"max_steps": 4, "resume": True},
        "refusal_no_set": {"max_steps": 4, "resume": "auto"},
        "refusal_config": {"max_steps": 4, "resume": True, "lr": 0.2},
        "refusal_folder": {"max_steps": 4},
    }[path]
    sys.exit(main(_argv(Path(output), **extra)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _prepare(path: str, output: Path) -> None:
    """The run folder a refusal path starts from (made once, left unchanged by the refused runs)."""
    if not path.startswith("refusal_"):
        return
    import torch

    from recipes.arcface_torch.checkpoint import atomic_torch_save, checkpoint_path, load_checkpoint

    folder_run = _spawn("finish", output, seconds=600)
    assert folder_run[0] == (0, 0), f"preparing {path}: {folder_run}"
    if path == "refusal_positions":
        state = load_checkpoint(checkpoint_path(output, 1, 4))
        state["global_step"] = 3
        atomic_torch_save(state, checkpoint_path(output, 1, 4))
    if path == "refusal_no_set":
        state = load_checkpoint(checkpoint_path(output, 1, 4))
        torch.save(state, checkpoint_path(output, 1, 3))
        checkpoint_path(output, 1, 4).unlink()


def _spawn(path: str, output: Path, seconds: float) -> tuple[tuple[int, int], str]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    port = _free_port()
    logs = [str(output.parent / f"{output.name}.rank{rank}.log") for rank in (0, 1)]
    processes = [
        context.Process(target=_rank_main, args=(path, rank, port, str(output), logs[rank])) for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    deadline = time.time() + seconds
    for process in processes:
        process.join(max(1.0, deadline - time.time()))
        if process.is_alive():
            process.kill()
            process.join()
    text = "".join(Path(log).read_text(errors="replace") for log in logs)
    return (processes[0].exitcode, processes[1].exitcode), text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", nargs="+", default=list(EXPECTED), choices=list(EXPECTED), metavar="PATH")
    parser.add_argument("--runs", type=int, default=10, help="runs per path")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one run may take")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    print(f"{'path':<18} {'runs':>4}  {'expected':>9}  {'exit codes seen (rank 0, rank 1) x count':<42} aborts  s/run")
    failures = 0
    for path in args.paths:
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "run"
            _prepare(path, output)
            seen, aborts, started = collections.Counter(), 0, time.time()
            for _ in range(args.runs):
                work = output
                if not path.startswith("refusal_"):  # a fresh folder per run
                    work = Path(scratch) / f"run{sum(seen.values())}"
                codes, text = _spawn(path, work, args.timeout)
                seen[codes] += 1
                died = [c is None or (c < 0 and c != e) for c, e in zip(codes, EXPECTED[path], strict=True)]
                if any(died) or "terminate called" in text:
                    aborts += 1
            per_run = (time.time() - started) / args.runs
        shown = ", ".join(f"{codes} x{count}" for codes, count in sorted(seen.items(), key=str))
        failures += aborts + sum(count for codes, count in seen.items() if codes != EXPECTED[path])
        print(f"{path:<18} {args.runs:>4}  {str(EXPECTED[path]):>9}  {shown:<42} {aborts:>6}  {per_run:5.1f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
