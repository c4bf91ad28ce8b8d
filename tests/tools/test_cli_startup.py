"""Every tool answers --help before importing anything heavy, and the data tools do their work with no torch at all.

Each tool runs as its own process with stand-in packages first on its path that fail on import (torch, onnx,
onnxruntime, insightface and, for --help, cv2): a tool that imports one of them where it must not exits non-zero.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

# every tool with a tools/ wrapper: a module of the cli package but its shared helpers and the training entry point
TOOLS = sorted(
    path.stem
    for path in (REPO_ROOT / "recipes" / "arcface_torch" / "cli").glob("*.py")
    if path.stem not in ("__init__", "common", "train")
)
HEAVY = ("torch", "onnx", "onnxruntime", "insightface")


@pytest.fixture(scope="module")
def blocked(tmp_path_factory):
    """A folder of packages that raise ImportError when imported: put it first on PYTHONPATH."""

    def make(names):
        folder = tmp_path_factory.mktemp("blocked")
        for name in names:
            (folder / name).mkdir()
            (folder / name / "__init__.py").write_text(f"raise ImportError('{name} must not be imported here')\n")
        return folder

    return make


def run_tool(args, blocked_folder, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked_folder), str(REPO_ROOT)]))
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_needs_no_heavy_package(tool, blocked, tmp_path):
    done = run_tool([str(REPO_ROOT / "tools" / f"{tool}.py"), "--help"], blocked((*HEAVY, "cv2", "numpy")), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_train_help_needs_no_torch(blocked, tmp_path):
    done = run_tool(["-m", "recipes.arcface_torch.cli.train", "--help"], blocked(HEAVY), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout and "--allow-config-change" in done.stdout


def test_the_stand_in_packages_do_block(blocked, tmp_path):
    done = run_tool(["-c", "import torch"], blocked(HEAVY), tmp_path)
    assert done.returncode != 0 and "torch must not be imported here" in done.stderr


def test_data_tools_work_without_torch(identity_folder, blocked, tmp_path):
    no_torch = blocked(HEAVY)
    tool = lambda name: str(REPO_ROOT / "tools" / f"{name}.py")  # noqa: E731
    rec = tmp_path / "rec"
    steps = [
        [tool("pack_rec"), str(identity_folder), str(rec), "--quiet"],
        [tool("inspect_rec"), str(rec), "--full", "--quiet"],
        [tool("make_pairs"), str(identity_folder), str(tmp_path / "pairs.txt"), "--num-pairs", "10"],
        [tool("make_bin"), str(tmp_path / "pairs.txt"), str(tmp_path / "val.bin"), "--root", str(identity_folder)],
    ]
    for step in steps:
        done = run_tool(step, no_torch, tmp_path)
        assert done.returncode == 0, f"{' '.join(step)}: {done.stderr}"
        assert done.stdout.strip().splitlines()[-1].startswith(("wrote ", "status       OK")), done.stdout
    assert (rec / "train.rec").is_file() and (tmp_path / "val.bin").is_file()


WRITERS = [
    "align_faces",
    "pack_rec",
    "make_pairs",
    "make_bin",
    "synthetic_to_rec",
    "export_onnx",
    "convert_onnx",
    "eval_ijb",
    "face_quality",
]


@pytest.mark.parametrize("tool", WRITERS)
def test_force_is_in_the_help_of_every_writer(tool, blocked, tmp_path):
    done = run_tool([str(REPO_ROOT / "tools" / f"{tool}.py"), "--help"], blocked(HEAVY), tmp_path)
    assert done.returncode == 0 and "--force" in done.stdout, done.stdout
