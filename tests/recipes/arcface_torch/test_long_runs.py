"""Long runs: interval checkpoints and the sets kept, stop signals agreed by every rank, resume="auto", and every
early exit ending each rank with a message and a code. Interrupted runs are compared bit for bit with an
uninterrupted one."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from plugins.partial_fc import PartialFC
from recipes.arcface_torch import checkpoint as checkpoint_module
from recipes.arcface_torch.checkpoint import load_checkpoint
from recipes.arcface_torch.checkpoint_sets import CheckpointInventory
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.run_folder import RunFolderError, RunFolderLock, check_run_folder
from recipes.arcface_torch.stop_signals import StopSignals
from recipes.arcface_torch.train import main, train
from tests.support import DEMO, REPO_ROOT
from tests.support.checkpoints import checkpoint_files, newest_checkpoint
from tests.support.distributed_harness import run_on_ranks
from tests.support.small_runs import small_config as shared_small_config
from tests.support.small_runs import train_on_rank
from tests.support.torchrun import ENV, rank_process, torchrun_command

# ----------------------------------------------------------------------------------------------- config keys


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"checkpoint_every": -1}, "checkpoint_every=-1 must be an integer number of steps >= 0"),
        ({"keep_checkpoints": 0}, "keep_checkpoints=0 must be an integer >= 1"),
        ({"resume": "yes"}, "resume='yes' must be True, False or 'auto'"),
        ({"checkpoint_every": 3, "gradient_acc": 2}, "checkpoint_every=3 is not a multiple of gradient_acc=2"),
        ({"checkpoint_every": 100, "save_all_states": False}, "checkpoint_every=100 needs the exact resume state"),
        ({"resume": "auto", "save_all_states": False}, "resume='auto' needs the exact resume state"),
    ],
)
def test_bad_long_run_settings_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_config(DEMO, **overrides)


def test_upstream_defaults_save_at_epoch_ends_only():
    config = get_config("recipes/arcface_torch/configs/base.py")
    assert config.checkpoint_every == 0 and config.keep_checkpoints == 1 and config.resume is False
    assert get_config(DEMO, resume="auto", checkpoint_every=500).resume == "auto"


# ------------------------------------------------------------------------------------------ checkpoint sets


def test_a_set_is_complete_only_when_every_rank_holds_it():
    inventory = CheckpointInventory(steps=[[3, 6, 9], [6, 9, 12]], single=[False, False])
    assert inventory.complete_steps() == [6, 9]
    assert inventory.describe() == "rank 0 holds steps [3, 6, 9], rank 1 holds steps [6, 9, 12]"
    assert CheckpointInventory(steps=[[3], [6]], single=[False, False]).complete_steps() == []
    assert CheckpointInventory(steps=[[], []], single=[False, False]).empty
    assert not CheckpointInventory(steps=[[], []], single=[True, False]).empty


# ------------------------------------------------------------------------------------- run folder and lock


def test_resume_auto_folder_guard(tmp_path):
    check_run_folder(tmp_path / "missing", "auto", force=False)  # nothing there: a new run
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "training.log").write_text("stopped before its first checkpoint\n")
    check_run_folder(folder, "auto", force=False)  # nothing trained to lose: a new run
    (folder / "model.pt").write_bytes(b"weights")
    with pytest.raises(RunFolderError, match="holds a model.pt but no checkpoint to resume from"):
        check_run_folder(folder, "auto", force=False)
    check_run_folder(folder, "auto", force=True)
    (folder / "checkpoint_step00000012_rank0.pt").write_bytes(b"set")
    check_run_folder(folder, "auto", force=False)  # a checkpoint: resume decides


def test_a_requeued_slurm_job_takes_over_its_own_lock_from_another_host(tmp_path, monkeypatch):
    lock_file = tmp_path / "train.lock"
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    lock_file.write_text("12345 node-a-that-died slurm=4242.0\n")
    lock = RunFolderLock(tmp_path)
    lock.acquire()
    assert lock.taken_over == "pid 12345 on node-a-that-died, an earlier run of SLURM job 4242"
    assert lock_file.read_text().split()[2] == "slurm=4242.1"
    lock.release()
    lock_file.write_text("12345 node-b slurm=777.3\n")  # another job's live run
    with pytest.raises(RunFolderError, match="is in use by process 12345 on host node-b"):
        RunFolderLock(tmp_path).acquire()
    lock_file.write_text("12345 node-b slurm=4242.1\n")  # this very run of the job, started twice
    with pytest.raises(RunFolderError, match="is in use by process 12345 on host node-b"):
        RunFolderLock(tmp_path).acquire()


# ------------------------------------------------------------------------------------------- stop signals


def test_stop_signals_record_the_first_ignore_its_repeat_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals(repeat_window_s=60.0) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)  # within the window: the same request forwarded again
        time.sleep(0.05)  # let the main thread run the handlers
        assert signals.received == signal.SIGUSR1
        ctx = type("Ctx", (), {"rank": 0, "world_size": 1})()
        assert signals.agreed(ctx) == {0: "SIGUSR1"}
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_second_signal_ends_the_process_at_once_with_one_line_and_128_plus_its_number():
    script = textwrap.dedent(
        """
        import os, signal, time
        from recipes.arcface_torch.stop_signals import StopSignals
        with StopSignals(repeat_window_s=0.0):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        print("not reached")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env={**ENV, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True
    )
    assert result.returncode == 128 + signal.SIGTERM == 143
    assert result.stdout == b""
    assert result.stderr.decode() == (
        "error: a second stop signal (SIGTERM) ended the run at once, without saving; the last complete "
        "checkpoint set is kept and resume continues from it\n"
    )


