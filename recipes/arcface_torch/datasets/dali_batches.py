"""Training batches through NVIDIA DALI, as upstream's `config.dali = True` does, when DALI is installed.

Upstream's DALI input, step for step: RecordIO read by DALI's MXNet reader with a 32,768-sample shuffle
buffer, sharded by rank; JPEG decode to RGB (on the GPU, DALI's "mixed" device, when the training device is
CUDA; on the CPU otherwise); with `config.dali_aug` upstream's extra augmentation (10%: shrink to 56-89 px
and back; 20%: 3x3 Gaussian blur; 20%: hue + 0-20 deg, saturation x1-1.2; 10%: grey); a mirror on a fair coin
and (x - 127.5) / 127.5 into float32 CHW. Two DALI threads, as upstream.

Differences, all for the recipe's guarantees: only the image records are read (a header record 0 and the
identity records after the images, which upstream's DALI path reads with the images, are left out of a
private copy of the index); every shard is padded to the same size and the last partial batch dropped, so
all ranks run the same number of equal batches (sharded UNPG and the all-gathers need that); the pipeline is
seeded from config.seed and the rank. Flips and the shuffle are DALI's, not the (seed, epoch, index) flips
of the PyTorch loader, and a resumed run skips the batches already trained but does not see the same order.

    batches = DaliBatches(root, batch_size=128, rank=0, world_size=8, device=torch.device("cuda", 0), seed=0)
    batches.set_epoch(0, 0)
    for images, labels in batches: ...      # float32 (128, 3, 112, 112) on the device, int64 (128,)
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import torch

from .recordio_faces import RecordIOFaces

READER = "reader"
SHUFFLE_BUFFER = 32768  # upstream's initial_fill
THREADS = 2  # upstream's num_threads


def dali_installed() -> bool:
    return importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None


def image_index(faces: RecordIOFaces, folder: Path) -> Path:
    """The .idx DALI reads: the folder's own when every record is an image, else a copy listing only the
    image keys (in `folder`)."""
    reader = faces.reader
    if faces.keys.size == reader.keys.size:
        return reader.idx_path
    path = folder / "train_images.idx"
    path.write_text("".join(f"{key}\t{reader.offset_of(int(key))}\n" for key in faces.keys))
    return path


class DaliBatches:
    """Per-rank (float32 (n, 3, H, W) images on the pipeline's device, int64 (n,) labels) batches from DALI.

    Also plays the sampler's part for train.py: set_epoch(epoch, start_batch) and batches_per_epoch.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int,
        rank: int,
        world_size: int,
        device: torch.device,
        seed: int,
        augment: bool = False,
        threads: int = THREADS,
        shuffle_buffer: int = SHUFFLE_BUFFER,
    ):
        if not dali_installed():
            raise ImportError(
                "config.dali=True needs NVIDIA DALI (pip install nvidia-dali-cuda120, or the build for your CUDA); "
                "set config.dali=False to use the PyTorch loader"
            )
        faces = RecordIOFaces(root, flip=False)
        self.num_images = len(faces)
        padded_shard = -(-self.num_images // world_size)  # every shard padded to ceil(N / W)
        self.batches_per_epoch = padded_shard // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{root} holds {self.num_images} images, {padded_shard} per rank: no full batch of {batch_size}; "
                f"lower batch_size"
            )
        self.folder = tempfile.TemporaryDirectory(prefix="dali-index-")  # removed with this object
        index = image_index(faces, Path(self.folder.name))
        self.device = torch.device(device)
        self.pipeline = build_pipeline(
            faces.reader.rec_path,
            index,
            batch_size,
            rank,
            world_size,
            self.device,
            seed=seed * 1000 + rank,
            augment=augment,
            threads=threads,
            shuffle_buffer=shuffle_buffer,
        )
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        self.iterator = DALIGenericIterator(
            [self.pipeline], ["images", "labels"], reader_name=READER, last_batch_policy=LastBatchPolicy.DROP
        )
        self.start_batch, self.started = 0, False

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Each epoch is DALI's next pass over its shuffle; only where to start within it is ours."""
        self.start_batch = int(start_batch)

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch

    def __iter__(self):
        if self.started:
            self.iterator.reset()  # the previous epoch ran to its end: the next one
        self.started = True
        for batch, outputs in enumerate(self.iterator):
            if batch >= self.batches_per_epoch:
                break
            if batch < self.start_batch:
                continue  # resumed mid-epoch: these steps are already trained
            images, labels = outputs[0]["images"], outputs[0]["labels"]
            yield images, labels.reshape(labels.shape[0], -1)[:, 0].long()


def build_pipeline(
    rec: Path,
    index: Path,
    batch_size: int,
    rank: int,
    world_size: int,
    device: torch.device,
    seed: int,
    augment: bool,
    threads: int,
    shuffle_buffer: int,
):
    """The DALI pipeline (built): outputs float32 CHW images in [-1, 1] and the records' float labels."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali.pipeline import Pipeline

    on_gpu = device.type == "cuda"
    pipeline = Pipeline(
        batch_size=batch_size,
        num_threads=threads,
        device_id=(device.index or 0) if on_gpu else None,
        seed=seed,
        prefetch_queue_depth=1,
    )
    with pipeline:
        encoded, labels = fn.readers.mxnet(
            path=[str(rec)],
            index_path=[str(index)],
            initial_fill=shuffle_buffer,
            num_shards=world_size,
            shard_id=rank,
            random_shuffle=True,
            pad_last_batch=True,
            name=READER,
        )
        images = fn.decoders.image(encoded, device="mixed" if on_gpu else "cpu", output_type=types.RGB)
        if augment:
            images = upstream_augmentation(images, fn, types)
        images = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            mean=[127.5] * 3,
            std=[127.5] * 3,
            mirror=fn.random.coin_flip(probability=0.5),
        )
        pipeline.set_outputs(images, labels)
    pipeline.build()
    return pipeline


def upstream_augmentation(images, fn, types):
    """upstream's dali_aug, each step applied to a sample with its probability (uint8 HWC in and out)."""

    def choose(condition, applied, unchanged):  # per sample: applied where condition is 1
        condition = fn.cast(condition, dtype=types.UINT8)
        return condition * applied + (condition ^ 1) * unchanged

    height, width = 112, 112
    images = fn.cast(images, dtype=types.UINT8)
    small = fn.random.uniform(range=(int(112 * 0.5), int(112 * 0.8)), dtype=types.FLOAT)
    shrunk = fn.resize(fn.resize(images, resize_x=small, resize_y=small), size=(height, width))
    images = fn.cast(choose(fn.random.coin_flip(probability=0.1), shrunk, images), dtype=types.UINT8)
    window = fn.random.uniform(range=(1, 2), dtype=types.INT32) * 2 + 1  # 3, as upstream draws it
    blurred = fn.gaussian_blur(images, window_size=window)
    images = fn.cast(choose(fn.random.coin_flip(probability=0.2), blurred, images), dtype=types.UINT8)
    hued = fn.hsv(
        images,
        hue=fn.random.uniform(range=(0.0, 20.0), dtype=types.FLOAT),
        saturation=fn.random.uniform(range=(1.0, 1.2), dtype=types.FLOAT),
    )
    images = fn.cast(choose(fn.random.coin_flip(probability=0.2), hued, images), dtype=types.UINT8)
    keep_colour = fn.cast(fn.random.coin_flip(probability=0.9), dtype=types.FLOAT)
    return fn.hsv(images, saturation=keep_colour)
