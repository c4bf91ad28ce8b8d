"""Aligned faces from wherever a user keeps them: one reader behind every option that takes faces.

A source is any of
    a flat folder of aligned crops         faces/*.jpg
    an identity tree                       faces/<identity>/*.jpg   (the layout pack_rec and make_pairs take)
    an insightface RecordIO folder         train.rec + train.idx + property (or the .rec file inside one)
    a verification .bin                    lfw.bin, synthetic.bin
and `read_faces` returns `count` of its faces spread evenly over the source (all when count is None) as BGR uint8
(N, size, size, 3) with a name each, resized when they are not size x size. No torch.

    names, faces = read_faces(Path("/data/lfw_aligned"), size=112, count=128)
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .face_files import IMAGE_SUFFIXES, list_identity_folder

KINDS = "a folder of aligned faces (flat or one sub-folder per identity), a RecordIO folder or .rec, or a .bin file"


def spread(total: int, count: int | None) -> np.ndarray:
    """`count` indices spread evenly over range(total) (all of them when count is None or larger)."""
    if count is None or count >= total:
        return np.arange(total, dtype=np.int64)
    return np.unique(np.linspace(0, total - 1, num=count).round().astype(np.int64))


def _bgr(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _read_file(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}; re-encode it or remove it from the folder")
    return image


def _folder_paths(folder: Path) -> list[tuple[str, Path]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if files:
        return [(p.stem, p) for p in files]
    if any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        _, samples = list_identity_folder(folder)
        return [(f"{p.parent.name}/{p.stem}", p) for p, _ in samples]
    raise ValueError(f"{folder} holds no face images and no identity sub-folders; pass {KINDS}")


def read_faces(source: Path, size: int = 112, count: int | None = None) -> tuple[list[str], np.ndarray]:
    """(names, BGR uint8 (N, size, size, 3)) of up to `count` faces of `source` (see the module docstring)."""
    source = Path(source)
    if not source.exists():
        raise ValueError(f"face source {source} does not exist; pass {KINDS}")
    if source.is_file() and source.suffix == ".rec":
        source = source.parent
    if source.is_dir() and (source / "train.rec").is_file():
        from .datasets.recordio_folder import RecordIOFolder
        from .face_image import decode_face

        folder = RecordIOFolder(source)
        names, faces = [], []
        for index in spread(len(folder), count):
            data, label, where = folder.record(int(index))
            rgb = decode_face(data, where, (size, size), resize=True)
            names.append(f"{label}/{int(folder.keys[index])}")
            faces.append(np.ascontiguousarray(rgb[..., ::-1]))
        return names, np.stack(faces)
    if source.is_file() and source.suffix == ".bin":
        from .evaluation.bin_file import load_bin

        vset = load_bin(source, image_size=(size, size))
        chosen = spread(len(vset.images), count)
        return [f"{source.stem}/{i}" for i in chosen], np.ascontiguousarray(vset.images[chosen][..., ::-1])
    if source.is_dir():
        paths = _folder_paths(source)
        chosen = [paths[i] for i in spread(len(paths), count)]
        return [name for name, _ in chosen], np.stack([_bgr(_read_file(path), size) for _, path in chosen])
    raise ValueError(f"face source {source} is neither a folder, a .rec nor a .bin file; pass {KINDS}")
