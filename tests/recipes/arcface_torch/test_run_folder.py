"""The run folder: a run is never overwritten by accident, two runs never write one folder at once."""

import os
import socket
import subprocess
import sys

import pytest

from recipes.arcface_torch.config import get_config
from recipes.arcface_torch.run_folder import LOCK_NAME, RunFolderError, RunFolderLock, check_run_folder
from recipes.arcface_torch.train import main, train
from tests.support import DEMO


def tiny(output, **overrides):
    settings = dict(
        output=str(output),
        num_workers=0,
        batch_size=8,
        num_epoch=1,
        max_steps=2,
        frequent=1,
        val_targets=[],
        embedding_size=16,
        synthetic={"num_identities": 6, "images_per_identity": 4},
    )
    settings.update(overrides)
    return get_config(DEMO, **settings)


def test_lock_names_holder_and_is_released(tmp_path):
    lock = RunFolderLock(tmp_path)
    lock.acquire()
    assert (tmp_path / LOCK_NAME).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    second = RunFolderLock(tmp_path)
    with pytest.raises(
        RunFolderError, match=rf"is in use by process {os.getpid()} on this host \(lock file .*train.lock\)"
    ):
        second.acquire()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    second.acquire()
    second.release()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    (tmp_path / LOCK_NAME).write_text(f"{dead_pid} {socket.gethostname()}\n")
    lock = RunFolderLock(tmp_path)
    lock.acquire()
    assert lock.taken_over == f"pid {dead_pid} on {socket.gethostname()}"
    lock.release()


def test_lock_from_another_host_is_refused_with_the_way_out(tmp_path):
    (tmp_path / LOCK_NAME).write_text("123 some-other-host\n")
    with pytest.raises(RunFolderError, match="in use by process 123 on host some-other-host .* delete the lock file"):
        RunFolderLock(tmp_path).acquire()


def test_folder_holding_a_run_needs_resume_or_force(tmp_path):
    check_run_folder(tmp_path / "new", resume=False, force=False)  # missing folder: fine
    (tmp_path / LOCK_NAME).write_text("1 h\n")
    check_run_folder(tmp_path, resume=False, force=False)  # only a lock: fine
    (tmp_path / "model.pt").write_bytes(b"weights")
    with pytest.raises(RunFolderError, match=r"already holds a run \(model.pt\); set resume=True .* or pass --force"):
        check_run_folder(tmp_path, resume=False, force=False)
    check_run_folder(tmp_path, resume=True, force=False)
    check_run_folder(tmp_path, resume=False, force=True)


@pytest.mark.slow
def test_second_run_into_the_same_folder_is_refused_and_loses_nothing(tmp_path, capsys):
    output = tmp_path / "run"
    train(tiny(output))
    before = (output / "model.pt").read_bytes()
    assert main([DEMO, "--set", f"output={output}", "--set", "val_targets=[]"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--force" in err
    assert (output / "model.pt").read_bytes() == before
    assert not (output / LOCK_NAME).exists()  # released on the error path too
    assert train(tiny(output), force=True)["step"] == 2
    assert not (output / LOCK_NAME).exists()
