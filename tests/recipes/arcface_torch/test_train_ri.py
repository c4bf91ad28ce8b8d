"""Training with the ri loss: the centre is built at the start epoch, checkpointed and saved beside a plain
model.pt; resume is exact across the start epoch and mid-epoch; 2 torchrun ranks build one shared centre."""

import pytest
import torch

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.checkpoint import load_checkpoint
from recipes.arcface_torch.recognisability_file import load_recognisability
from recipes.arcface_torch.train import train
from tests.support.checkpoints import newest_checkpoint
from tests.support.small_runs import small_config
from tests.support.torchrun import torchrun_train

RI_OPTIONS = {"loss": "ri", "ri": {"start_epoch": 1, "centre_images": 16, "centre_size": 12}}


@pytest.mark.slow
def test_ri_run_saves_its_centre_and_resumes_exactly(tmp_path):
    straight = train(small_config(tmp_path / "straight", max_steps=16, **RI_OPTIONS))
    train(small_config(tmp_path / "split", max_steps=13, **RI_OPTIONS))  # stops mid-epoch 1, centre built
    resumed = train(small_config(tmp_path / "split", max_steps=16, resume=True, **RI_OPTIONS))
    assert [loss for _, loss in resumed["loss_history"]] == [loss for _, loss in straight["loss_history"][13:]]
    head = load_checkpoint(newest_checkpoint(tmp_path / "straight"))["state_dict_softmax_fc"]
    split = load_checkpoint(newest_checkpoint(tmp_path / "split"))["state_dict_softmax_fc"]
    assert bool(head["losses.0.has_centre"]) and torch.equal(head["losses.0.centre"], split["losses.0.centre"])
    assert torch.equal(head["losses.0.regressor.weight"], split["losses.0.regressor.weight"])
    assert float(head["losses.0.regressor.weight"].abs().sum()) > 0  # the regressor trained in epoch 1
    record = load_recognisability(tmp_path / "straight" / "recognisability.pt", 32)
    assert torch.equal(record.centre, head["losses.0.centre"].float())
    assert record.ui_level == float(head["losses.0.ui_level"]) and record.has_regressor
    model = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    assert set(model) == set(get_model("tiny", num_features=32).state_dict())  # a plain backbone state_dict


def test_no_centre_file_before_the_start_epoch(tmp_path):
    train(small_config(tmp_path / "early", max_steps=4, **RI_OPTIONS))
    assert (tmp_path / "early" / "model.pt").is_file() and not (tmp_path / "early" / "recognisability.pt").exists()


@pytest.mark.slow
def test_torchrun_two_ranks_share_one_centre(tmp_path):
    output = tmp_path / "ddp"
    settings = {"output": str(output), "max_steps": 8, "num_workers": 0, "batch_size": 8, "val_targets": []}
    settings.update({"loss": "ri", "ri": {"start_epoch": 1, "centre_images": 10, "centre_size": 12}})
    settings["synthetic"] = {"num_identities": 11, "images_per_identity": 4}  # 44 images: 2 batches of 16 per epoch
    result = torchrun_train(2, settings)
    assert result.returncode == 0, result.stderr[-2000:]
    heads = [load_checkpoint(newest_checkpoint(output, r))["state_dict_softmax_fc"] for r in (0, 1)]
    assert all(bool(h["losses.0.has_centre"]) for h in heads)
    for key in ("losses.0.centre", "losses.0.ui_level", "losses.0.regressor.weight", "losses.0.regressor.bias"):
        assert torch.equal(heads[0][key], heads[1][key]), key  # replicated state stays identical on both ranks
    record = load_recognisability(output / "recognisability.pt")
    assert torch.equal(record.centre, heads[0]["losses.0.centre"])
