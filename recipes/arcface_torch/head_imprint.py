"""Imprinted class centres (`config.init_head = "imprint"`), as in Qi, Brown and Lowe, "Low-Shot Learning with
Imprinted Weights" (CVPR 2018): before step 0, each class centre starts at the normalised mean of the normalised
embeddings of its training images,

    W_c = m_c / |m_c|,   m_c = sum_{i : y_i = c} x_i / |x_i|        (x_i = backbone(image_i), eval mode, no flip)

(normalising the sum or the mean is the same). One no-grad pass of the loaded backbone over the training set.

Distributed: rank r embeds images r, r + R, r + 2R, ... (R ranks, every image once); its per-class sums and counts,
one float64 (C, D + 1) tensor, are reduced shard by shard to the rank that owns the shard's centres (PartialFC's
contiguous shards), so every centre equals the one-process computation up to float rounding. Memory: C x (D + 1)
float64 per rank (100k classes x 512: 410 MB). Classes without an image keep their random init.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from plugins.partial_fc import class_shard


@dataclass
class ImprintReport:
    """Totals over all ranks: images embedded, centres imprinted, centres left at their random init, seconds."""

    images: int
    imprinted: int
    empty: int
    seconds: float


@contextmanager
def unflipped(dataset: Dataset) -> Iterator[Dataset]:
    """`dataset` with its random horizontal flip off (datasets of this recipe have a `flip` switch)."""
    had_flip = hasattr(dataset, "flip")
    previous = getattr(dataset, "flip", None)
    if had_flip:
        dataset.flip = False
    try:
        yield dataset
    finally:
        if had_flip:
            dataset.flip = previous


@torch.no_grad()
def class_sums(
    backbone: torch.nn.Module,
    dataset: Dataset,
    num_classes: int,
    embedding_size: int,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int = 128,
    num_workers: int = 0,
    device: torch.device | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, int]:
    """(sums float64 (C, D + 1): per class the sum of x_i / |x_i| over this rank's images and, last column, their
    count; number of images this rank embedded). The backbone runs in eval mode; its mode is restored after."""
    from tqdm import tqdm

    indices = list(range(rank, len(dataset), world_size))
    loader = DataLoader(
        Subset(dataset, indices),
        batch_size=batch_size,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(0),  # the workers' seeds: the run's RNG streams stay untouched
    )
    sums = torch.zeros(num_classes, embedding_size + 1, dtype=torch.float64, device=device)
    was_training = backbone.training
    backbone.eval()
    try:
        with unflipped(dataset):
            for images, labels in tqdm(loader, desc="imprint", disable=not progress, file=sys.stderr, leave=False):
                images, labels = images.to(sums.device), labels.reshape(-1).long().to(sums.device)
                low, high = (int(v) for v in torch.aminmax(labels)) if labels.numel() else (0, 0)
                if low < 0 or high >= num_classes:
                    bad = low if low < 0 else high
                    raise ValueError(
                        f"label {bad} is outside [0, num_classes={num_classes}); set config.num_classes to the "
                        f"dataset's class count or fix the labels"
                    )
                x = F.normalize(backbone(images).double(), dim=1)  # (b, D)
                sums.index_add_(0, labels, torch.cat([x, x.new_ones(x.size(0), 1)], dim=1))
    finally:
        backbone.train(was_training)
    return sums, len(indices)


@torch.no_grad()
def imprint_from_sums(head: torch.nn.Module, sums: torch.Tensor, images: int, started: float) -> ImprintReport:
    """Set this rank's shard of `head.weight` (PartialFC: rows class_start .. class_start + num_local) from every
    rank's `class_sums`; every rank calls it (it reduces across ranks). Returns the totals over all ranks."""
    num_classes, world_size = head.num_classes, head.world_size
    if world_size > 1:
        for owner in range(world_size):
            start, count = class_shard(num_classes, owner, world_size)
            # collective: the per-class sums and counts of owner's classes, summed over ranks, land on owner
            dist.reduce(sums[start : start + count], dst=owner)
    shard = sums[head.class_start : head.class_start + head.num_local]
    seen = shard[:, -1] > 0
    centres = F.normalize(shard[seen, :-1], dim=1)
    head.weight[seen.to(head.weight.device)] = centres.to(head.weight.device, head.weight.dtype)
    totals = torch.tensor([images, int(seen.sum()), int((~seen).sum())], dtype=torch.int64, device=sums.device)
    if world_size > 1:
        dist.all_reduce(totals)  # collective: images embedded and centres imprinted / left random, over all ranks
    images, imprinted, empty = (int(v) for v in totals.tolist())
    return ImprintReport(images, imprinted, empty, time.time() - started)


def imprint_class_centres(
    head: torch.nn.Module,
    backbone: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 128,
    num_workers: int = 0,
    device: torch.device | None = None,
    progress: bool = False,
) -> ImprintReport:
    """`class_sums` over this rank's images, then `imprint_from_sums`: the whole imprint, called on every rank."""
    started = time.time()
    device = device if device is not None else head.weight.device
    sums, images = class_sums(
        backbone,
        dataset,
        head.num_classes,
        head.embedding_size,
        head.rank,
        head.world_size,
        batch_size,
        num_workers,
        device,
        progress,
    )
    return imprint_from_sums(head, sums, images, started)