def _worker_sigterm_handler(index):
    return float(
        signal.getsignal(signal.SIGTERM) == signal.SIG_IGN and signal.getsignal(signal.SIGUSR1) == signal.SIG_IGN
    )


def test_data_loading_workers_ignore_the_stop_signals():
    """torchrun signals a rank's whole process group: a worker that died of it would fail the next batch."""
    from recipes.arcface_torch.datasets.build import _seed_worker

    class Probe(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return _worker_sigterm_handler(index)

    loader = torch.utils.data.DataLoader(Probe(), batch_size=None, num_workers=1, worker_init_fn=_seed_worker)
    assert [float(value) for value in loader] == [1.0, 1.0]


def test_leaving_the_heartbeat_joins_its_thread_even_mid_store_call():
    """A heartbeat thread still inside store.set (C++, GIL released) when the interpreter exits ends in
    std::terminate and SIGABRT; leaving the `with` block must wait for it."""
    import threading

    from recipes.arcface_torch.distributed import DistContext, Heartbeat

    class SlowStore:
        def __init__(self):
            self.inside = threading.Event()

        def set(self, key, value):
            self.inside.set()
            time.sleep(0.3)

    heartbeat = Heartbeat(DistContext(rank=0, local_rank=0, world_size=2, device=torch.device("cpu")), 0.0)
    heartbeat.store = SlowStore()
    with heartbeat:
        assert heartbeat.store.inside.wait(10)
    assert not heartbeat._thread.is_alive()


# --------------------------------------------------------------------------- one process: saves and resumes


def small_config(output, **overrides):
    """The shared small run (10 batches per epoch), stopped at step 14: mid-epoch 1."""
    return shared_small_config(output, **{"max_steps": 14, **overrides})


def assert_same_files(a, b):
    """Two checkpoints (or model.pt files) hold the same tensors bit for bit and the same other values."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_files(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_files(x, y)
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted 14-step run every interrupted one is compared with."""
    output = tmp_path_factory.mktemp("straight")
    result = train(small_config(output))
    assert result["step"] == 14 and result["stopped"] is None
    return output, [loss for _, loss in result["loss_history"]]


def run_state(path) -> dict:
    """A checkpoint without the numpy and Python RNG states: training draws on neither, so they are whatever the
    process that wrote the checkpoint had (an unseeded process starts them from OS entropy)."""
    state = load_checkpoint(path)
    state["rng"] = {key: state["rng"][key] for key in ("torch", "cuda")}
    return state


def assert_same_run(output, straight_output):
    """Same final backbone, head shard, optimizer, scheduler, scaler and torch RNG state, bit for bit."""
    assert_same_files(run_state(newest_checkpoint(output)), run_state(newest_checkpoint(straight_output)))
    assert_same_files(
        torch.load(output / "model.pt", weights_only=True), torch.load(straight_output / "model.pt", weights_only=True)
    )


@pytest.mark.slow
def test_interval_checkpoints_keep_exactly_the_newest_complete_sets(tmp_path, straight):
    output = tmp_path / "interval"
    result = train(small_config(output, checkpoint_every=3, keep_checkpoints=2))
    # saves at 3, 6, 9, 10 (epoch end), 12 and 14 (the last step): the two newest stay
    assert sorted(checkpoint_files(output)) == [12, 14]
    for step, path in checkpoint_files(output).items():
        assert load_checkpoint(path)["global_step"] == step
    assert [loss for _, loss in result["loss_history"]] == straight[1]  # saving changes nothing in the run
    assert_same_run(output, straight[0])
    assert not list(output.glob(".*.tmp"))


@pytest.mark.slow
def test_resume_auto_starts_an_empty_folder_and_continues_a_consistent_one_exactly(tmp_path, straight, capsys):
    output = tmp_path / "auto"
    first = train(small_config(output, resume="auto", max_steps=7, checkpoint_every=5))
    assert first["step"] == 7
    assert "resume='auto': no checkpoint in" in capsys.readouterr().out
    assert sorted(checkpoint_files(output)) == [7]
    resumed = train(small_config(output, resume="auto", checkpoint_every=5))  # the same command again
    assert "resumed from" in capsys.readouterr().out
    assert [loss for _, loss in resumed["loss_history"]] == straight[1][7:]
    assert_same_run(output, straight[0])
    saved = newest_checkpoint(output).stat().st_mtime_ns
    again = train(small_config(output, resume="auto", checkpoint_every=5))  # requeued after it finished
    assert again["step"] == 14 and again["loss_history"] == []
    assert newest_checkpoint(output).stat().st_mtime_ns == saved  # nothing trained, nothing written again


def _signal_at_forward(monkeypatch, call: int, signum=signal.SIGTERM):
    """SIGTERM to this process during the `call`-th head forward (as a cluster would send it mid-step)."""
    real_forward = PartialFC.forward
    calls = {"n": 0}

    def forward(self, embeddings, labels):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real_forward(self, embeddings, labels)

    monkeypatch.setattr(PartialFC, "forward", forward)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_stops_and_resumes_exactly(tmp_path, straight, monkeypatch, capsys):
    output = tmp_path / "signalled"
    _signal_at_forward(monkeypatch, 5)
    stopped = train(small_config(output, resume="auto"))
    monkeypatch.undo()
    assert stopped["step"] == 5
    assert stopped["stopped"].startswith(
        "SIGTERM on rank 0: stopped at step 5 (epoch 0, next batch 5) with a complete checkpoint set"
    )
    out = capsys.readouterr().out
    assert "SIGTERM on rank 0: stopped at step 5" in out and "finished at step" not in out
    assert sorted(checkpoint_files(output)) == [5]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the run's handlers are gone with it
    resumed = train(small_config(output, resume="auto"))
    assert [loss for _, loss in resumed["loss_history"]] == straight[1][5:]
    assert_same_run(output, straight[0])


@pytest.mark.slow
def test_a_stop_signal_waits_for_the_optimizer_step_when_gradients_accumulate(tmp_path, monkeypatch):
    _signal_at_forward(monkeypatch, 5, signal.SIGUSR1)
    result = train(small_config(tmp_path / "acc", gradient_acc=2, max_steps=10))
    assert result["step"] == 6 and result["stopped"].startswith("SIGUSR1 on rank 0: stopped at step 6 ")
    assert sorted(checkpoint_files(tmp_path / "acc")) == [6]


@pytest.mark.slow
def test_a_full_disk_during_an_interval_checkpoint_keeps_the_previous_set(tmp_path, straight, monkeypatch, capsys):
    import errno

    from recipes.arcface_torch import atomic_file

    real = atomic_file.write_atomically

    def full_disk_at_step_6(path, write):
        if "step00000006" in str(path):

            def failing(stream):
                stream.write(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")

            return real(path, failing)
        return real(path, write)

    output = tmp_path / "full"
    monkeypatch.setattr(checkpoint_module, "write_atomically", full_disk_at_step_6)
    settings = ["--set", f"output={output}", "--set", "checkpoint_every=3", "--set", "max_steps=14"]
    settings += ["--set", "num_workers=0", "--set", "batch_size=16", "--set", "val_targets=[]"]
    settings += ["--set", "embedding_size=32", "--set", "sample_rate=0.5", "--set", "lr=0.05", "--set", "frequent=2"]
    settings += ["--set", "synthetic={'num_identities': 20, 'images_per_identity': 8}", "--set", "verbose=1000"]
    assert main([DEMO, *settings]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: no space left on the device while writing {output / 'checkpoint_step00000006_rank0.pt'}; "
        f"checkpoint_step00000006_rank0.pt was not written; free space there and run again\n"
    )
    monkeypatch.undo()
    assert sorted(checkpoint_files(output)) == [3]
    assert load_checkpoint(newest_checkpoint(output))["global_step"] == 3
    assert not list(output.glob(".*.tmp"))
    model = torch.load(output / "model.pt", weights_only=True)  # model.pt is the step-3 backbone too
    assert_same_files(model, load_checkpoint(newest_checkpoint(output))["state_dict_backbone"])
    assert main([DEMO, *settings, "--set", "resume='auto'"]) == 0  # space freed: the same command goes on
    assert_same_run(output, straight[0])


@pytest.mark.slow
def test_a_second_sigterm_during_the_save_exits_at_once_and_keeps_the_last_complete_set(tmp_path, straight):
    """SIGTERM at step 5 asks for a save; a second one arrives while that save is half written: the process
    ends at once with 143, the step-5 file is never published, and resume continues from step 3 exactly."""
    output = tmp_path / "twice"
    script = textwrap.dedent(
        """
        import os, signal, sys
        from plugins.partial_fc import PartialFC
        from recipes.arcface_torch import checkpoint, stop_signals
        from recipes.arcface_torch.train import main

        stop_signals.REPEAT_WINDOW_S = 0.0  # a repeat is a second signal at once
        real_forward, calls = PartialFC.forward, [0]

        def forward(self, embeddings, labels):
            calls[0] += 1
            if calls[0] == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            return real_forward(self, embeddings, labels)

        real_write = checkpoint.write_atomically

        def write(path, save):
            def interrupted(stream):
                if "step00000005" in str(path):  # the save the first SIGTERM asked for, half written
                    stream.write(b"the first bytes of a checkpoint")
                    os.kill(os.getpid(), signal.SIGTERM)
                save(stream)
            return real_write(path, interrupted)

        PartialFC.forward, checkpoint.write_atomically = forward, write
        sys.exit(main(sys.argv[1:]))
        """
    )
    settings = {"output": str(output), "checkpoint_every": 3, "max_steps": 14, "num_workers": 0, "batch_size": 16}
    settings |= {"val_targets": [], "embedding_size": 32, "sample_rate": 0.5, "lr": 0.05, "frequent": 2}
    settings |= {"verbose": 1000, "synthetic": {"num_identities": 20, "images_per_identity": 8}}
    argv = [DEMO]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value if isinstance(value, str) else repr(value)}"]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=REPO_ROOT,
        # the thread count the uninterrupted in-process run used: bit-for-bit equality needs the same reductions
        env={**ENV, "OMP_NUM_THREADS": str(torch.get_num_threads()), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 143, result.stderr[-2000:]
    assert result.stderr.endswith(
        "error: a second stop signal (SIGTERM) ended the run at once, without saving; "
        "the last complete checkpoint set is kept and resume continues from it\n"
    )
    assert sorted(checkpoint_files(output)) == [3]
    resumed = train(small_config(output, resume="auto", checkpoint_every=3))
    assert [step for step, _ in resumed["loss_history"]][0] == 4
    assert [loss for _, loss in resumed["loss_history"]] == straight[1][3:]
    assert_same_run(output, straight[0])


# ------------------------------------------------------------------------------------ two ranks (gloo)


@pytest.mark.slow
def test_resume_uses_the_newest_set_complete_on_every_rank_and_refuses_when_there_is_none(tmp_path):
    output = tmp_path / "sets"
    every_step = {"checkpoint_every": 1, "keep_checkpoints": 2}
    assert run_on_ranks(train_on_rank, 2, str(output), {"max_steps": 2, **every_step}) == [2, 2]
    assert sorted(checkpoint_files(output, 0)) == sorted(checkpoint_files(output, 1)) == [1, 2]
    checkpoint_files(output, 0)[2].unlink()  # rank 0's save of step 2 never finished
    resumed = run_on_ranks(train_on_rank, 2, str(output), {"max_steps": 3, "resume": "auto", **every_step})
    assert resumed == [3, 3]
    assert sorted(checkpoint_files(output, 0)) == sorted(checkpoint_files(output, 1)) == [2, 3]  # orphan rewritten
    checkpoint_files(output, 0)[3].unlink()
    checkpoint_files(output, 1)[2].unlink()  # rank 0 holds step 2 only, rank 1 step 3 only
    for resume in (True, "auto"):
        results = run_on_ranks(train_on_rank, 2, str(output), {"max_steps": 4, "resume": resume, **every_step})
        for name, message in results:
            assert name == "TrainingError"
            assert message.startswith(
                f"no checkpoint set in {output} is complete on all 2 ranks "
                f"(rank 0 holds steps [2], rank 1 holds steps [3]); a save was interrupted"
            )
    assert sorted(checkpoint_files(output, 0)) == [2] and sorted(checkpoint_files(output, 1)) == [3]  # untouched


# ----------------------------------------------------------------------- two ranks under torchrun (signals)

TORCHRUN_RUN = {
    "num_workers": 1,  # a DataLoader worker in each rank's process group, as on a cluster
    "batch_size": 4,
    "num_epoch": 3,  # 48 images / (4 x 2 ranks) = 6 batches an epoch, 18 steps
    "frequent": 1,
    "val_targets": [],
    "embedding_size": 16,
    "checkpoint_every": 2,
    "keep_checkpoints": 2,
    "dist_timeout": 60,
    "synthetic": {"num_identities": 12, "images_per_identity": 4},
}
LAST_STEP = 18


def _torchrun(output, **extra):
    return torchrun_command(2, {**TORCHRUN_RUN, "output": str(output), **extra})


def _run_to_end(output, **extra):
    result = subprocess.run(_torchrun(output, **extra), cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _launch_and_hit_rank_1(output, send, after_step: int):
    """Start a 2-rank run, wait until rank 0 logged `after_step`, call send(pid of rank 1), wait for the end."""
    launcher = subprocess.Popen(
        _torchrun(output), cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        log = output / "training.log"
        deadline = time.time() + 300
        while time.time() < deadline and not (log.exists() and f"Global Step: {after_step} " in log.read_text()):
            if launcher.poll() is not None:  # the run ended before the step: say how, not "no rank 1 process"
                out, err = launcher.communicate()
                raise AssertionError(
                    f"the run ended with code {launcher.returncode} before step {after_step}: {err[-3000:]}"
                )
            time.sleep(0.1)
        assert log.exists(), "training never started"
        send(rank_process(launcher.pid, 1))
        started = time.time()
        out, err = launcher.communicate(timeout=300)
        return launcher.returncode, out, err, time.time() - started
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


def _same_final_state(output, reference):
    for rank in (0, 1):
        assert_same_files(run_state(newest_checkpoint(output, rank)), run_state(newest_checkpoint(reference, rank)))
    assert_same_files(
        torch.load(output / "model.pt", weights_only=True), torch.load(reference / "model.pt", weights_only=True)
    )


def _logged_losses(output) -> dict[int, float]:
    """{step: loss} from the run's TensorBoard events (float32, as logged every step with frequent=1); a step
    logged again after a restart keeps its last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(output / "tensorboard"))
    events.Reload()
    return {event.step: event.value for event in events.Scalars("loss")}


@pytest.fixture(scope="module")
def torchrun_reference(tmp_path_factory):
    output = tmp_path_factory.mktemp("torchrun_reference")
    _run_to_end(output)
    assert sorted(checkpoint_files(output, 0)) == sorted(checkpoint_files(output, 1)) == [16, 18]
    return output


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="finds the rank's process through /proc")
def test_sigterm_to_one_rank_stops_both_with_a_checkpoint_and_resume_matches_the_uninterrupted_run(
    tmp_path, torchrun_reference
):
    output = tmp_path / "preempted"
    # as torchrun forwards a signal: to rank 1's whole process group, its DataLoader worker included
    code, out, err, _ = _launch_and_hit_rank_1(output, lambda pid: os.killpg(pid, signal.SIGTERM), after_step=2)
    assert code == 0, err[-3000:]
    stop_lines = [line for line in out.splitlines() if "SIGTERM on rank 1: stopped at step" in line]
    assert len(stop_lines) == 1, out[-3000:]
    stop_step = int(stop_lines[0].split("stopped at step ")[1].split()[0])
    assert 2 < stop_step < LAST_STEP
    assert max(checkpoint_files(output, 0)) == max(checkpoint_files(output, 1)) == stop_step
    assert not [line for line in err.splitlines() if line.startswith("error")] and "Traceback" not in err, err[-3000:]
    _run_to_end(output, resume="auto")  # the requeued job: the same command
    _same_final_state(output, torchrun_reference)
    assert _logged_losses(output) == _logged_losses(torchrun_reference)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_other_naming_it_and_resume_from_the_last_interval_set_matches(
    tmp_path, torchrun_reference
):
    output = tmp_path / "lost"
    code, _, err, elapsed = _launch_and_hit_rank_1(output, lambda pid: os.kill(pid, signal.SIGKILL), after_step=5)
    assert code != 0
    assert elapsed < TORCHRUN_RUN["dist_timeout"]
    lines = [line for line in err.splitlines() if line.startswith("error (rank 0)")]
    assert len(lines) == 1, err[-3000:]
    assert "rank 1 (last started step" in lines[0] and "no heartbeat" in lines[0]
    assert "terminate called" not in err and "SIGABRT" not in err
    complete = sorted(set(checkpoint_files(output, 0)) & set(checkpoint_files(output, 1)))
    assert complete and complete[-1] % TORCHRUN_RUN["checkpoint_every"] == 0 and complete[-1] >= 4
    result = _run_to_end(output, resume="auto")
    assert f"at step {complete[-1]} " in result.stdout  # resumed from the last complete interval set
    _same_final_state(output, torchrun_reference)
    losses, reference = _logged_losses(output), _logged_losses(torchrun_reference)
    assert {step: losses[step] for step in range(complete[-1] + 1, LAST_STEP + 1)} == {
        step: reference[step] for step in range(complete[-1] + 1, LAST_STEP + 1)
    }
