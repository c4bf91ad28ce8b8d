"""Aligned face crops to calibrate int8 activation ranges: the built-in faces plus the user's own.

Sources for `--calibration`: any face source (face_sources.py: a flat folder of aligned crops, an identity tree,
a RecordIO folder or .rec, a verification .bin). Images are taken evenly spread over the source, so a
sorted-by-identity .rec or tree gives many identities.

    faces = calibration_faces(Path("work_dirs/synthetic_rec"), count=128)   # (N, 112, 112, 3) BGR uint8
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..face_sources import read_faces
from .face_samples import builtin_faces, face_batch

BUILTIN_COUNT = 32  # the insightface / scikit-image faces with flips and lighting changes


def user_faces(source: Path, count: int, size: int = 112) -> np.ndarray:
    """Up to `count` BGR uint8 (N, size, size, 3) faces of `source`: any face source (face_sources.read_faces)."""
    return read_faces(source, size, count)[1]


def calibration_faces(source: Path | None = None, count: int = 128, size: int = 112) -> np.ndarray:
    """The built-in faces (BUILTIN_COUNT variants) plus up to `count` from `source`; BGR uint8 (N, size, size, 3)."""
    faces = face_batch(builtin_faces(size), BUILTIN_COUNT)
    if source is not None:
        faces = np.concatenate([faces, user_faces(source, count, size)], axis=0)
    return faces
