"""Fine-tuning runs end to end: frozen BatchNorm, frozen-backbone epochs, per-group LRs, kill and resume."""

import math
import os
import signal
import subprocess
import time

import pytest
import torch

from recipes.arcface_torch import train as train_module
from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.checkpoint import load_checkpoint
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.train import train
from tests.support import DEMO, REPO_ROOT
from tests.support.checkpoints import checkpoint_files, newest_checkpoint
from tests.support.small_runs import small_config
from tests.support.torchrun import ENV, torchrun_command, torchrun_train

BN_TYPES = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)


@pytest.fixture(scope="module")
def start_model(tmp_path_factory):
    """A TinyFaceNet model.pt whose BatchNorm statistics and affine parameters are not the defaults."""
    torch.manual_seed(7)
    model = get_model("tiny", num_features=32)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BN_TYPES):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.weight.uniform_(0.9, 1.1)
                module.bias.uniform_(-0.05, 0.05)
                module.num_batches_tracked.fill_(500)
    path = tmp_path_factory.mktemp("start") / "model.pt"
    torch.save(model.state_dict(), path)
    return path


def finetune_config(output, start_model, **overrides):
    """The shared small run (10 batches per epoch) on 20 new identities, every class centre sampled, from
    `start_model` with an imprinted head."""
    settings = dict(
        sample_rate=1.0,
        init_backbone=str(start_model),
        init_head="imprint",
        synthetic={"num_identities": 20, "images_per_identity": 8, "identity_offset": 3000, "preset": "hard"},
    )
    return small_config(output, **{**settings, **overrides})


def load_model(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def batchnorm_keys(network="tiny") -> set[str]:
    model = get_model(network, num_features=32)
    return {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, BN_TYPES)
        for key in module.state_dict()
    }


def parameter_keys() -> set[str]:
    return {name for name, _ in get_model("tiny", num_features=32).named_parameters()}


@pytest.mark.slow
def test_frozen_batchnorm_keeps_statistics_and_affine_parameters_bit_identical(tmp_path, start_model):
    """Across an epoch boundary (model.train() again) and mid-run verification (eval, then train(True))."""
    config = finetune_config(
        tmp_path / "frozen_bn",
        start_model,
        bn_mode="frozen",
        max_steps=12,
        val_targets=["synthetic"],
        verbose=5,
        synthetic={"val_identities": 10, "val_pairs": 20},
    )
    train(config)
    start, end = load_model(start_model), load_model(tmp_path / "frozen_bn" / "model.pt")
    bn = batchnorm_keys()
    assert len(bn) == 50  # 10 BatchNorm layers x 5 tensors
    assert [key for key in bn if not torch.equal(start[key], end[key])] == []
    others = parameter_keys() - bn
    assert all(not torch.equal(start[key], end[key]) for key in others)  # convolutions, PReLU, fc moved
    groups = load_checkpoint(newest_checkpoint(tmp_path / "frozen_bn"))["state_optimizer"]["param_groups"]
    assert len(groups[0]["params"]) == len(others)  # BatchNorm's affine parameters are not in the optimizer


@pytest.mark.slow
def test_frozen_backbone_epochs_leave_the_backbone_as_loaded_then_train_it(tmp_path, start_model):
    output = tmp_path / "freeze"
    train(finetune_config(output, start_model, freeze_backbone_epochs=1, max_steps=10))  # epoch 0: frozen
    start, after_freeze = load_model(start_model), load_model(output / "model.pt")
    parameters, bn = parameter_keys(), batchnorm_keys()
    assert [key for key in parameters if not torch.equal(start[key], after_freeze[key])] == []  # no step, no decay
    running = {key for key in bn if key.endswith("running_mean")}
    assert all(not torch.equal(start[key], after_freeze[key]) for key in running)  # bn_mode "train": stats follow
    state = load_checkpoint(newest_checkpoint(output))
    backbone_ids = state["state_optimizer"]["param_groups"][0]["params"]
    assert not set(backbone_ids) & set(state["state_optimizer"]["state"])  # no momentum buffers either
    head_start = load_checkpoint(newest_checkpoint(output))["state_dict_softmax_fc"]["weight"]

    train(finetune_config(output, start_model, freeze_backbone_epochs=1, max_steps=20, resume=True))
    trained = load_model(output / "model.pt")
    assert all(not torch.equal(after_freeze[key], trained[key]) for key in parameters - {"features.weight"})
    head_end = load_checkpoint(newest_checkpoint(output))["state_dict_softmax_fc"]["weight"]
    assert not torch.equal(head_start, head_end)


