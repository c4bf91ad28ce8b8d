"""Stop signals: SIGTERM or SIGUSR1 on any rank stops every rank at the same step, with an exact checkpoint.

Clusters end jobs with SIGTERM (SLURM at preemption or scancel, Kubernetes at eviction, torchrun forwarding what
it receives) and SLURM can send SIGUSR1 ahead of the time limit (`--signal=USR1@120`). The handler only records
the signal. At each optimizer-step boundary RunStop calls `agreed`, one all-reduce of `world_size` integers, so
every rank learns which ranks were signalled and all of them save and stop at the same step.

A repeat of the signal within REPEAT_WINDOW_S of the first is the same request arriving twice (SLURM signals
every process of a job step and torchrun forwards the signal again); a signal after that ends this process at
once, with one line on stderr and exit code 128 + the signal number (143 for SIGTERM), without saving: the last
complete checkpoint set is what the next run resumes. The handler runs when the rank is back in Python: a rank
waiting in a collective for a dead peer ends within dist_timeout in any case.

    with StopSignals() as signals:      # handlers installed, the previous ones restored on exit
        ...
        signals.agreed(ctx)             # {rank: "SIGTERM"} for every signalled rank, the same on every rank
"""

from __future__ import annotations

import os
import signal
import threading
import time

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
REPEAT_WINDOW_S = 5.0


def error_prefix() -> str:
    """ "error (rank r): " under a launcher with several ranks, else "error: " (how the CLI starts an error line)."""
    rank = os.environ.get("RANK")
    return f"error (rank {rank}): " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else "error: "


class StopSignals:
    """Records the first SIGTERM / SIGUSR1 this process receives; a later one (after REPEAT_WINDOW_S) exits at
    once. Handlers are installed only from the main thread (Python allows no other); elsewhere it records nothing."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS, repeat_window_s: float | None = None):
        self.signals = signals
        self.repeat_window_s = REPEAT_WINDOW_S if repeat_window_s is None else repeat_window_s
        self.received: signal.Signals | None = None
        self._received_at = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        now = time.monotonic()
        if self.received is None:
            self.received, self._received_at = signal.Signals(signum), now
            return
        if now - self._received_at < self.repeat_window_s:
            return  # the same request again (a launcher forwarding it)
        name = signal.Signals(signum).name
        line = (
            f"{error_prefix()}a second stop signal ({name}) ended the run at once, without saving; the last "
            f"complete checkpoint set is kept and resume continues from it\n"
        )
        os.write(2, line.encode())  # not print(): the main thread may be inside a write to sys.stderr
        os._exit(128 + signum)

    def agreed(self, ctx) -> dict[int, str]:
        """{rank: signal name} for every rank that has received a stop signal, identical on every rank.
        Collective (one all-reduce of world_size integers) when the run has several ranks: call it on every rank
        at the same steps."""
        mine = int(self.received or 0)
        if ctx.world_size == 1 or not dist.is_initialized():
            return {ctx.rank: signal.Signals(mine).name} if mine else {}
        flags = torch.zeros(ctx.world_size, dtype=torch.int32, device=ctx.device)
        flags[ctx.rank] = mine
        dist.all_reduce(flags)  # collective: the sum of one-hot rows is every rank's signal number (0: none)
        return {rank: signal.Signals(value).name for rank, value in enumerate(flags.tolist()) if value}
