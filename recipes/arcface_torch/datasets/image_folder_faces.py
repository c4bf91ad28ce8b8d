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

from ..face_files import list_identity_folder
from ..face_image import decode_face, face_to_tensor, should_flip

__all__ = ["ImageFolderFaces", "list_identity_folder"]


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
