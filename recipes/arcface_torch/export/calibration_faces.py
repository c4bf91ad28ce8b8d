"""Aligned face crops to calibrate int8 activation ranges: the built-in faces plus the user's own.

Sources for `--calibration`: a folder of aligned crops (.jpg/.png), an insightface RecordIO folder
(train.rec + train.idx + property) or a .rec file inside one, or a verification .bin file. Images are
taken evenly spread over the source, so a sorted-by-identity .rec gives many identities.

    faces = calibration_faces(Path("work_dirs/synthetic_rec"), count=128)   # (N, 112, 112, 3) BGR uint8
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .face_samples import builtin_faces, face_batch, folder_faces

BUILTIN_COUNT = 32  # the insightface / scikit-image faces with flips and lighting changes


def _spread(total: int, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64))


def _rec_faces(folder: Path, count: int, size: int) -> np.ndarray:
    from ..datasets.recordio_faces import RecordIOFaces

    dataset = RecordIOFaces(folder, flip=False)
    images = []
    for index in _spread(len(dataset), count):
        chw = dataset[int(index)][0].numpy()  # float32 (3, H, W) RGB in [-1, 1]
        rgb = np.clip(chw.transpose(1, 2, 0) * 127.5 + 127.5, 0, 255).round().astype(np.uint8)
        images.append(rgb[..., ::-1])
    return _resized(np.stack(images), size)


def _bin_faces(path: Path, count: int, size: int) -> np.ndarray:
    from ..evaluation.bin_file import load_bin

    vset = load_bin(path, image_size=(size, size))
    return np.ascontiguousarray(vset.images[_spread(len(vset.images), count)][..., ::-1])


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    import cv2

    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) for image in images])


def user_faces(source: Path, count: int, size: int = 112) -> np.ndarray:
    """Up to `count` BGR uint8 (N, size, size, 3) faces from a folder of crops, a RecordIO folder/.rec or a .bin."""
    source = Path(source)
    if source.is_file() and source.suffix == ".rec":
        source = source.parent
    if source.is_dir() and (source / "train.rec").is_file():
        return _rec_faces(source, count, size)
    if source.is_file() and source.suffix == ".bin":
        return _bin_faces(source, count, size)
    if source.is_dir():
        faces = folder_faces(source, size)
        return np.stack([faces[i][1] for i in _spread(len(faces), count)])
    if not source.exists():
        raise ValueError(
            f"calibration source {source} does not exist; pass a folder of aligned faces, a RecordIO "
            f"folder (train.rec/.idx/property) or a verification .bin file"
        )
    raise ValueError(
        f"calibration source {source} is neither a folder, a .rec nor a .bin file; pass a folder of "
        f"aligned faces, a RecordIO folder or a verification .bin file"
    )


def calibration_faces(source: Path | None = None, count: int = 128, size: int = 112) -> np.ndarray:
    """The built-in faces (BUILTIN_COUNT variants) plus up to `count` from `source`; BGR uint8 (N, size, size, 3)."""
    faces = face_batch(builtin_faces(size), BUILTIN_COUNT)
    if source is not None:
        faces = np.concatenate([faces, user_faces(source, count, size)], axis=0)
    return faces
