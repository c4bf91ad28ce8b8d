"""Run recipes/arcface_torch/train.py under torchrun (CPU, gloo) with --set overrides, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

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
