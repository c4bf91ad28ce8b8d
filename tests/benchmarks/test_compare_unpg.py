"""compare_unpg: argument checks, the per-test-set summary (FARs, paired differences, wins), one tiny real run."""

import importlib.util
import json
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.evaluation.bin_file import encode_image, save_bin
from tests.support import REPO_ROOT

_SPEC = importlib.util.spec_from_file_location("compare_unpg", REPO_ROOT / "benchmarks" / "compare_unpg.py")
compare = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compare)


def _args(**kwargs):
    defaults = dict(jobs=1, fars=[1e-2, 1e-3], test=[], train=None, set=[], config="synthetic_compare")
    return SimpleNamespace(**{**defaults, **kwargs})


def test_argument_errors_are_one_sentence_naming_the_value(tmp_path):
    assert compare.check_arguments(_args(fars=[1e-3, 2.0]))[1] == "--fars 2 is outside (0, 1]; pass FARs such as 1e-3"
    assert "the .bin file does not exist" in compare.check_arguments(_args(test=[str(tmp_path / "x.bin")]))[1]
    assert "not a .bin file nor a folder" in compare.check_arguments(_args(test=[str(tmp_path / "nope")]))[1]
    (tmp_path / "a" / "faces").mkdir(parents=True)
    (tmp_path / "b" / "faces").mkdir(parents=True)
    twice = [str(tmp_path / "a" / "faces"), str(tmp_path / "b" / "faces")]
    assert "repeat; give each test set a distinct" in compare.check_arguments(_args(test=twice))[1]
    assert "--train" in compare.check_arguments(_args(train=str(tmp_path / "nothing")))[1]
    assert "has no identity sub-folders" in compare.check_arguments(_args(test=[str(tmp_path / "b" / "faces")]))[1]
    for k in range(3):
        (tmp_path / "few" / f"id{k}").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "few" / f"id{k}" / "0.png"), np.zeros((112, 112, 3), np.uint8))
    assert (
        "3 identities with 0 positive pairs; 10-fold accuracy needs"
        in compare.check_arguments(_args(test=[str(tmp_path / "few")]))[1]
    )
    problem = compare.check_arguments(_args(train=str(tmp_path / "a")))[1]
    assert problem.startswith("no --test given")
    common, problem = compare.check_arguments(_args(set=["scale=64.0"]))
    assert problem is None and common["scale"] == 64.0 and common["val_targets"] == []


def _record(method, seed, accuracy, tar, sets=("near", "far")):
    scored = {
        "accuracy": accuracy,
        "overlap": 0.1,
        "pairs": {"positive": 30, "negative": 500},
        "tar_at_far": {"0.01": tar, "0.001": math.nan},
        "tar_at_far_notes": {"0.01": "", "0.001": "FAR 0.001 needs at least 1000 negative pairs, got 500"},
    }
    return {"method": method, "seed": seed, "sets": {name: dict(scored) for name in sets}}


def test_summary_reports_paired_differences_wins_and_unreachable_fars():
    records = [_record("arcface", s, 0.80 + 0.01 * s, 0.50) for s in range(3)]
    # UNPG: +2, -1, +2 accuracy points paired by seed; TAR +10 points on every seed
    records += [_record("arcface+unpg", s, 0.80 + 0.01 * s + d, 0.60) for s, d in enumerate((0.02, -0.01, 0.02))]
    text = compare.summarise(records, ["arcface", "arcface+unpg"], [1e-2, 1e-3], "header")
    assert text.count("### ") == 2 and "### near (30 positive / 500 negative pairs for TAR)" in text
    unpg_row = next(line for line in text.splitlines() if line.startswith("| arcface+unpg"))
    cells = [cell.strip() for cell in unpg_row.strip("|").split("|")]
    assert cells[1] == "82.00 +- 1.63"  # accuracies 82, 80, 84: population std sqrt(8/3)
    assert cells[3] == "n/a"
    assert cells[5] == "1.00 +- 1.41 vs arcface" and cells[7] == "2/3"
    assert "- TAR@FAR=0.001 is n/a: FAR 0.001 needs at least 1000 negative pairs, got 500" in text
    assert text.endswith("arcface+unpg 4/6")
    assert compare.baseline_of("unpg_wisk0.5") == "arcface" and compare.baseline_of("arcface") is None


