"""Process-group set-up from the environment torchrun provides; plain `python` means one process, no group.

Nothing hangs: collectives time out after `config.dist_timeout` seconds (torch's default is 30 minutes), each
rank posts the step it starts on the group's store so that a timeout can name the ranks that stopped
answering, and checks made before training are agreed on by every rank so that an error on one rank
stops them all instead of leaving the others waiting in a collective. A heartbeat thread per rank tells a
rank that stopped (SIGSTOP, killed, hung) from ranks that merely wait for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

HEARTBEAT_INTERVAL_S = 1.0


class RankError(RuntimeError):
    """Another rank failed or stopped answering; the message names it."""


@dataclass
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    timeout_s: float = 300.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(timeout_s: float = 300.0) -> DistContext:
    """nccl on CUDA, gloo on CPU; initialises a group whenever torchrun launched this process (also for one
    rank, as upstream does), none for a plain `python train.py`.
    `timeout_s` bounds every collective (a group created by the caller keeps its own timeout)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ  # torchrun sets both
    if launched and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout_s),
        )
    elif dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device, timeout_s=timeout_s)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


def post_progress(ctx: DistContext, step: int) -> None:
    """Record on the group's store that this rank starts global step `step` (one small store write)."""
    if ctx.world_size > 1 and (store := _store()) is not None:
        store.set(f"arcface_progress/{ctx.rank}", str(step))


class Heartbeat:
    """A daemon thread that bumps this rank's counter on the group's store every `interval_s` seconds.
    It keeps beating while the rank waits in a collective; it stops when the process is stopped, killed or
    hung in native code, which is how a timeout tells the rank that stopped from the ranks that waited.

    Leaving the `with` block joins the thread. A thread left running could be inside store.set (C++, the GIL
    released) when the interpreter exits; returning into Python then ends the thread with a forced unwind
    through C++ frames, std::terminate ("terminate called without an active exception") and SIGABRT."""

    def __init__(self, ctx: DistContext, interval_s: float = HEARTBEAT_INTERVAL_S):
        self.ctx, self.interval_s = ctx, interval_s
        self.store = _store() if ctx.world_size > 1 else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arcface-heartbeat", daemon=True)

    def _run(self) -> None:
        beats = 0
        while not self._stop.is_set():
            beats += 1
            try:
                self.store.set(f"arcface_heartbeat/{self.ctx.rank}", str(beats))
            except RuntimeError:  # the store is gone: the job is ending
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Heartbeat:
        if self.store is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.ctx.timeout_s)  # a store call in flight is bounded by the store's timeout


def _read(store, key: str) -> str | None:
    try:
        return store.get(key).decode() if store.check([key]) else None
    except RuntimeError:  # the store itself is gone with its host
        return None


def silent_ranks(ctx: DistContext, wait_s: float = 2.5 * HEARTBEAT_INTERVAL_S) -> list[tuple[int, str | None]]:
    """(rank, last step it started) for every other rank whose heartbeat did not move during `wait_s`."""
    store = _store()
    if store is None:
        return []
    others = [rank for rank in range(ctx.world_size) if rank != ctx.rank]
    before = {rank: _read(store, f"arcface_heartbeat/{rank}") for rank in others}
    time.sleep(wait_s)
    after = {rank: _read(store, f"arcface_heartbeat/{rank}") for rank in others}
    return [
        (rank, _read(store, f"arcface_progress/{rank}"))
        for rank in others
        if after[rank] is None or after[rank] == before[rank]
    ]


def explain_collective_failure(ctx: DistContext, step: int, error: BaseException) -> RankError:
    """A RankError naming the ranks that stopped answering while this rank waited at global step `step`."""
    silent = silent_ranks(ctx)
    if silent:
        who = ", ".join(
            f"rank {rank} (last started step {last}, no heartbeat)"
            if last is not None
            else f"rank {rank} (never started a step, no heartbeat)"
            for rank, last in silent
        )
    else:
        who = "another rank (it failed or was stopped; see its log)"
    text = str(error).lower()
    if any(marker in text for marker in ("connection closed", "connection reset", "broken pipe")):
        how = "left the job (its connection closed: it failed or was killed, see its own error line)"
    else:
        how = f"did not answer within dist_timeout={ctx.timeout_s:g}s"
    return RankError(
        f"rank {ctx.rank} stopped at step {step}: {who} {how} ({str(error).splitlines()[0][:200]}); "
        f"the job stops, resume from the last checkpoint"
    )


def agree(ctx: DistContext, error: BaseException | None) -> None:
    """Every rank passes its own error (or None). A rank with an error raises it; if only other ranks have one,
    this rank raises RankError naming the first of them. Collective: all_gather_object of one string per rank."""
    if ctx.world_size == 1 or not dist.is_initialized():
        if error is not None:
            raise error
        return
    messages: list[str | None] = [None] * ctx.world_size
    dist.all_gather_object(messages, None if error is None else str(error))  # collective: every rank's verdict
    if error is not None:
        raise error
    failed = [(rank, text) for rank, text in enumerate(messages) if text]
    if failed:
        rank, text = failed[0]
        raise RankError(f"rank {rank}: {text}")
