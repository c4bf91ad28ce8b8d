"""Nothing hangs: a rank that stops answering ends the job within config.dist_timeout, naming that rank;
a check that fails on one rank stops every rank."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from recipes.arcface_torch.distributed import DistContext, RankError, agree
from tests.support import REPO_ROOT
from tests.support.checkpoints import newest_checkpoint
from tests.support.distributed_harness import run_on_ranks
from tests.support.small_runs import train_on_rank
from tests.support.torchrun import ENV, rank_processes, torchrun_command, torchrun_train

ROOT = REPO_ROOT


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_stopped_rank_ends_the_job_within_dist_timeout_naming_it(tmp_path):
    output = tmp_path / "stall"
    settings = {"output": str(output), "num_epoch": 200, "num_workers": 0, "batch_size": 4, "val_targets": []}
    settings |= {"frequent": 1, "dist_timeout": 6, "synthetic": {"num_identities": 8, "images_per_identity": 2}}
    command = torchrun_command(2, settings)
    launcher = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = []
    try:
        log = output / "training.log"
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and "Global Step: 3 " in log.read_text()):
            time.sleep(0.2)
        assert log.exists(), "training never started"
        stopped = rank_processes(launcher.pid, 1)
        assert len(stopped) == 1, stopped
        os.kill(stopped[0], signal.SIGSTOP)  # rank 1 stops answering, as a hung or swapped-out process would
        started = time.time()
        _, err = launcher.communicate(timeout=120)
        elapsed = time.time() - started
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode != 0
    assert elapsed < 60  # dist_timeout=6 s, not torch's 30 minutes
    lines = [line for line in err.splitlines() if line.startswith("error (rank 0)")]
    assert lines, err[-3000:]
    assert "rank 1 (last started step" in lines[0] and "did not answer within dist_timeout=6s" in lines[0]


def _agree_worker(rank, world_size):
    ctx = DistContext(rank=rank, local_rank=rank, world_size=world_size, device=dist.get_backend() and None)
    try:
        agree(ctx, ValueError("the dataset folder is missing on this host") if rank == 1 else None)
    except (RankError, ValueError) as error:
        return type(error).__name__, str(error)
    return None


@pytest.mark.slow
def test_a_check_failing_on_one_rank_stops_every_rank():
    results = run_on_ranks(_agree_worker, 2)
    assert results[0] == ("RankError", "rank 1: the dataset folder is missing on this host")
    assert results[1] == ("ValueError", "the dataset folder is missing on this host")


@pytest.mark.slow
def test_an_error_on_one_rank_stops_the_whole_job_without_waiting_for_the_timeout(tmp_path):
    """One corrupt image, read by whichever rank's shard holds it: that rank exits with one line, and the other
    rank, waiting in a collective, is stopped long before dist_timeout."""
    from recipes.arcface_torch.cli.synthetic_to_rec import main as synthetic_to_rec

    data = tmp_path / "rec"
    assert (
        synthetic_to_rec(
            [
                str(data),
                "--set",
                "synthetic.num_identities=12",
                "--set",
                "synthetic.images_per_identity=6",
                "--set",
                "synthetic.val_identities=10",
                "--set",
                "synthetic.val_pairs=20",
                "--quiet",
            ]
        )
        == 0
    )
    offsets = dict(line.split("\t") for line in (data / "train.idx").read_text().split("\n") if line)
    with open(data / "train.rec", "r+b") as rec:
        rec.seek(int(offsets["1"]) + 8 + 24)  # record magic and length, then the image header: the JPEG starts here
        rec.write(b"\0\0\0\0")  # no JPEG start marker: this one image cannot be decoded
    settings = {"rec": str(data), "output": str(tmp_path / "out"), "num_epoch": 50, "num_workers": 0}
    settings |= {"batch_size": 8, "val_targets": [], "embedding_size": 16, "dist_timeout": 300}
    started = time.time()
    result = torchrun_train(2, settings, timeout=280)
    elapsed = time.time() - started
    assert result.returncode != 0
    assert elapsed < 150  # the other rank did not sit out dist_timeout=300 s
    lines = [line for line in result.stderr.splitlines() if line.startswith("error (rank ")]
    causes = [line for line in lines if "key 1: could not decode the image" in line]
    assert len(causes) == 1, result.stderr[-3000:]
    failed = causes[0].split(")")[0].removeprefix("error (rank ")
    for line in lines:  # every other rank ends with its own line naming the rank that failed
        assert line in causes or f"rank {failed} (last started step" in line and "left the job" in line, line


@pytest.mark.slow
def test_resume_refuses_rank_checkpoints_that_disagree(tmp_path):
    from recipes.arcface_torch.checkpoint import atomic_torch_save, load_checkpoint

    output = str(tmp_path / "two")
    assert run_on_ranks(train_on_rank, 2, output, {"max_steps": 2}) == [2, 2]
    rank1 = newest_checkpoint(tmp_path / "two", 1)
    state = load_checkpoint(rank1)
    state["global_step"] = 3  # a file that claims another position than its set's (copied in from elsewhere)
    atomic_torch_save(state, rank1)
    results = run_on_ranks(train_on_rank, 2, output, {"max_steps": 4, "resume": True})
    for name, message in results:
        assert name == "TrainingError"
        assert message.startswith(
            "rank checkpoints disagree on (step, epoch, batch): rank 0 (2, 0, 2), rank 1 (3, 0, 2)"
        )