def _faces(root, identities, per, seed):
    rng = np.random.default_rng(seed)
    for k in range(identities):
        (root / f"id{k}").mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for j in range(per):
            image = (colour + rng.integers(-40, 40, (112, 112, 3))).clip(0, 255).astype(np.uint8)
            if j == 0:
                assert cv2.imwrite(str(root / f"id{k}" / "0.pgm"), image[..., 0])  # a grey face
            else:
                assert cv2.imwrite(str(root / f"id{k}" / f"{j}.jpg"), image)


@pytest.mark.slow
def test_tiny_comparison_on_an_image_folder_with_a_folder_and_a_bin_test_set(tmp_path):
    _faces(tmp_path / "train", 6, 12, seed=0)
    _faces(tmp_path / "held_out", 4, 3, seed=1)
    faces = np.random.default_rng(2).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    order = np.random.default_rng(3).integers(0, 4, 24)  # 12 pairs over 4 distinct faces
    save_bin(tmp_path / "pairs.bin", [encode_image(faces[i]) for i in order], [True, False] * 6)
    code = compare.main(
        [
            "--train",
            str(tmp_path / "train"),
            "--test",
            str(tmp_path / "held_out"),
            "--test",
            str(tmp_path / "pairs.bin"),
            "--methods",
            "arcface",
            "arcface+unpg",
            "--seeds",
            "0",
            "--jobs",
            "1",
            "--fars",
            "0.1",
            "--output",
            str(tmp_path / "out"),
            "--set",
            "max_steps=2",
            "--set",
            "batch_size=16",
            "--set",
            "num_workers=0",
        ]
    )
    assert code == 0
    text = (tmp_path / "out" / "results.md").read_text()
    assert (
        "### held_out (12 positive / 54 negative pairs for TAR)" in text
        and "### pairs (6 positive / 6 negative" in text
    )
    assert "TAR@FAR=0.1 is n/a: FAR 0.1 needs at least 10 negative pairs, got 6" in text
    records = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["method"] for r in records} == {"arcface", "arcface+unpg"}
    assert all(0.0 <= r["sets"]["held_out"]["accuracy"] <= 1.0 for r in records)


def test_init_must_exist_and_fit(tmp_path):
    problem = compare.check_arguments(_args(init=str(tmp_path / "absent.pt"), eval_every=0))[1]
    assert (
        problem
        == f"--init {tmp_path / 'absent.pt'} does not exist; pass a model.pt, a training checkpoint or a run folder"
    )
    import torch

    from recipes.arcface_torch.backbones import get_model

    torch.save(get_model("tiny", num_features=64).state_dict(), tmp_path / "tiny64.pt")
    problem = compare.check_arguments(_args(init=str(tmp_path / "tiny64.pt"), eval_every=0))[1]
    assert problem.startswith("init_backbone=") and problem.endswith("set config.embedding_size = 64")
    assert "--eval-every -5 must be >= 0" in compare.check_arguments(_args(eval_every=-5))[1]


@pytest.mark.slow
def test_fine_tuning_comparison_with_a_curve(tmp_path):
    """--init starts every run from a trained backbone; --eval-every trains in exact segments and scores each."""
    import torch

    from recipes.arcface_torch.backbones import get_model

    torch.manual_seed(0)
    torch.save(get_model("tiny", num_features=128).state_dict(), tmp_path / "start.pt")
    settings = ["max_steps=6", "batch_size=16", "num_workers=0", "init_head=imprint", "num_epoch=2"]
    settings += ["synthetic={'num_identities': 12, 'images_per_identity': 4, 'val_identities': 6}"]
    arguments = ["--init", str(tmp_path / "start.pt"), "--eval-every", "4", "--methods", "arcface", "--seeds", "0"]
    arguments += ["--jobs", "1", "--output", str(tmp_path / "out"), *[x for s in settings for x in ("--set", s)]]
    assert compare.main(arguments) == 0
    record = json.loads((tmp_path / "out" / "results.json").read_text())[0]
    assert [point["step"] for point in record["curve"]] == [0, 4, 6]  # 3 batches per epoch, stopped at max_steps
    assert [step for step, _ in record["loss_history"]] == [1, 2, 3, 4, 5, 6]
    final = record["curve"][-1][compare.SYNTHETIC_TEST]["accuracy"]
    assert final == record["sets"][compare.SYNTHETIC_TEST]["accuracy"]
    log = (tmp_path / "out" / "runs" / "arcface_seed0" / "stdout.log").read_text()
    assert log.count("imprinted 12 class centres") == 1 and "resumed from" in log
