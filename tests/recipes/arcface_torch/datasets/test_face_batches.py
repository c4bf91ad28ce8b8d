"""FaceBatches and the training loader give exactly the per-face __getitem__ values, flips and labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from easydict import EasyDict as edict
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from recipes.arcface_torch.datasets.build import build_train_loader
from recipes.arcface_torch.datasets.face_batches import FaceBatches, NormalisedBatches, supports_batches
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.face_image import face_into, face_pixels_into, face_to_tensor, normalise_faces
from tests.support.packed_faces import pack_random_faces

IMAGES, CLASSES = 12, 4


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return pack_random_faces(tmp_path_factory.mktemp("rec"), IMAGES, CLASSES)


def expected(dataset, indices):
    items = [dataset[i] for i in indices]
    return torch.stack([image for image, _ in items]), torch.stack([label for _, label in items])


def test_face_pixels_then_normalise_equals_face_into_and_face_to_tensor():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)  # odd sizes: the flip must mirror every column
    pixels = np.empty_like(images)
    planes = np.empty((3, 3, 9, 7), dtype=np.float32)
    for i, flip in enumerate((False, True, True)):
        face_pixels_into(images[i], flip, pixels[i])
        face_into(images[i], flip, planes[i])
        assert torch.equal(face_to_tensor(images[i], flip), torch.from_numpy(planes[i]))
    assert torch.equal(normalise_faces(torch.from_numpy(pixels)), torch.from_numpy(planes))
    reference = (images[1][:, ::-1].transpose(2, 0, 1).astype(np.float32) - 127.5) / np.float32(127.5)
    np.testing.assert_array_equal(planes[1], reference)


@pytest.mark.parametrize("normalise", [True, False])
def test_batches_equal_stacked_items(packed, normalise):
    dataset = RecordIOFaces(packed, flip=True, seed=5)
    dataset.set_epoch(2)
    indices = [7, 0, 3, 3, 11]
    images, labels = FaceBatches(dataset, normalise=normalise)[indices]
    if not normalise:
        assert images.dtype == torch.uint8 and images.shape == (5, 112, 112, 3)
        images = normalise_faces(images)
    want_images, want_labels = expected(dataset, indices)
    assert labels.dtype == np.int64
    assert torch.equal(images, want_images) and torch.equal(torch.from_numpy(labels), want_labels)


@pytest.mark.slow
def test_worker_batches_equal_items_and_build_train_loader(packed):
    dataset = RecordIOFaces(packed, flip=True, seed=1)
    order = BatchSampler(SequentialSampler(range(IMAGES)), 5, drop_last=True)
    loader = NormalisedBatches(
        DataLoader(FaceBatches(dataset, normalise=False), batch_size=None, sampler=order, num_workers=2)
    )
    assert len(loader) == 2
    for batch, (images, labels) in enumerate(loader):
        want_images, want_labels = expected(dataset, range(5 * batch, 5 * batch + 5))
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)

    config = edict(batch_size=4, seed=3, num_workers=1)
    loader, sampler = build_train_loader(dataset, config, rank=0, world_size=1, device=torch.device("cpu"))
    sampler.set_epoch(1)
    order = list(iter(sampler))
    batches = list(loader)
    assert len(batches) == sampler.batches_per_epoch == 3
    for batch, (images, labels) in enumerate(batches):
        want_images, want_labels = expected(dataset, order[4 * batch : 4 * batch + 4])
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)


def test_datasets_without_encoded_faces_are_refused():
    assert not supports_batches(list(range(3)))
    with pytest.raises(TypeError, match="has no encoded_face"):
        FaceBatches(list(range(3)))


def worker_loader(dataset, batches: int, size: int, pool: int) -> DataLoader:
    order = BatchSampler(SequentialSampler(range(batches * size)), size, drop_last=True)
    return DataLoader(
        FaceBatches(dataset, normalise=False, pool=pool),
        batch_size=None,
        sampler=order,
        num_workers=1,
        collate_fn=FaceBatches.collate,
    )


@pytest.fixture(scope="module")
def long_packed(tmp_path_factory):
    """60 faces, so a worker goes round its buffer pool several times."""
    return pack_random_faces(tmp_path_factory.mktemp("rec60"), 60, CLASSES, seed=2)


@pytest.mark.slow
def test_pooled_worker_buffers_are_reused_after_release_and_values_stay_exact(long_packed):
    dataset = RecordIOFaces(long_packed, flip=True, seed=4)
    batches = NormalisedBatches(worker_loader(dataset, batches=12, size=5, pool=3))
    seen = []  # the worker's buffers as this process maps them
    resolve = batches.receiver.resolve

    def recording_resolve(sent):
        pixels = resolve(sent)
        seen.append((pixels.untyped_storage().data_ptr(), isinstance(sent, tuple)))
        return pixels

    batches.receiver.resolve = recording_resolve
    for batch, (images, labels) in enumerate(batches):
        want_images, want_labels = expected(dataset, range(5 * batch, 5 * batch + 5))
        assert torch.equal(images, want_images) and torch.equal(labels, want_labels)
    assert len(seen) == 12
    assert len({pointer for pointer, _ in seen}) <= 3  # every batch in one of the pool's buffers
    assert sum(handle for _, handle in seen) >= 6  # most batches came as a handle, not a descriptor
    assert batches.receiver.buffers == {}  # forgotten at the end of the iteration
    for batch, (images, _) in enumerate(batches):  # a second epoch maps the new worker's buffers afresh
        assert torch.equal(images, expected(dataset, range(5 * batch, 5 * batch + 5))[0])


@pytest.mark.slow
def test_batches_never_released_are_never_overwritten(long_packed):
    dataset = RecordIOFaces(long_packed, flip=False)
    held = [(pixels, labels) for pixels, labels in worker_loader(dataset, batches=12, size=5, pool=3)]
    assert all(isinstance(pixels, torch.Tensor) for pixels, _ in held)  # no handle without a receiver
    for batch, (pixels, labels) in enumerate(held):
        want_images, want_labels = expected(dataset, range(5 * batch, 5 * batch + 5))
        assert torch.equal(normalise_faces(pixels), want_images)
        assert torch.equal(torch.from_numpy(labels), want_labels)


def test_release_touches_only_pooled_buffers():
    from recipes.arcface_torch.datasets.shared_batches import BatchReceiver, SharedBatchPool

    pool = SharedBatchPool(limit=1)
    first, handle = pool.take((2, 4, 4, 3))
    assert handle is None and first.shape == (2, 4, 4, 3) and first.is_shared()
    receiver = BatchReceiver()
    assert receiver.resolve(first) is first and len(receiver.buffers) == 1
    assert not receiver.release(first.clone())  # a copy has no tail
    assert not receiver.release(torch.zeros(10, dtype=torch.uint8))
    second, handle = pool.take((2, 4, 4, 3))  # the first is still in use: a one-off buffer, not pooled
    assert handle is None and second.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    assert receiver.release(first)
    again, handle = pool.take((2, 4, 4, 3))
    assert again.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    assert handle is not None and handle.shape == (2, 4, 4, 3)
    assert receiver.resolve(handle).untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    receiver.forget()
    with pytest.raises(RuntimeError, match="does not hold"):
        receiver.resolve(handle)
    receiver.release(first)
    assert pool.take((2, 4, 4, 3))[1] is None  # forgotten: sent as a tensor again


def test_negative_pool_is_refused(packed):
    with pytest.raises(ValueError, match="pool=-1 must be >= 0"):
        FaceBatches(RecordIOFaces(packed), pool=-1)
