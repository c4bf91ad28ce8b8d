"""Faces from an insightface RecordIO folder (MS1MV3, Glint360K, WebFace, or tools/pack_rec.py output), for training.

The records are read by RecordIOFolder (recordio_folder.py: property, image keys, labels). Each item is
(float32 (3, 112, 112) in [-1, 1], int64 0-d label), mirrored on a coin fixed by (seed, epoch, index).

    ds = RecordIOFaces("/data/ms1m-retinaface-t1", flip=True)
    image, label = ds[0]; ds.num_classes
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from ..face_image import decode_face, face_to_tensor, should_flip
from .recordio_folder import RecordIOFolder, read_property

__all__ = ["RecordIOFaces", "read_property"]


class RecordIOFaces(RecordIOFolder, Dataset):
    """Images and integer labels of an insightface train.rec/train.idx folder."""

    def __init__(self, root: str | os.PathLike, flip: bool = True, seed: int = 0):
        super().__init__(root)
        self.flip, self.seed, self.epoch = flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that seeds the flips (call before building the epoch's DataLoader iterator)."""
        self.epoch = int(epoch)

    def encoded_face(self, index: int) -> tuple[bytes, int, bool, str]:
        """(encoded image bytes, label, flip, where) of item `index`: all but the decode (see face_batches.py)."""
        body, label, where = self.record(index)
        return body, label, self.flip and should_flip(self.seed, self.epoch, index), where

    def __getitem__(self, index: int):
        body, label, flip, where = self.encoded_face(index)
        image = decode_face(body, where, self.image_size)
        return face_to_tensor(image, flip), torch.tensor(label, dtype=torch.int64)
