"""Batch buffers in shared memory, reused between a DataLoader worker and the training process.

A fresh shared-memory segment per batch is costly: every page faults twice (the worker writes it, the
training process reads it) and its descriptor travels through a socket, about 40 + 10 us of worker CPU
per 112x112 face measured here, a third of a JPEG decode. So each worker keeps a few buffers
(SharedBatchPool) and the training process (BatchReceiver) maps each of them once:

    worker                                     training process
    take(shape): a FREE buffer, else a new one
    fill it, send it ------------------------> resolve(): map it, remember it by id, mark it MAPPED
                                               read the pixels, release(): mark it FREE
    take(shape): the same buffer, MAPPED, so
    send BufferHandle(id, shape) -------------> resolve(): the mapping it already holds

Each buffer carries a 64-byte tail after its pixels: a magic word, the state byte (IN_USE / FREE), the
mapped byte, the pooled byte and a random 64-bit id. A buffer is only overwritten after the training
process has marked it FREE, and a handle is only sent for a buffer the receiver holds, so a consumer that
never releases (another loader, a pinned copy) just gets a new buffer every time: slower, never wrong.
BatchReceiver.forget() (end of an epoch's iteration) clears the mapped bytes before dropping its mappings.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import torch

TAIL = 64  # bytes after the pixels
_MAGIC = np.frombuffer(b"FaceBat2", dtype=np.uint8)
_STATE, _MAPPED, _POOLED, _ID = 8, 9, 10, slice(16, 24)  # offsets in the tail
IN_USE, FREE = 0, 1


def shared_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised tensor in fresh shared memory: sending it to another process moves a file descriptor,
    not the data (what default_collate does for its output)."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def _tail(images: torch.Tensor) -> np.ndarray | None:
    """The writable tail of the buffer behind a uint8 CPU batch, or None when it is no such buffer."""
    storage = images.untyped_storage()
    if images.dtype != torch.uint8 or images.device.type != "cpu" or storage.nbytes() != images.numel() + TAIL:
        return None
    tail = torch.empty(0, dtype=torch.uint8).set_(storage).numpy()[-TAIL:]
    return tail if np.array_equal(tail[:_STATE], _MAGIC) else None


def _buffer_id(tail: np.ndarray) -> int:
    return int(tail[_ID].view(np.uint64)[0])


class BufferHandle(NamedTuple):
    """Sent instead of a pooled buffer the training process already maps: its id and the batch shape."""

    buffer_id: int
    shape: tuple[int, ...]


class SharedBatchPool:
    """One worker's reusable uint8 batch buffers, at most `limit` of them (0: a new buffer every time).

    With prefetch_factor p a worker has at most p batches in flight plus the one being consumed, so
    limit >= p + 2 reuses every buffer (default 4 for DataLoader's p = 2).
    """

    def __init__(self, limit: int = 4):
        self.limit, self.buffers = int(limit), []

    def take(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, BufferHandle | None]:
        """(uint8 tensor of `shape` to fill, the handle to send instead of it or None to send the tensor)."""
        pixels = math.prod(shape)
        for whole in self.buffers:
            tail = whole.numpy()[-TAIL:]
            # FREE is stored by the training process after its last read of these pixels
            if whole.numel() == pixels + TAIL and tail[_STATE] == FREE:
                tail[_STATE] = IN_USE
                handle = BufferHandle(_buffer_id(tail), tuple(shape)) if tail[_MAPPED] else None
                return whole[:pixels].view(shape), handle
        whole = shared_tensor((pixels + TAIL,), torch.uint8)
        tail = whole.numpy()[-TAIL:]
        tail[:] = 0
        tail[:_STATE] = _MAGIC
        tail[_ID] = np.frombuffer(os.urandom(8), dtype=np.uint8)
        if len(self.buffers) < self.limit:
            tail[_POOLED] = 1
            self.buffers.append(whole)
        return whole[:pixels].view(shape), None


class BatchReceiver:
    """The training process's side: turns what a worker sent into the batch tensor and hands buffers back."""

    def __init__(self):
        self.buffers: dict[int, torch.Tensor] = {}  # buffer id -> this process's mapping (whole buffer)

    def resolve(self, images: torch.Tensor | BufferHandle) -> torch.Tensor:
        if isinstance(images, BufferHandle):
            whole = self.buffers.get(images.buffer_id)
            if whole is None:
                raise RuntimeError(
                    f"a loader worker referred to shared batch buffer {images.buffer_id:#x}, which this process "
                    f"does not hold; iterate FaceBatches through one NormalisedBatches per DataLoader"
                )
            return whole[: math.prod(images.shape)].view(images.shape)
        tail = _tail(images)
        if tail is not None and tail[_POOLED] and images.is_shared():  # not a copy (e.g. pinned) of one
            self.buffers[_buffer_id(tail)] = torch.empty(0, dtype=torch.uint8).set_(images.untyped_storage())
            tail[_MAPPED] = 1
        return images

    @staticmethod
    def release(images: torch.Tensor) -> bool:
        """Mark the buffer behind `images` FREE for its worker to overwrite; call after the last read of its
        pixels. False (nothing done) for any other tensor."""
        tail = _tail(images)
        if tail is None:
            return False
        tail[_STATE] = FREE
        return True

    def forget(self) -> None:
        """Drop every mapping; the workers then send those buffers as tensors again."""
        for whole in self.buffers.values():
            whole.numpy()[-TAIL:][_MAPPED] = 0
        self.buffers.clear()
