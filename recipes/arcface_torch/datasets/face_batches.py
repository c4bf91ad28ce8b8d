"""Whole training batches read in one call, each face decoded straight into its slot of the batch tensor.

Profiling one DataLoader worker on RecordIO (benchmarks/bench_decode.py) showed that beyond the JPEG decode
its time went to memory, not arithmetic: a fresh 150 KB float32 tensor per face, the collate copy of all
of them into a new shared-memory batch, and the page faults of that shared segment (9.6 MB at batch 64),
first in the worker and again in the training process. `FaceBatches` takes a whole batch per item (the
list of indices a BatchSampler yields), allocates it once (in shared memory inside a worker, as
default_collate does) and writes each decoded face into its slot. With normalise=False (what the training
loader uses) the batch is uint8 (n, H, W, 3) RGB, flipped: a quarter of the bytes to share and fault in,
and one copy per face; `NormalisedBatches` then makes the float32 (n, 3, H, W) (x - 127.5) / 127.5 batch in
the training process in one vectorised pass (on a GPU that pass belongs after the host-to-device copy).
Values and flips are bit for bit those of the wrapped dataset's __getitem__.

    loader = DataLoader(FaceBatches(faces), batch_size=None, sampler=BatchSampler(sampler, 128, drop_last=True))
    images, labels = next(iter(loader))       # float32 (128, 3, 112, 112), int64 (128,)

`faces` provides image_size (H, W) and encoded_face(index) -> (bytes, label, flip, where), as RecordIOFaces does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..face_image import decode_face, face_into, face_pixels_into, normalise_faces


def supports_batches(dataset) -> bool:
    """True when `dataset` can be read through FaceBatches."""
    return callable(getattr(dataset, "encoded_face", None)) and hasattr(dataset, "image_size")


def _batch_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised tensor; inside a DataLoader worker its storage is shared memory, so sending it to the
    training process moves a file descriptor, not the pixels (what default_collate does for its output)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


class FaceBatches(Dataset):
    """Item = list of indices of `faces` -> (images, int64 (n,) labels); images float32 (n, 3, H, W) in [-1, 1],
    or with normalise=False uint8 (n, H, W, 3) RGB (flipped) for NormalisedBatches to finish."""

    def __init__(self, faces, normalise: bool = True):
        if not supports_batches(faces):
            raise TypeError(
                f"{type(faces).__name__} has no encoded_face(index) and image_size, so FaceBatches "
                f"cannot read it; use a plain DataLoader over it instead"
            )
        self.faces, self.normalise = faces, bool(normalise)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, indices: Sequence[int]):
        height, width = self.faces.image_size
        if self.normalise:
            images, write = _batch_tensor((len(indices), 3, height, width), torch.float32), face_into
        else:
            images, write = _batch_tensor((len(indices), height, width, 3), torch.uint8), face_pixels_into
        labels = np.empty(len(indices), dtype=np.int64)
        slots = images.numpy()
        for slot, index in enumerate(indices):
            data, labels[slot], flip, where = self.faces.encoded_face(int(index))
            write(decode_face(data, where, (height, width)), flip, slots[slot])
        return images, torch.from_numpy(labels)


class NormalisedBatches:
    """Iterable over (uint8 images, labels) batches -> (float32 (x - 127.5) / 127.5 images, labels); len() and
    iteration as the wrapped loader's."""

    def __init__(self, batches: Iterable):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.batches:
            yield normalise_faces(images), labels
