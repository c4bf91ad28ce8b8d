"""Upstream's DALI input (config.dali): image records only, our decode's values, labels, mirror, equal shards.

Runs where NVIDIA DALI is installed (CPU-only pipelines work without a GPU); skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from easydict import EasyDict as edict

from recipes.arcface_torch.datasets.build import build_train_loader
from recipes.arcface_torch.datasets.dali_batches import DaliBatches, dali_installed
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces
from recipes.arcface_torch.face_image import decode_face, face_to_tensor
from tests.support.packed_faces import pack_random_faces

pytestmark = pytest.mark.skipif(not dali_installed(), reason="NVIDIA DALI is not installed")
IMAGES, CLASSES = 50, 7


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """An insightface-style folder: header record 0 (images are keys 1..50), then identity records."""
    return pack_random_faces(tmp_path_factory.mktemp("rec"), IMAGES, CLASSES, header=True)


def references(root):
    faces = RecordIOFaces(root, flip=False)
    images = torch.stack(
        [face_to_tensor(decode_face(faces.encoded_face(i)[0], "ref"), False) for i in range(len(faces))]
    )
    labels = torch.tensor([faces.encoded_face(i)[1] for i in range(len(faces))])
    return images, labels


def match(images, reference):
    """Index of the reference face each image is (either way round) and the largest pixel difference."""
    flat = reference.reshape(len(reference), -1)
    as_is = torch.cdist(images.reshape(len(images), -1), flat)
    mirrored = torch.cdist(images.flip(3).reshape(len(images), -1), flat)
    best = torch.minimum(as_is, mirrored).argmin(1)
    flipped = mirrored.gather(1, best[:, None])[:, 0] < as_is.gather(1, best[:, None])[:, 0]
    expected = torch.where(flipped[:, None, None, None], reference[best].flip(3), reference[best])
    return best, float((images - expected).abs().max()), flipped


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# the CPU decode is libjpeg-turbo's, as OpenCV's; the GPU's (nvJPEG) rounds its IDCT differently by a few levels
TOLERANCE = {"cpu": 1e-6, "cuda": 4 / 127.5}


@pytest.mark.parametrize("device", DEVICES)
def test_two_shards_cover_the_images_with_equal_batches_and_our_values(packed, device):
    reference, reference_labels = references(packed)
    shards = [DaliBatches(packed, 8, rank, 2, torch.device(device), seed=3) for rank in range(2)]
    assert [shard.batches_per_epoch for shard in shards] == [3, 3]  # ceil(50 / 2) = 25 per shard: 3 of 8
    seen, flips = [], []
    for epoch in range(2):
        for shard in shards:
            shard.set_epoch(epoch, 0)
            batches = list(shard)
            assert len(batches) == 3
            for images, labels in batches:
                assert images.device.type == device
                images, labels = images.cpu(), labels.cpu()
                assert images.shape == (8, 3, 112, 112) and images.dtype == torch.float32
                assert labels.dtype == torch.int64 and labels.shape == (8,)
                index, worst, flipped = match(images, reference)
                assert worst <= TOLERANCE[device]  # the same decode and (x - 127.5) / 127.5
                assert torch.equal(labels, reference_labels[index])
                seen += index.tolist()
                flips += flipped.tolist()
    assert len(set(seen)) >= 40  # image records only (no header or identity record), across both shards
    assert 0.25 < np.mean(flips) < 0.75  # a fair coin


def test_resume_skips_the_trained_batches(packed):
    batches = DaliBatches(packed, 8, 0, 1, torch.device("cpu"), seed=0)
    batches.set_epoch(0, 4)
    assert len(batches) == 2 and len(list(batches)) == 2


def test_upstream_augmentation_keeps_shape_and_range(packed):
    batches = DaliBatches(packed, 16, 0, 1, torch.device("cpu"), seed=1, augment=True)
    batches.set_epoch(0, 0)
    for images, _ in batches:
        assert images.shape == (16, 3, 112, 112) and -1.0 <= float(images.min()) <= float(images.max()) <= 1.0


def test_build_train_loader_takes_dali_when_asked(packed):
    config = edict(rec=str(packed), dali=True, dali_aug=False, batch_size=8, seed=0, num_workers=0)
    loader, sampler = build_train_loader(RecordIOFaces(packed), config, 0, 1, torch.device("cpu"))
    assert isinstance(loader, DaliBatches) and sampler is loader and sampler.batches_per_epoch == 6
