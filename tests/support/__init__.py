"""Helpers shared by tests, importable by spawned processes: paths, the gloo rank harness, naive references."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DEMO = "recipes/arcface_torch/configs/synthetic_unpg"  # the embedded config the README trains
