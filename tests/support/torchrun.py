"""Run recipes/arcface_torch/train.py under torchrun (CPU, gloo) with --set overrides, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from . import DEMO, REPO_ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread per rank


def torchrun_command(ranks: int, settings: dict, config: str = DEMO) -> list[str]:
    """torchrun --standalone (a free rendezvous port, so runs never collide) with `ranks` processes; `settings`
    become `--set key=value` (strings as given, other values through repr). Run it in REPO_ROOT with ENV."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    command += ["recipes/arcface_torch/train.py", config]
    for key, value in settings.items():
        command += ["--set", f"{key}={value if isinstance(value, str) else repr(value)}"]
    return command


def torchrun_train(ranks: int, settings: dict, config: str = DEMO, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run torchrun_command to the end, output captured."""
    command = torchrun_command(ranks, settings, config)
    return subprocess.run(command, cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def rank_processes(parent_pid: int, rank: int) -> list[int]:
    """Descendant processes of `parent_pid` whose environment holds RANK=<rank> (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID" in b" ".join(environ):
            ppid = int(stat[1])
            if ppid == parent_pid or _is_descendant(ppid, parent_pid):
                found.append(int(entry.name))
    return found


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


def rank_process(launcher_pid: int, rank: int) -> int:
    """The pid of rank `rank`'s training process: torchrun's own child (its DataLoader workers are that
    process's children and carry the same RANK)."""
    found = []
    for pid in rank_processes(launcher_pid, rank):
        try:
            ppid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == launcher_pid:
            found.append(pid)
    assert len(found) == 1, f"rank {rank} processes under {launcher_pid}: {found}"
    return found[0]
