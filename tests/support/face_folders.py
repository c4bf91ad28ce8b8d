"""A three-identity image folder and its identity_rec RecordIO, shared by the dataset and tool tests (fixtures
registered in tests/conftest.py, built once per session when a test asks for them)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from recipes.arcface_torch.cli import pack_rec

IDENTITIES = ["bob", "alice", "carol"]  # sorted: alice=0, bob=1, carol=2


def face(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (7, 7, 3), dtype=np.uint8), (112, 112), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(base)


def encode_face(image_rgb: np.ndarray, suffix: str) -> bytes:
    return cv2.imencode(suffix, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


@pytest.fixture(scope="session")
def identity_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i, name in enumerate(IDENTITIES):
        (root / name).mkdir()
        for j in range(3):
            suffix = ".png" if j == 0 else ".jpg"
            (root / name / f"{j}{suffix}").write_bytes(encode_face(face(10 * i + j), suffix))
    (root / "alice" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def identity_rec(identity_folder, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("rec")
    assert pack_rec.main([str(identity_folder), str(output), "--quiet"]) == 0
    return output
