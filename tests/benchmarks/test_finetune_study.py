"""finetune_study: the plan (one factor at a time), the per-regime summary and its table, from hand-made records."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the study imports its sibling compare_unpg
_SPEC = importlib.util.spec_from_file_location("finetune_study", REPO_ROOT / "benchmarks" / "finetune_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)

REGIME = "100 ids x 32 img"


def test_each_level_changes_one_thing_from_the_baseline(tmp_path):
    plan = study.build_plan([REGIME], study.LEVELS, [0], tmp_path / "start", tmp_path / "out", 25, {})
    by_level = {entry["level"]: entry["overrides"] for entry in plan}
    base = by_level[study.BASELINE]
    assert base["init_backbone"] == str(tmp_path / "start") and base["init_head"] == "imprint"
    assert base["synthetic"]["identity_offset"] == 100_000 and base["synthetic"]["num_identities"] == 100
    for level, overrides in by_level.items():
        changed = sorted(key for key in set(base) | set(overrides) if base.get(key) != overrides.get(key))
        expected = {
            study.BASELINE: [],
            "random head": ["init_head"],
            "from scratch": ["init_backbone", "init_head"],
            "ArcFace + UNPG": ["loss", "unpg"],
            "UNPG from epoch 1": ["loss", "unpg"],
            "bn_mode frozen": ["bn_mode"],
            "backbone LR x 0.1": ["backbone_lr_scale"],
        }[level]
        assert changed == expected, level
    assert by_level["UNPG from epoch 1"]["unpg"]["start_epoch"] == 1


def _write(entry, accuracies, tar):
    curve = [{"step": 25 * k, study.SYNTHETIC_TEST: {"accuracy": a}} for k, a in enumerate(accuracies)]
    record = {
        "curve": curve,
        "train_seconds": 60.0,
        "sets": {study.SYNTHETIC_TEST: {"accuracy": accuracies[-1], "tar_at_far": {"0.001": tar}}},
    }
    run_dir = Path(entry["run_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps(record))


def test_summary_pairs_by_seed_and_finds_the_step_reaching_the_random_heads_final_accuracy(tmp_path):
    levels = study.LEVELS[:2]
    plan = study.build_plan([REGIME], levels, [0, 1], tmp_path / "start", tmp_path / "out", 25, {})
    curves = {
        (study.BASELINE, 0): ([0.80, 0.90, 0.95], 0.50),
        (study.BASELINE, 1): ([0.80, 0.85, 0.93], 0.40),
        ("random head", 0): ([0.80, 0.88, 0.92], 0.45),
        ("random head", 1): ([0.80, 0.87, 0.94], 0.44),
    }
    for entry in plan:
        _write(entry, *curves[(entry["level"], entry["seed"])])
    rows = {row["level"]: row for row in study.summarise_regime(REGIME, levels, plan)["rows"]}
    base, random = rows[study.BASELINE], rows["random head"]
    # seed 0: the random head ends at 0.92, the baseline passes it at step 50; seed 1: 0.94, never reached
    assert base["reaches_random_head_final"] == [50, None]
    assert random["reaches_baseline_final"] == [None, 50]
    assert random["d_accuracy"] == pytest.approx([-3.0, 1.0])
    assert random["d_tar_1e-3"] == pytest.approx([-5.0, 4.0])
    table = study.write_table([{"regime": REGIME, "rows": list(rows.values())}], "header", None)
    line = next(row for row in table.splitlines() if "| random head |" in row)
    assert "| -1.00 +- 2.00 | 1/2 |" in line


def test_a_level_reaches_its_own_final_accuracy_at_its_last_step(tmp_path):
    """0.9591666666666665 * 100 / 100 is not 0.9591666666666665: the comparison uses the recorded fractions."""
    levels = study.LEVELS[:2]
    plan = study.build_plan([REGIME], levels, [0], tmp_path / "start", tmp_path / "out", 25, {})
    for entry in plan:
        _write(entry, [0.80, 0.90, 0.9591666666666665], 0.5)
    rows = study.summarise_regime(REGIME, levels, plan)["rows"]
    assert [row["reaches_random_head_final"] for row in rows] == [[50], [50]]
