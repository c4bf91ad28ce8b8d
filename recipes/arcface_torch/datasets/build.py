"""`config.rec` -> training dataset, verification sets and the per-rank DataLoader.

config.rec is "synthetic" (the embedded default), a RecordIO folder (train.rec, train.idx, property)
or an image folder (one sub-folder per identity).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from ..evaluation.verification_set import VerificationSet
from ..stop_signals import STOP_SIGNALS
from .face_batches import FaceBatches, NormalisedBatches, supports_batches
from .sharded_sampler import ShardedEpochSampler

SYNTHETIC = "synthetic"
SYNTHETIC_VAL_OFFSET = 1_000_000  # held-out identities never overlap training ones


def build_train_dataset(config) -> Dataset:
    """Dataset of (image (3, 112, 112) float32 in [-1, 1], label int64) with a `num_classes` attribute."""
    if config.rec == SYNTHETIC:
        from .synthetic_faces import SyntheticFaces

        s = config.synthetic
        identities = config.num_classes or s.num_identities  # an upstream config's num_classes sizes the set
        if s.identity_offset + identities > SYNTHETIC_VAL_OFFSET:
            raise ValueError(
                f"synthetic.identity_offset={s.identity_offset} with {identities} identities reaches the held-out "
                f"verification identities (from {SYNTHETIC_VAL_OFFSET}); keep identity_offset + num_identities "
                f"<= {SYNTHETIC_VAL_OFFSET}"
            )
        return SyntheticFaces(
            identities,
            s.images_per_identity,
            seed=s.seed,
            label_noise=s.label_noise,
            identity_offset=s.identity_offset,
            flip_seed=config.seed,
            preset=s.preset,
            max_yaw=s.max_yaw,
        )
    root = Path(config.rec)
    if not root.exists():
        raise FileNotFoundError(
            f"config.rec={config.rec!r} does not exist; point it at a RecordIO folder "
            f"(train.rec/train.idx/property), an image folder, or use 'synthetic'"
        )
    if (root / "train.rec").is_file():
        from .recordio_faces import RecordIOFaces

        return RecordIOFaces(root, seed=config.seed)
    if root.is_dir():
        from .image_folder_faces import ImageFolderFaces

        return ImageFolderFaces(root, seed=config.seed)
    raise ValueError(
        f"config.rec={config.rec!r} is neither a folder with train.rec nor an image folder; "
        f"pack images with tools/pack_rec.py or point to the dataset folder"
    )


def val_target_path(rec: str, target: str) -> Path:
    """A val target is a .bin path (ends in .bin or names a folder) or a name looked up as `<rec>/<name>.bin`."""
    if target.endswith(".bin") or "/" in target or "\\" in target:
        return Path(target).expanduser()
    return Path(rec) / f"{target}.bin"


def build_val_sets(config, warn: Callable[[str], None] = print) -> list[VerificationSet]:
    """One VerificationSet per entry of config.val_targets: a name (`<rec>/<name>.bin`) or a .bin path, or with
    rec = "synthetic" the held-out synthetic pairs for the name "synthetic". A missing .bin is skipped with one
    `warn` line, as upstream skips it."""
    sets = []
    for name in config.val_targets:
        if name == SYNTHETIC and config.rec == SYNTHETIC:
            from .synthetic_faces import synthetic_verification_set

            s = config.synthetic
            sets.append(
                synthetic_verification_set(
                    s.val_identities,
                    s.val_pairs,
                    seed=s.seed,
                    identity_offset=SYNTHETIC_VAL_OFFSET,
                    name=SYNTHETIC,
                    preset=s.preset,
                    max_yaw=s.max_yaw,
                )
            )
            continue
        from ..evaluation.bin_file import load_bin

        path = val_target_path(config.rec, name)
        if not path.is_file():
            warn(
                f"val target {name!r} skipped: {path} does not exist; put {name}.bin beside the .rec, give "
                f"the .bin's path, or remove it from config.val_targets"
            )
            continue
        sets.append(load_bin(path))
    return sets


def _seed_worker(worker_id: int) -> None:
    """Distinct numpy seed per worker (torch already runs each worker on one thread). The worker ignores the stop
    signals: launchers signal a rank's whole process group, and a worker that died of it would fail the
    training process's next batch before it reaches the step where it saves; the training process decides when
    to stop and then shuts its workers down (they also end when it is gone)."""
    np.random.seed(torch.initial_seed() % 2**32)
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def build_train_loader(
    dataset: Dataset, config, rank: int, world_size: int, device: torch.device | None = None
) -> tuple[DataLoader, ShardedEpochSampler]:
    """Per-rank loader of (float32 images, int64 labels) batches, and the sampler train.py sets each epoch.
    config.dali with DALI installed and a RecordIO folder: upstream's DALI input (dali_batches.py). Otherwise
    for datasets FaceBatches can read, workers decode uint8 batches and the normalising pass runs on `device`
    (the training device), after the copy."""
    if config.get("dali") and config.rec != SYNTHETIC and (Path(config.rec) / "train.rec").is_file():
        from .dali_batches import DaliBatches, dali_installed

        if dali_installed():  # upstream's DALI input; without DALI config_warnings says so and we go on
            device = device if device is not None else torch.device("cpu")
            batches = DaliBatches(config.rec, config.batch_size, rank, world_size, device, config.seed, config.dali_aug)
            return batches, batches  # it plays the sampler's part too
    # one OpenCV thread per process, set before the workers fork: changing it inside a forked worker can hang
    cv2.setNumThreads(1)
    sampler = ShardedEpochSampler(len(dataset), config.batch_size, rank, world_size, seed=config.seed)
    options = dict(
        num_workers=config.num_workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_seed_worker,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(config.seed + rank),
    )
    if supports_batches(dataset):  # whole uint8 batches decoded in place, normalised here (face_batches.py)
        batches = BatchSampler(sampler, config.batch_size, drop_last=True)
        # unpinned: the uint8 batch is copied to the device by NormalisedBatches, which then hands the
        # shared buffer back to its worker (a pinned copy would keep the worker from reusing it)
        options["pin_memory"] = False
        loader = DataLoader(
            FaceBatches(dataset, normalise=False),
            batch_size=None,
            sampler=batches,
            collate_fn=FaceBatches.collate,
            **options,
        )
        return NormalisedBatches(loader, device), sampler
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True, **options)
    return loader, sampler
