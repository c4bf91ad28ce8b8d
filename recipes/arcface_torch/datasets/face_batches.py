"""Whole training batches read in one call, each face decoded straight into its slot of the batch tensor.

Profiling one DataLoader worker on RecordIO (benchmarks/bench_decode.py) showed that beyond the JPEG decode
its time went to memory, not arithmetic: a fresh 150 KB float32 tensor per face, the collate copy of all
of them into a new shared-memory batch, and the page faults of that shared segment (9.6 MB at batch 64),
first in the worker and again in the training process. `FaceBatches` takes a whole batch per item (the
list of indices a BatchSampler yields), allocates it once (in shared memory inside a worker, as
default_collate does) and writes each decoded face into its slot. With normalise=False (what the training
loader uses) the batch is uint8 (n, H, W, 3) RGB, flipped: a quarter of the bytes to share and fault in,
and one copy per face; `NormalisedBatches` then makes the float32 (n, 3, H, W) (x - 127.5) / 127.5 batch in
the training process in one vectorised pass (on the training device, after the copy there).
Values and flips are bit for bit those of the wrapped dataset's __getitem__.

Inside a worker the uint8 batches come from a small pool of shared buffers that the worker reuses once
NormalisedBatches has read them (shared_batches.py): no fresh shared segment, no page faults and no
descriptor hand-off per batch. Labels travel as a NumPy array (pickled bytes, with FaceBatches.collate as the loader's collate_fn): a
64-label tensor would cost its own shared-memory segment and descriptor hand-off, 35 us per face here.

    loader = DataLoader(FaceBatches(faces), batch_size=None, sampler=BatchSampler(sampler, 128, drop_last=True),
                        collate_fn=FaceBatches.collate)
    images, labels = next(iter(loader))       # float32 (128, 3, 112, 112), int64 numpy (128,)

`faces` provides image_size (H, W) and encoded_face(index) -> (bytes, label, flip, where), as RecordIOFaces does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..face_image import decode_face, face_into, face_pixels_into, normalise_faces
from .shared_batches import BatchReceiver, BufferHandle, SharedBatchPool, shared_tensor


def supports_batches(dataset) -> bool:
    """True when `dataset` can be read through FaceBatches."""
    return callable(getattr(dataset, "encoded_face", None)) and hasattr(dataset, "image_size")


class FaceBatches(Dataset):
    """Item = list of indices of `faces` -> (images, labels int64 NumPy (n,)); images float32 (n, 3, H, W) in
    [-1, 1], or with normalise=False uint8 (n, H, W, 3) RGB (flipped) for NormalisedBatches to finish.
    `pool`: reusable shared batch buffers per DataLoader worker (uint8 batches only; 0 = a fresh one each)."""

    def __init__(self, faces, normalise: bool = True, pool: int = 4):
        if not supports_batches(faces):
            raise TypeError(
                f"{type(faces).__name__} has no encoded_face(index) and image_size, so FaceBatches "
                f"cannot read it; use a plain DataLoader over it instead"
            )
        if pool < 0:
            raise ValueError(f"pool={pool} must be >= 0 reusable batch buffers per worker (0 turns reuse off)")
        self.faces, self.normalise, self.pool_limit = faces, bool(normalise), int(pool)
        self._pool: SharedBatchPool | None = None  # made in the worker process (after the fork)

    def _images(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, BufferHandle | None]:
        """(tensor to fill, what to send instead of it or None)."""
        if get_worker_info() is None:
            return torch.empty(shape, dtype=dtype), None
        if dtype != torch.uint8:
            return shared_tensor(shape, dtype), None
        if self._pool is None:
            self._pool = SharedBatchPool(self.pool_limit)
        return self._pool.take(shape)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, indices: Sequence[int]):
        height, width = self.faces.image_size
        if self.normalise:
            (images, handle), write = self._images((len(indices), 3, height, width), torch.float32), face_into
        else:
            (images, handle), write = self._images((len(indices), height, width, 3), torch.uint8), face_pixels_into
        labels = np.empty(len(indices), dtype=np.int64)
        slots = images.numpy()
        for slot, index in enumerate(indices):
            data, labels[slot], flip, where = self.faces.encoded_face(int(index))
            write(decode_face(data, where, (height, width)), flip, slots[slot])
        return (images if handle is None else handle), labels

    @staticmethod
    def collate(batch):
        """The DataLoader collate_fn for FaceBatches: the item as it is (the default would turn the labels into
        a tensor inside the worker, which then travels through shared memory)."""
        return batch


class NormalisedBatches:
    """Iterable over (uint8 images, labels) batches -> (float32 (x - 127.5) / 127.5 images, int64 tensor labels);
    len() and iteration as the wrapped loader's. With `device`, the uint8 batch is copied there first and
    normalised there (a quarter of the bytes to move). Each pooled batch is released to its worker once read."""

    def __init__(self, batches: Iterable, device: torch.device | str | None = None):
        self.batches, self.device = batches, None if device is None else torch.device(device)
        self.receiver = BatchReceiver()  # the workers' pooled buffers, mapped once per epoch's iteration

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        try:
            for sent, labels in self.batches:
                pixels = self.receiver.resolve(sent)
                images = normalise_faces(pixels if self.device is None else pixels.to(self.device))
                self.receiver.release(pixels)  # after the last read of the pixels
                yield images, torch.as_tensor(labels)
        finally:
            self.receiver.forget()
