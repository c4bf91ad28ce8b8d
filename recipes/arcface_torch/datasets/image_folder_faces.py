"""Faces from an image folder with one sub-folder per identity: root/<identity>/<image> (any format OpenCV reads).

Identities are the sorted sub-folder names, labelled 0..num_classes-1; images inside a sub-folder are
taken in sorted order. Each item is (float32 (3, 112, 112) in [-1, 1], int64 0-d label).

    ds = ImageFolderFaces("/data/my_faces", flip=True)
    image, label = ds[0]; ds.num_classes; ds.class_names[label]
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..face_files import IMAGE_SUFFIXES
from ..face_image import decode_face, face_to_tensor, should_flip


def list_identity_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, label)]) of an identity-per-folder tree, in sorted order."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist; pass a folder with one sub-folder of face images per identity"
        )
    class_names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not class_names:
        raise ValueError(
            f"{root} has no identity sub-folders; put each identity's images in its own sub-folder (root/<identity>/<image>.jpg)"
        )
    samples = []
    for label, name in enumerate(class_names):
        files = sorted(
            entry.name
            for entry in os.scandir(root / name)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise ValueError(
                f"identity folder {root / name} holds no images ({' '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
            )
        samples.extend((root / name / file, label) for file in files)
    return class_names, samples


class ImageFolderFaces(Dataset):
    """Images and integer labels of an identity-per-folder tree of aligned faces."""

    def __init__(
        self, root: str | os.PathLike, flip: bool = True, seed: int = 0, image_size: tuple[int, int] = (112, 112)
    ):
        self.root = Path(root)
        self.class_names, self.samples = list_identity_folder(self.root)
        self.num_classes = len(self.class_names)
        self.image_size = tuple(image_size)
        self.flip, self.seed, self.epoch = flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that seeds the flips (call before building the epoch's DataLoader iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            data = path.read_bytes()
        except OSError as err:
            raise FileNotFoundError(
                f"{path}: cannot read the image ({err.strerror}); the folder changed after the dataset was listed"
            ) from err
        image = decode_face(data, str(path), self.image_size)
        flip = self.flip and should_flip(self.seed, self.epoch, index)
        return face_to_tensor(image, flip), torch.tensor(label, dtype=torch.int64)
