"""Training loop: exact resume, bad-input errors that lose nothing, and a 2-rank torchrun run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plugins.partial_fc import PartialFC
from recipes.arcface_torch import checkpoint as checkpoint_module
from recipes.arcface_torch.checkpoint import atomic_torch_save, load_checkpoint
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.train import TrainingError, main, train

ROOT = Path(__file__).resolve().parents[1]
DEMO = "recipes/arcface_torch/configs/synthetic_unpg"


def small_config(output, **overrides):
    """20 identities x 8 images, batch 16 -> 10 batches per epoch; tiny backbone, no verification."""
    settings = dict(output=str(output), num_workers=0, batch_size=16, num_epoch=3, frequent=2, verbose=1000,
                    val_targets=[], embedding_size=32, sample_rate=0.5, lr=0.05,
                    synthetic={"num_identities": 20, "images_per_identity": 8})
    settings.update(overrides)
    return get_config(DEMO, **settings)


def test_resume_continues_the_same_run_exactly(tmp_path):
    straight = train(small_config(tmp_path / "straight", max_steps=14))
    assert straight["step"] == 14
    first = train(small_config(tmp_path / "split", max_steps=7))
    assert first["step"] == 7
    resumed = train(small_config(tmp_path / "split", max_steps=14, resume=True))  # crosses an epoch boundary
    assert resumed["step"] == 14
    assert [loss for _, loss in resumed["loss_history"]] == [loss for _, loss in straight["loss_history"][7:]]
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    head_a = load_checkpoint(tmp_path / "straight" / "checkpoint_rank0.pt")["head"]["weight"]
    head_b = load_checkpoint(tmp_path / "split" / "checkpoint_rank0.pt")["head"]["weight"]
    assert torch.equal(head_a, head_b)


def test_resume_without_checkpoint_says_how_to_start_fresh(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*set config.resume = False"):
        train(small_config(tmp_path / "empty", resume=True))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    output = tmp_path / "nan"
    train(small_config(output, max_steps=10))  # one full epoch, checkpoint at its end
    good = load_checkpoint(output / "checkpoint_rank0.pt")
    real_forward = PartialFC.forward
    calls = {"n": 0}

    def forward_turning_nan(self, embeddings, labels):
        calls["n"] += 1
        loss = real_forward(self, embeddings, labels)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(PartialFC, "forward", forward_turning_nan)
    with pytest.raises(TrainingError, match=r"loss is nan at step 13 .*last good checkpoint .* is kept"):
        train(small_config(output, max_steps=20, resume=True))
    kept = load_checkpoint(output / "checkpoint_rank0.pt")
    assert kept["step"] == good["step"] == 10
    assert torch.equal(kept["head"]["weight"], good["head"]["weight"])


def test_interrupted_checkpoint_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_rank0.pt"
    atomic_torch_save({"step": 1, "w": torch.ones(3)}, path)

    def torn_save(obj, file):
        file.write(b"partial bytes")
        raise KeyboardInterrupt("simulated crash mid-save")

    monkeypatch.setattr(checkpoint_module.torch, "save", torn_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_rank0.pt"]  # no temp file left behind


def test_too_few_classes_in_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config.num_classes=5 but the dataset has 20 classes; set num_classes to 20"):
        train(small_config(tmp_path / "classes", num_classes=5))


def test_label_outside_class_range_is_an_error():
    head = PartialFC(lambda logits, labels: logits, 4, 10)
    head.margin_softmax.s = 1.0
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, num_classes=10\)"):
        head(torch.randn(3, 4), torch.tensor([1, 10, 2]))
    with pytest.raises(ValueError, match=r"label -1 is outside"):
        head(torch.randn(3, 4), torch.tensor([1, -1, 2]))


def test_batch_larger_than_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch .* lower config.batch_size"):
        train(small_config(tmp_path / "batch", batch_size=512))


def test_cli_reports_missing_dataset_and_exits_nonzero(tmp_path, capsys):
    code = main([DEMO, "--set", f"rec={tmp_path / 'nowhere'}", "--set", f"output={tmp_path / 'out'}"])
    assert code == 1
    assert "does not exist; point it at a RecordIO folder" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoint_rank0.pt").exists()


def test_cli_reports_unknown_key(capsys):
    assert main([DEMO, "--set", "lerning_rate=0.1"]) == 1
    assert "unknown config key 'lerning_rate'" in capsys.readouterr().err


def test_torchrun_two_cpu_ranks(tmp_path):
    output = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
               "recipes/arcface_torch/train.py", DEMO, "--set", f"output={output}", "--set", "max_steps=3",
               "--set", "num_workers=0", "--set", "batch_size=8", "--set", "val_targets=[]",
               "--set", "synthetic={'num_identities': 21, 'images_per_identity': 4}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 rank(s)" in result.stdout
    for rank in (0, 1):
        state = load_checkpoint(output / f"checkpoint_rank{rank}.pt")
        assert state["step"] == 3 and state["world_size"] == 2
    # 21 classes over 2 ranks: shards of 11 and 10 centres
    assert load_checkpoint(output / "checkpoint_rank0.pt")["head"]["weight"].shape[0] == 11
    assert load_checkpoint(output / "checkpoint_rank1.pt")["head"]["weight"].shape[0] == 10


def test_cli_reports_unreadable_checkpoint(tmp_path, capsys):
    output = tmp_path / "torn"
    output.mkdir()
    (output / "checkpoint_rank0.pt").write_bytes(b"not a checkpoint")
    code = main([DEMO, "--set", f"output={output}", "--set", "resume=True", "--set", "val_targets=[]"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"checkpoint {output / 'checkpoint_rank0.pt'} cannot be read" in err and "delete it to start over" in err


@pytest.mark.slow
def test_composed_losses_with_state_resume_exactly_across_the_start_epoch(tmp_path):
    """USS (memory bank, learnable bias, on from epoch 1) + UNPG: the epoch reaches the head, the bank and the
    bias are checkpointed, the bias trains in its own group without weight decay, and resume is exact."""
    options = dict(loss=["uss", "unpg"], margin_list=(1.0, 0.0, 0.4), uss={"start_epoch": 1}, max_steps=14)
    straight = train(small_config(tmp_path / "straight", **options))
    train(small_config(tmp_path / "split", **{**options, "max_steps": 7}))
    resumed = train(small_config(tmp_path / "split", **{**options, "resume": True}))
    assert [loss for _, loss in resumed["loss_history"]] == [loss for _, loss in straight["loss_history"][7:]]
    state = load_checkpoint(tmp_path / "straight" / "checkpoint_rank0.pt")
    head = state["head"]
    assert bool(head["losses.0.initialised"]) and float(head["losses.0.bias"]) != 0.0  # USS ran in epoch 1
    assert torch.equal(head["losses.0.bank"], load_checkpoint(tmp_path / "split" / "checkpoint_rank0.pt")["head"]["losses.0.bank"])
    groups = state["optimizer"]["param_groups"]
    assert len(groups) == 3 and groups[2]["weight_decay"] == 0.0 and len(groups[2]["params"]) == 1


def test_diagnostics_line_names_each_loss():
    from recipes.arcface_torch.training_log import format_diagnostics

    line = format_diagnostics({"unpg/pairs_kept": torch.tensor(12), "uss/bias": torch.tensor(1.5),
                               "magface/margin_mean": 0.45})
    assert line == "unpg/pairs_kept 12   uss/bias 1.5000   magface/margin_mean 0.4500"
