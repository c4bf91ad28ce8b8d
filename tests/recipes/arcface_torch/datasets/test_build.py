"""config.val_targets: names beside the .rec and .bin paths anywhere."""

import numpy as np
from easydict import EasyDict as edict

from recipes.arcface_torch.datasets.build import build_val_sets, val_target_path
from recipes.arcface_torch.evaluation.bin_file import encode_image, save_bin


def test_val_targets_accept_names_and_paths(tmp_path):
    rec, elsewhere = tmp_path / "rec", tmp_path / "tests"
    rec.mkdir()
    elsewhere.mkdir()
    faces = np.random.default_rng(0).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    save_bin(rec / "lfw.bin", [encode_image(f, ".png") for f in faces], [True, False])
    save_bin(elsewhere / "mine.bin", [encode_image(f, ".png") for f in faces[::-1]], [False, True])
    config = edict(rec=str(rec), val_targets=["lfw", str(elsewhere / "mine.bin")])
    sets = build_val_sets(config)
    assert [s.name for s in sets] == ["lfw", "mine"]
    assert list(sets[1].issame) == [False, True]
    np.testing.assert_array_equal(sets[1].images[0], faces[3])
    assert val_target_path("/data/rec", "cfp_fp") == val_target_path("/data/rec", "/data/rec/cfp_fp.bin")
    warnings = []
    assert build_val_sets(edict(rec=str(rec), val_targets=[str(elsewhere / "missing.bin")]), warn=warnings.append) == []
    assert len(warnings) == 1 and "missing.bin' skipped: " in warnings[0] and "give the .bin's path" in warnings[0]
