"""Training loop: exact resume, bad-input errors that lose nothing, and a 2-rank torchrun run."""

from types import SimpleNamespace

import pytest
import torch

from plugins.partial_fc import PartialFC
from recipes.arcface_torch import checkpoint as checkpoint_module
from recipes.arcface_torch.checkpoint import atomic_torch_save, load_checkpoint
from recipes.arcface_torch.config import ConfigError
from recipes.arcface_torch.datasets.build import build_train_dataset
from recipes.arcface_torch.train import TrainingError, main, resolve_num_classes, train
from tests.support import DEMO, REPO_ROOT
from tests.support.checkpoints import newest_checkpoint
from tests.support.small_runs import small_config
from tests.support.torchrun import torchrun_train

ROOT = REPO_ROOT


@pytest.mark.slow
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
    head_a = load_checkpoint(newest_checkpoint(tmp_path / "straight"))["state_dict_softmax_fc"]["weight"]
    head_b = load_checkpoint(newest_checkpoint(tmp_path / "split"))["state_dict_softmax_fc"]["weight"]
    assert torch.equal(head_a, head_b)


def test_resume_without_checkpoint_says_how_to_start_fresh(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*set config.resume = False"):
        train(small_config(tmp_path / "empty", resume=True))


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    output = tmp_path / "nan"
    train(small_config(output, max_steps=10))  # one full epoch, checkpoint at its end
    good = load_checkpoint(newest_checkpoint(output))
    real_forward = PartialFC.forward
    calls = {"n": 0}

    def forward_turning_nan(self, embeddings, labels):
        calls["n"] += 1
        loss = real_forward(self, embeddings, labels)
        return loss * float("nan") if calls["n"] >= 3 else loss

    monkeypatch.setattr(PartialFC, "forward", forward_turning_nan)
    with pytest.raises(TrainingError, match=r"loss is nan at step 13 .*last good checkpoint .* is kept"):
        train(small_config(output, max_steps=20, resume=True))
    kept = load_checkpoint(newest_checkpoint(output))
    assert kept["global_step"] == good["global_step"] == 10
    assert torch.equal(kept["state_dict_softmax_fc"]["weight"], good["state_dict_softmax_fc"]["weight"])


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
    dataset_with_20_classes = SimpleNamespace(num_classes=20)
    with pytest.raises(ConfigError, match="config.num_classes=5 but the dataset has 20 classes; set num_classes to 20"):
        resolve_num_classes(small_config(tmp_path / "classes", num_classes=5), dataset_with_20_classes)


def test_synthetic_rec_honours_num_classes(tmp_path):
    """rec = "synthetic" renders config.num_classes identities when a config sets it (upstream configs do)."""
    assert build_train_dataset(small_config(tmp_path, num_classes=7)).num_classes == 7
    assert build_train_dataset(small_config(tmp_path)).num_classes == 20


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
    assert not list((tmp_path / "out").glob("checkpoint*"))


def test_cli_reports_unknown_key(capsys):
    assert main([DEMO, "--set", "lerning_rate=0.1"]) == 1
    assert "unknown config key 'lerning_rate'" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_cpu_ranks(tmp_path):
    output = tmp_path / "ddp"
    settings = {"output": str(output), "max_steps": 3, "num_workers": 0, "batch_size": 8, "val_targets": []}
    settings["synthetic"] = {"num_identities": 21, "images_per_identity": 4}
    result = torchrun_train(2, settings)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 rank(s) on cpu (gloo group)" in result.stdout
    for rank in (0, 1):
        state = load_checkpoint(newest_checkpoint(output, rank))
        assert state["global_step"] == 3 and state["world_size"] == 2
    # 21 classes over 2 ranks: shards of 11 and 10 centres
    assert load_checkpoint(newest_checkpoint(output))["state_dict_softmax_fc"]["weight"].shape[0] == 11
    assert load_checkpoint(newest_checkpoint(output, 1))["state_dict_softmax_fc"]["weight"].shape[0] == 10


@pytest.mark.slow
def test_torchrun_one_rank_forms_a_group_as_upstream(tmp_path):
    settings = {"output": str(tmp_path / "one"), "max_steps": 2, "num_workers": 0, "batch_size": 8, "val_targets": []}
    settings["synthetic"] = {"num_identities": 6, "images_per_identity": 4}
    result = torchrun_train(1, settings)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 rank(s) on cpu (gloo group)" in result.stdout
    assert load_checkpoint(newest_checkpoint(tmp_path / "one"))["global_step"] == 2


def test_cli_reports_unreadable_checkpoint(tmp_path, capsys):
    output = tmp_path / "torn"
    output.mkdir()
    (output / "checkpoint_rank0.pt").write_bytes(b"not a checkpoint")  # an earlier version's name
    code = main([DEMO, "--set", f"output={output}", "--set", "resume=True", "--set", "val_targets=[]"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"checkpoint {output / 'checkpoint_rank0.pt'} cannot be read" in err and "delete it to start over" in err


# ----------------------------------------------------------------------------- upstream fidelity of the loop
import math  # noqa: E402

from recipes.arcface_torch.backbones import get_model  # noqa: E402
from recipes.arcface_torch.checkpoint import UPSTREAM_KEYS  # noqa: E402
from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces  # noqa: E402


def upstream_lr(base, warmup, total, step):
    w = max(warmup, 0)
    step = min(step, total)
    return base if step == 0 else base * step / w if step <= w else base * (1 - (step - w) / (total - w))


@pytest.mark.slow
def test_scheduler_steps_every_batch_also_with_gradient_accumulation(tmp_path):
    """Upstream's train_v2 steps the LR scheduler once per batch and counts global_step in batches."""
    output = tmp_path / "acc"
    train(small_config(output, gradient_acc=2, max_steps=8, warmup_epoch=1))
    state = load_checkpoint(newest_checkpoint(output))
    assert state["global_step"] == 8 and state["state_lr_scheduler"]["last_epoch"] == 8
    # 160 images // 16 = 10 batches per epoch: warmup 10, total 30 scheduler steps
    assert state["state_lr_scheduler"]["warmup_iters"] == 10 and state["state_lr_scheduler"]["total_iters"] == 30
    for group in state["state_optimizer"]["param_groups"]:
        assert math.isclose(group["lr"], upstream_lr(0.05, 10, 30, 8), rel_tol=1e-12)


@pytest.mark.slow
def test_checkpoint_has_upstream_keys_and_model_pt_is_the_backbone(tmp_path):
    output = tmp_path / "keys"
    train(small_config(output, max_steps=3))
    state = load_checkpoint(newest_checkpoint(output))
    assert set(UPSTREAM_KEYS) <= set(state)
    assert list(state["state_dict_softmax_fc"]) == ["weight"]
    assert len(state["state_optimizer"]["param_groups"]) == 2  # [backbone, partial FC], as upstream
    model = torch.load(output / "model.pt", weights_only=True)
    assert model.keys() == state["state_dict_backbone"].keys()


@pytest.mark.slow
def test_upstream_train_v2_checkpoint_resumes_at_its_epoch_boundary(tmp_path, capsys):
    output = tmp_path / "from_upstream"
    train(small_config(output, max_steps=10))  # one full epoch
    ours = load_checkpoint(newest_checkpoint(output))
    upstream = {key: ours[key] for key in UPSTREAM_KEYS}  # what upstream's train_v2 writes at an epoch end
    torch.save(upstream, output / "checkpoint_gpu_0.pt")
    newest_checkpoint(output).unlink()
    (output / "config.json").unlink()  # an upstream run folder has none
    result = train(small_config(output, max_steps=14, resume=True))
    assert result["step"] == 14 and [s for s, _ in result["loss_history"]] == [11, 12, 13, 14]
    assert "(an upstream checkpoint: at its epoch boundary)" in capsys.readouterr().out
    resumed = load_checkpoint(newest_checkpoint(output))
    assert resumed["epoch"] == 1 and resumed["next_batch"] == 4


@pytest.mark.slow
def test_resume_refuses_a_changed_config_unless_allowed(tmp_path, capsys):
    output = tmp_path / "changed"
    train(small_config(output, max_steps=4))
    with pytest.raises(
        TrainingError,
        match=r"the config changed since the checkpoint \(lr 0.05 -> 0.1; batch_size 16 -> 8\); "
        r"restore those values, or pass --allow-config-change",
    ):
        train(small_config(output, max_steps=8, resume=True, lr=0.1, batch_size=8))
    assert load_checkpoint(newest_checkpoint(output))["global_step"] == 4  # nothing lost
    assert (
        main(
            [
                DEMO,
                "--set",
                f"output={output}",
                "--set",
                "resume=True",
                "--set",
                "lr=0.1",
                "--set",
                "max_steps=8",
                "--set",
                "num_workers=0",
                "--set",
                "batch_size=16",
                "--set",
                "val_targets=[]",
                "--set",
                "embedding_size=32",
                "--set",
                "sample_rate=0.5",
                "--set",
                "num_epoch=3",
                "--set",
                "frequent=2",
                "--set",
                "verbose=1000",
                "--set",
                "synthetic={'num_identities': 20, 'images_per_identity': 8}",
                "--allow-config-change",
            ]
        )
        == 0
    )
    state = load_checkpoint(newest_checkpoint(output))
    assert state["global_step"] == 8 and state["state_lr_scheduler"]["base_lrs"] == [0.1, 0.1]
    assert math.isclose(state["state_optimizer"]["param_groups"][0]["lr"], upstream_lr(0.1, 0, 30, 8), rel_tol=1e-12)
    assert "resuming with changed config values: lr 0.05 -> 0.1" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_another_world_size(tmp_path):
    output = tmp_path / "world"
    train(small_config(output, max_steps=2))
    state = load_checkpoint(newest_checkpoint(output))
    state["world_size"] = 2
    atomic_torch_save(state, newest_checkpoint(output))
    with pytest.raises(TrainingError, match="was written by 2 ranks but this run has 1; .* resume with 2 processes"):
        train(small_config(output, max_steps=4, resume=True))


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    output = tmp_path / "nan_weights"
    train(small_config(output, max_steps=10))
    good = load_checkpoint(newest_checkpoint(output))
    real_forward = PartialFC.forward
    calls = {"n": 0}

    def forward_then_corrupt(self, embeddings, labels):
        loss = real_forward(self, embeddings, labels)
        calls["n"] += 1
        if calls["n"] == 10:  # the last batch of epoch 1: its loss is finite, the weights it leaves are not
            with torch.no_grad():
                self.weight[0] = float("inf")
        return loss

    monkeypatch.setattr(PartialFC, "forward", forward_then_corrupt)
    with pytest.raises(TrainingError, match=r"weights hold NaN/Inf \(weight\) at step 20; nothing was saved"):
        train(small_config(output, max_steps=20, resume=True))
    kept = load_checkpoint(newest_checkpoint(output))
    assert kept["global_step"] == good["global_step"] == 10
    assert torch.equal(kept["state_dict_softmax_fc"]["weight"], good["state_dict_softmax_fc"]["weight"])


@pytest.mark.slow
def test_train_advances_the_dataset_epoch_for_new_flips(tmp_path, monkeypatch):
    seen = []
    real_set_epoch = SyntheticFaces.set_epoch
    monkeypatch.setattr(
        SyntheticFaces, "set_epoch", lambda self, epoch: (seen.append(epoch), real_set_epoch(self, epoch))
    )
    train(small_config(tmp_path / "epochs", max_steps=25))
    assert seen == [0, 1, 2]
    seen.clear()
    train(small_config(tmp_path / "epochs", max_steps=30, resume=True))  # resumes mid-epoch 2
    assert seen == [2]


@pytest.mark.slow
def test_bf16_autocast_on_cpu_runs_the_trunk_in_bf16_and_the_head_in_fp32(tmp_path, capsys):
    model = get_model("tiny", fp16=True, num_features=32, amp_dtype=torch.bfloat16)
    trunk_dtypes = []
    model.body.register_forward_hook(lambda module, args, out: trunk_dtypes.append(out.dtype))
    out = model(torch.randn(2, 3, 112, 112))
    assert trunk_dtypes == [torch.bfloat16] and out.dtype == torch.float32
    head_inputs = []
    real_forward = PartialFC.forward

    def spy(self, embeddings, labels):
        head_inputs.append((embeddings.dtype, self.fp16))
        return real_forward(self, embeddings, labels)

    PartialFC.forward = spy
    try:
        result = train(small_config(tmp_path / "bf16", fp16=True, max_steps=4))
    finally:
        PartialFC.forward = real_forward
    assert "fp16: backbone trunk under bfloat16 autocast, head in float32" in capsys.readouterr().out
    assert set(head_inputs) == {(torch.float32, False)}
    assert all(math.isfinite(loss) for _, loss in result["loss_history"])
    with pytest.raises(ConfigError, match="amp_dtype='half'"):
        small_config(tmp_path / "x", fp16=True, amp_dtype="half")


@pytest.mark.slow
def test_run_ends_nonzero_when_the_model_cannot_be_saved(tmp_path, monkeypatch, capsys):
    """A full disk at the final save: exit 1 with one line, no 'model saved' claim."""
    import errno

    from recipes.arcface_torch import atomic_file

    real = atomic_file.write_atomically

    def full_disk(path, write):
        if str(path).endswith("model.pt"):

            def failing(stream):
                raise OSError(errno.ENOSPC, "No space left on device")

            return real(path, failing)
        return real(path, write)

    monkeypatch.setattr(checkpoint_module, "write_atomically", full_disk)
    output = tmp_path / "full"
    code = main(
        [
            DEMO,
            "--set",
            f"output={output}",
            "--set",
            "max_steps=2",
            "--set",
            "num_workers=0",
            "--set",
            "batch_size=8",
            "--set",
            "val_targets=[]",
            "--set",
            "synthetic={'num_identities': 6, 'images_per_identity': 4}",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert (
        captured.err
        == f"error: no space left on the device while writing {output / 'model.pt'}; model.pt was not written; free space there and run again\n"
    )
    assert "model saved" not in captured.out


class _DatasetWithABadImage(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 2:
            raise ValueError(
                "train.rec key 3: could not decode the image (12 bytes, not a valid JPEG/PNG); re-encode or remove it"
            )
        return torch.zeros(1)


def test_errors_inside_dataloader_workers_are_reported_by_their_first_cause():
    from recipes.arcface_torch.train import first_cause

    loader = torch.utils.data.DataLoader(_DatasetWithABadImage(), batch_size=1, num_workers=1)
    with pytest.raises(ValueError) as caught:
        list(loader)
    assert "Original Traceback" in str(caught.value)  # what torch re-raises: a multi-line worker traceback
    assert first_cause(caught.value) == (
        "train.rec key 3: could not decode the image (12 bytes, not a valid JPEG/PNG); re-encode or remove it"
    )


@pytest.mark.slow
def test_interclass_filtering_trains_in_the_recipe(tmp_path):
    """Upstream's wf12m *_filter04 configs: interclass_filtering_threshold = 0.4 with partial FC sampling."""
    result = train(small_config(tmp_path / "filter", interclass_filtering_threshold=0.4, sample_rate=0.3, max_steps=3))
    assert result["step"] == 3 and all(math.isfinite(loss) for _, loss in result["loss_history"])


@pytest.mark.slow
def test_composed_losses_with_state_resume_exactly_across_the_start_epoch(tmp_path):
    """USS (memory bank, learnable bias, on from epoch 1) + UNPG: the epoch reaches the head, the bank and the
    bias are checkpointed, the bias trains in its own group without weight decay, and resume is exact."""
    options = dict(loss=["uss", "unpg"], margin_list=(1.0, 0.0, 0.4), uss={"start_epoch": 1}, max_steps=14)
    straight = train(small_config(tmp_path / "straight", **options))
    train(small_config(tmp_path / "split", **{**options, "max_steps": 7}))
    resumed = train(small_config(tmp_path / "split", **{**options, "resume": True}))
    assert [loss for _, loss in resumed["loss_history"]] == [loss for _, loss in straight["loss_history"][7:]]
    state = load_checkpoint(newest_checkpoint(tmp_path / "straight"))
    head = state["state_dict_softmax_fc"]
    assert bool(head["losses.0.initialised"]) and float(head["losses.0.bias"]) != 0.0  # USS ran in epoch 1
    split_head = load_checkpoint(newest_checkpoint(tmp_path / "split"))["state_dict_softmax_fc"]
    assert torch.equal(head["losses.0.bank"], split_head["losses.0.bank"])
    groups = state["state_optimizer"]["param_groups"]
    assert len(groups) == 3 and groups[2]["weight_decay"] == 0.0 and len(groups[2]["params"]) == 1


def test_diagnostics_line_names_each_loss():
    from recipes.arcface_torch.training_log import format_diagnostics

    line = format_diagnostics(
        {"unpg/pairs_kept": torch.tensor(12), "uss/bias": torch.tensor(1.5), "magface/margin_mean": 0.45}
    )
    assert line == "unpg/pairs_kept 12   uss/bias 1.5000   magface/margin_mean 0.4500"