def schedule(base: float, warmup: int, total: int, step: int) -> float:
    """Upstream's PolynomialLRWarmup (power 1) at scheduler step `step`, written out."""
    step = min(step, total)
    if step == 0:
        return base
    if step <= warmup:
        return base * step / warmup
    return base * (1 - (step - warmup) / (total - warmup))


@pytest.mark.slow
def test_each_group_trains_at_lr_times_its_scale_times_the_schedule_also_after_resume(
    tmp_path, start_model, monkeypatch
):
    seen = []
    real_step = train_module.optimisation_step

    def recording_step(config, model, state, images, labels, step, epoch, stop):
        seen.append((step, [group["lr"] for group in state.optimizer.param_groups]))
        return real_step(config, model, state, images, labels, step, epoch, stop)

    monkeypatch.setattr(train_module, "optimisation_step", recording_step)
    options = dict(backbone_lr_scale=0.1, warmup_epoch=1, max_steps=7)
    train(finetune_config(tmp_path / "lr", start_model, **options))
    train(finetune_config(tmp_path / "lr", start_model, **{**options, "max_steps": 16, "resume": True}))
    assert [step for step, _ in seen] == list(range(16))
    for step, (backbone_lr, head_lr) in seen:  # 10 batches per epoch: warmup 10, total 30 scheduler steps
        assert math.isclose(backbone_lr, 0.05 * 0.1 * schedule(1.0, 10, 30, step), rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(head_lr, 0.05 * schedule(1.0, 10, 30, step), rel_tol=1e-12, abs_tol=1e-15)
    base_lrs = load_checkpoint(newest_checkpoint(tmp_path / "lr"))["state_lr_scheduler"]["base_lrs"]
    assert base_lrs == pytest.approx([0.005, 0.05], rel=1e-12)


def finetune_command(output, start_model, max_steps: int, resume: bool = False) -> list[str]:
    settings = {
        "output": str(output),
        "num_workers": 0,
        "batch_size": 16,
        "num_epoch": 3,
        "frequent": 2,
        "val_targets": [],
        "embedding_size": 32,
        "lr": 0.05,
        "sample_rate": 0.5,
        "init_backbone": str(start_model),
        "init_head": "imprint",
        "backbone_lr_scale": 0.5,
        "freeze_backbone_epochs": 1,
        "max_steps": max_steps,
        "resume": resume,
        "synthetic": {"num_identities": 20, "images_per_identity": 8, "identity_offset": 3000},
    }
    command = torchrun_command(1, settings)
    return [command[0], "recipes/arcface_torch/train.py", *command[command.index(DEMO) :]]  # plain python, 1 rank


@pytest.mark.slow
def test_a_killed_finetune_run_resumes_to_the_uninterrupted_run_bit_for_bit(tmp_path, start_model):
    """SIGKILL after the first epoch's checkpoint; the resumed run loads nothing else (the start model is gone)."""
    straight = subprocess.run(
        finetune_command(tmp_path / "straight", start_model, 30), cwd=REPO_ROOT, env=ENV, capture_output=True, text=True
    )
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "imprinted 20 class centres from 160 images" in straight.stdout

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        finetune_command(killed_dir, start_model, 30),
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while (
        not (killed_dir.is_dir() and checkpoint_files(killed_dir)) and process.poll() is None and time.time() < deadline
    ):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_file = newest_checkpoint(killed_dir)
    killed_at = load_checkpoint(killed_file)["global_step"]
    assert killed_at in (10, 20), killed_at  # killed mid-run, at an epoch's checkpoint

    moved = start_model.with_name("moved.pt")
    start_model.rename(moved)  # resume must not need the start model
    try:
        resumed = subprocess.run(
            finetune_command(killed_dir, start_model, 30, resume=True),
            cwd=REPO_ROOT,
            env=ENV,
            capture_output=True,
            text=True,
        )
    finally:
        moved.rename(start_model)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {killed_file} at step {killed_at}" in resumed.stdout
    assert "imprinted" not in resumed.stdout and "initialised" not in resumed.stdout
    a, b = load_model(tmp_path / "straight" / "model.pt"), load_model(killed_dir / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    head_a = load_checkpoint(newest_checkpoint(tmp_path / "straight"))
    head_b = load_checkpoint(newest_checkpoint(killed_dir))
    assert head_a["global_step"] == head_b["global_step"] == 30
    assert torch.equal(head_a["state_dict_softmax_fc"]["weight"], head_b["state_dict_softmax_fc"]["weight"])


@pytest.mark.slow
def test_torchrun_two_ranks_imprint_every_class_once(tmp_path, start_model):
    settings = {
        "output": str(tmp_path / "ddp"),
        "max_steps": 3,
        "num_workers": 0,
        "batch_size": 8,
        "val_targets": [],
        "embedding_size": 32,
        "init_backbone": str(start_model),
        "init_head": "imprint",
        "bn_mode": "frozen",
        "synthetic": {"num_identities": 21, "images_per_identity": 4, "identity_offset": 3000},
    }
    result = torchrun_train(2, settings)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imprinted 21 class centres from 84 images" in result.stdout  # each rank embedded its 42
    for rank in (0, 1):
        assert load_checkpoint(tmp_path / "ddp" / f"checkpoint_step{3:08d}_rank{rank}.pt")["global_step"] == 3


def test_imprint_needs_a_backbone(tmp_path):
    with pytest.raises(ConfigError, match=r"init_head='imprint' needs a trained backbone .* set init_backbone"):
        get_config(DEMO, init_head="imprint", output=str(tmp_path))


@pytest.mark.parametrize(
    "key, value, pattern",
    [
        ("bn_mode", "eval", r"bn_mode='eval' must be 'train' \(upstream\) or 'frozen'"),
        ("backbone_lr_scale", -0.1, r"backbone_lr_scale=-0.1 must be a number >= 0"),
        ("freeze_backbone_epochs", 1.5, r"freeze_backbone_epochs=1.5 must be an integer >= 0"),
        ("init_head", "zeros", r"init_head='zeros' must be 'random' \(upstream\) or 'imprint'"),
    ],
)
def test_finetune_keys_are_validated(tmp_path, key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        get_config(DEMO, **{key: value, "output": str(tmp_path)})


def test_synthetic_identity_offset_renders_other_people_and_stays_clear_of_the_held_out_ones(tmp_path):
    from recipes.arcface_torch.datasets.build import build_train_dataset

    base = dict(output=str(tmp_path), synthetic={"num_identities": 20, "images_per_identity": 2})
    first = build_train_dataset(get_config(DEMO, **base))
    moved = build_train_dataset(get_config(DEMO, **{**base, "synthetic": {**base["synthetic"], "identity_offset": 20}}))
    first.flip = moved.flip = False
    assert moved.identity_offset == 20 and not torch.equal(first[0][0], moved[0][0])
    reference = type(first)(40, 2, seed=first.seed, flip=False)
    assert torch.equal(moved[0][0], reference[40][0])  # class 0 of the moved set is identity 20 (sample 0)
    too_far = {**base, "synthetic": {**base["synthetic"], "identity_offset": 999_990}}
    with pytest.raises(ValueError, match=r"identity_offset=999990 with 20 identities reaches the held-out"):
        build_train_dataset(get_config(DEMO, **too_far))


@pytest.mark.slow
def test_resume_auto_initialises_an_empty_folder_and_resumes_a_started_one_without_the_start_model(
    tmp_path, start_model, capsys
):
    """One command for a requeued fine-tune job: the first start imprints, the restart only resumes."""
    output = tmp_path / "auto"
    train(finetune_config(output, start_model, resume="auto", max_steps=10))
    first = capsys.readouterr().out
    assert "backbone initialised from" in first and "imprinted 20 class centres" in first
    moved = start_model.with_name("moved_auto.pt")
    start_model.rename(moved)  # a restart must not need the start model
    try:
        result = train(finetune_config(output, start_model, resume="auto", max_steps=14))
    finally:
        moved.rename(start_model)
    second = capsys.readouterr().out
    assert f"resumed from {output / 'checkpoint_step00000010_rank0.pt'} at step 10" in second
    assert "initialised" not in second and "imprinted" not in second
    assert result["step"] == 14
