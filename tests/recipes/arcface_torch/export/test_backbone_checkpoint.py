"""Which file of a training output folder holds the backbone the export and init_backbone read."""

import torch

from recipes.arcface_torch.checkpoint import checkpoint_path, legacy_checkpoint_path, upstream_checkpoint_path
from recipes.arcface_torch.export.backbone_checkpoint import resolve_checkpoint


def _save(path, value):
    torch.save({"state_dict_backbone": {"w": torch.full((2,), float(value))}}, path)
    return path


def test_a_folder_prefers_model_pt_then_rank0_newest_step_set_then_older_names(tmp_path):
    upstream = _save(upstream_checkpoint_path(tmp_path, 0), 1)
    assert resolve_checkpoint(tmp_path).model_path == upstream
    legacy = _save(legacy_checkpoint_path(tmp_path, 0), 2)
    assert resolve_checkpoint(tmp_path).model_path == legacy
    _save(checkpoint_path(tmp_path, 0, 900), 3)
    newest = _save(checkpoint_path(tmp_path, 0, 1200), 4)
    _save(checkpoint_path(tmp_path, 1, 1500), 5)  # another rank's file is never the source
    source = resolve_checkpoint(tmp_path)
    assert source.model_path == newest
    assert torch.equal(source.state_dict()["w"], torch.full((2,), 4.0))
    model = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, model)
    assert resolve_checkpoint(tmp_path).model_path == model
