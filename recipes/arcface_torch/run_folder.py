"""The output folder of a run: never overwrite another run by accident, never let two runs write it at once.

    lock = RunFolderLock(output); lock.acquire()     # writes output/train.lock = "<pid> <host>", or raises
    check_run_folder(output, resume=False, force=False)   # a folder that already holds a run needs resume or --force
    ...; lock.release()                               # also on errors (train() calls it in `finally`)

A lock whose holder is a process on this host that no longer exists is stale: it is taken over with a warning.
So is a lock left by an earlier run of the same SLURM job (same SLURM_JOB_ID, a lower SLURM_RESTART_COUNT: the
job was requeued, and SLURM ends a job's processes before it requeues it), on whichever host it ran. Any other
lock from another host cannot be checked from here: the error says how to remove it once that run is gone.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .checkpoint import holds_checkpoints

LOCK_NAME = "train.lock"


class RunFolderError(RuntimeError):
    """The output folder holds another run, or another process is writing it."""


def _slurm_run() -> tuple[str, int] | None:
    """(job id, restart count) of the SLURM job this process belongs to, None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        return job, int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return job, 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunFolderLock:
    """An exclusive lock file in the output folder naming the holder's pid and host."""

    def __init__(self, output: str | Path):
        self.path = Path(output) / LOCK_NAME
        self.held = False
        self.taken_over: str | None = None  # the stale holder replaced by acquire(), for the log

    def _read_holder(self) -> tuple[int, str, tuple[str, int] | None] | None:
        """(pid, host, (SLURM job id, restart count) or None) of the lock's holder."""
        try:
            pid, host, *rest = self.path.read_text().split()
            slurm = None
            if rest and rest[0].startswith("slurm="):
                job, _, restart = rest[0][len("slurm=") :].partition(".")
                slurm = (job, int(restart or 0))
            return int(pid), host, slurm
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        slurm = _slurm_run()
        me = f"{os.getpid()} {socket.gethostname()}" + (f" slurm={slurm[0]}.{slurm[1]}" if slurm else "") + "\n"
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                if holder is None:
                    raise RunFolderError(
                        f"{self.path} exists but cannot be read; if no run uses {self.path.parent}, "
                        f"delete the lock file and start again"
                    ) from None
                pid, host, held_by_job = holder
                if host == socket.gethostname() and not _process_exists(pid):
                    self.taken_over = f"pid {pid} on {host}"
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                if slurm and held_by_job and held_by_job[0] == slurm[0] and held_by_job[1] < slurm[1]:
                    self.taken_over = f"pid {pid} on {host}, an earlier run of SLURM job {slurm[0]}"
                    self.path.unlink(missing_ok=True)  # stale: SLURM ended that run before requeueing the job
                    continue
                where = "this host" if host == socket.gethostname() else f"host {host}"
                raise RunFolderError(
                    f"{self.path.parent} is in use by process {pid} on {where} (lock file {self.path}); "
                    f"wait for that run, choose another config.output, or delete the lock file if "
                    f"that process is gone"
                ) from None
            with os.fdopen(handle, "w") as file:
                file.write(me)
            self.held = True
            return
        raise RunFolderError(
            f"{self.path} keeps reappearing; another run is starting in {self.path.parent}: "
            f"choose another config.output"
        )

    def release(self) -> None:
        if self.held:
            holder = self._read_holder()
            if holder is not None and holder[0] == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False


def check_run_folder(output: str | Path, resume: bool | str, force: bool) -> None:
    """A new run (resume False) needs an output folder that does not exist or holds nothing but our lock.
    resume="auto" resumes a folder that holds a checkpoint and starts over in one that holds none, unless that
    folder holds a trained model.pt (a finished run that saved no checkpoint): that one needs --force."""
    output = Path(output)
    if force or not output.is_dir():
        return
    if resume == "auto":
        if not holds_checkpoints(output) and (output / "model.pt").is_file():
            raise RunFolderError(
                f"config.output={str(output)!r} holds a model.pt but no checkpoint to resume from, so "
                f"resume='auto' would train over it; choose another output folder, or pass --force to train over it"
            )
        return
    if resume:
        return
    entries = sorted(entry.name for entry in output.iterdir() if entry.name != LOCK_NAME)
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise RunFolderError(
            f"config.output={str(output)!r} already holds a run ({shown}); set resume=True to continue "
            f"it, choose another output folder, or pass --force to train over it"
        )
