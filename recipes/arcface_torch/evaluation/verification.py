"""Pair verification accuracy exactly as insightface's arcface_torch reports it (LFW / CFP-FP / AgeDB-30).

Protocol (upstream `eval/verification.py`):
  1. embeddings with flip: e = f(x) + f(flip_lr(x)), then L2-normalised (the sum is normalised, not
     each term); XNorm = mean L2 norm of the un-normalised f(x) and f(flip_lr(x)) rows;
  2. distance of pair k = squared L2 distance between rows 2k and 2k+1 (in [0, 4]);
  3. thresholds np.arange(0, 4, 0.01); 10 contiguous folds (KFold without shuffling: the first
     P % 10 folds hold one pair more); a pair is predicted "same" when distance < threshold (strict);
  4. per fold: the first threshold with the highest accuracy on the 9 other folds, applied to the
     held-out fold; report mean +- std (population std) of the 10 held-out accuracies.
Computed in float64 like upstream, so the numbers match to the last printed digit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..face_image import INPUT_MEAN, INPUT_STD
from .tar_far import tar_at_far_details
from .verification_set import VerificationSet

THRESHOLDS = np.arange(0, 4, 0.01)
DEFAULT_FARS: tuple[float, ...] = (1e-3, 1e-4)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel (rank-0-only evaluation must not sync)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first floating parameter or buffer (CPU float32 if none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def images_to_input(images: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> (N, 3, H, W) in `dtype`, normalised (x - 127.5) / 127.5 as in training."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device=device)
    batch = batch.permute(0, 3, 1, 2).float().sub_(INPUT_MEAN).div_(INPUT_STD)
    return batch.to(dtype=dtype).contiguous()


@torch.no_grad()
def embed_with_flip(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Raw embeddings of images (N, H, W, 3) and of their left-right flips: two float64 (N, D) arrays.

    Runs in eval mode under no_grad on the model's device and dtype; the model's train/eval mode
    is restored afterwards.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size is {batch_size}; it must be a positive integer such as 64")
    model = unwrap_model(model)
    device, dtype = model_device_dtype(model)
    was_training = model.training
    model.eval()
    plain: list[np.ndarray] = []
    flipped: list[np.ndarray] = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images_to_input(images[start : start + batch_size], device, dtype)
            for source, target in ((batch, plain), (torch.flip(batch, dims=[3]), flipped)):
                output = model(source)
                if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != source.shape[0]:
                    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                    raise ValueError(
                        f"the model returned {shape} for a batch of {source.shape[0]} images; "
                        f"an embedding model must return one (N, D) tensor"
                    )
                target.append(output.detach().to(device="cpu", dtype=torch.float64).numpy())
    finally:
        model.train(was_training)
    return np.concatenate(plain, axis=0), np.concatenate(flipped, axis=0)


def l2_normalize(rows: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; all-zero rows stay zero (as sklearn.preprocessing.normalize does)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    return rows / norms


def distinct_images(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first copy of each distinct image (U,) and, per image (N,), its position among those U.

    A .bin repeats images (every face of LFW sits in several pairs); embedding each distinct one once gives
    the same embeddings for a fraction of the work: embeddings[inverse] restores the N rows.
    """
    position: dict[bytes, int] = {}
    inverse = np.empty(images.shape[0], dtype=np.int64)
    first: list[int] = []
    for index in range(images.shape[0]):
        key = hashlib.blake2b(np.ascontiguousarray(images[index]).tobytes(), digest_size=16).digest()
        slot = position.setdefault(key, len(first))
        if slot == len(first):
            first.append(index)
        inverse[index] = slot
    return np.asarray(first, dtype=np.int64), inverse


def embed_distinct_with_flip(
    model: nn.Module, images: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """embed_with_flip for images (N, H, W, 3) that repeat: each distinct image goes through the model once."""
    first, inverse = distinct_images(images)
    plain, flipped = embed_with_flip(model, images[first], batch_size)
    return plain[inverse], flipped[inverse]


def embed_verification_set(model: nn.Module, vset: VerificationSet, batch_size: int = 64) -> np.ndarray:
    """Flip-test embeddings (2P, D) float64: normalize(f(x) + f(flip x)), each distinct image embedded once."""
    plain, flipped = embed_distinct_with_flip(model, vset.images, batch_size)
    return l2_normalize(plain + flipped)


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance between rows 2k and 2k+1 of embeddings (2P, D): (P,)."""
    if embeddings.ndim != 2 or embeddings.shape[0] % 2:
        raise ValueError(
            f"embeddings have shape {tuple(embeddings.shape)}; pass (2P, D) with pair k in rows 2k and 2k+1"
        )
    diff = embeddings[0::2] - embeddings[1::2]
    return np.sum(np.square(diff), axis=1)


def kfold_splits(num_pairs: int, n_folds: int = 10) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, test indices) per fold; contiguous folds, the first num_pairs % n_folds one larger."""
    if n_folds < 2 or num_pairs < n_folds:
        raise ValueError(
            f"{n_folds}-fold evaluation needs n_folds >= 2 and at least {max(n_folds, 2)} pairs, got {num_pairs} pairs"
        )
    sizes = np.full(n_folds, num_pairs // n_folds, dtype=np.int64)
    sizes[: num_pairs % n_folds] += 1
    indices = np.arange(num_pairs)
    splits = []
    start = 0
    for size in sizes:
        test = indices[start : start + size]
        train = np.concatenate([indices[:start], indices[start + size :]])
        splits.append((train, test))
        start += size
    return splits


def kfold_accuracy(
    distances: np.ndarray,
    issame: Sequence[bool],
    n_folds: int = 10,
    thresholds: np.ndarray = THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy (n_folds,) and chosen threshold (n_folds,) per fold for pair distances (P,)."""
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if distances.shape[0] != issame.shape[0]:
        raise ValueError(f"{distances.shape[0]} distances for {issame.shape[0]} issame labels; pass one label per pair")
    # correct[t, p]: whether threshold t classifies pair p right; accuracies are exact counts / size.
    correct = (distances[None, :] < thresholds[:, None]) == issame[None, :]
    accuracies = np.zeros(n_folds)
    best = np.zeros(n_folds)
    for fold, (train, test) in enumerate(kfold_splits(distances.shape[0], n_folds)):
        train_accuracy = correct[:, train].sum(axis=1) / float(train.shape[0])
        index = int(np.argmax(train_accuracy))
        best[fold] = thresholds[index]
        accuracies[fold] = correct[index, test].sum() / float(test.shape[0])
    return accuracies, best


def ten_fold_accuracy(distances_or_embeddings: np.ndarray, issame: Sequence[bool], n_folds: int = 10):
    """(accuracy mean, accuracy std, best thresholds (n_folds,)) from distances (P,) or embeddings (2P, D).

    Embeddings should already be L2-normalised (as embed_verification_set returns them).
    """
    values = np.asarray(distances_or_embeddings, dtype=np.float64)
    distances = pair_distances(values) if values.ndim == 2 else values
    accuracies, best = kfold_accuracy(distances, issame, n_folds)
    return float(np.mean(accuracies)), float(np.std(accuracies)), best


def evaluate(
    model: nn.Module,
    vset: VerificationSet,
    batch_size: int = 64,
    n_folds: int = 10,
    fars: Sequence[float] = DEFAULT_FARS,
) -> dict[str, object]:
    """Embed `vset` with flip (each distinct image once) and report the upstream numbers plus TAR@FAR and the
    pair similarities.

    Returns {"name", "num_pairs", "accuracy", "accuracy_std", "fold_accuracies" (n_folds,),
    "best_thresholds" (n_folds,), "xnorm", "tar_at_far" {far: tar, NaN if unsupported},
    "tar_at_far_notes" {far: reason or ""}, "positive_similarities" (P_same,),
    "negative_similarities" (P_diff,)}; similarities are cosines of the flip-test embeddings.
    """
    plain, flipped = embed_distinct_with_flip(model, vset.images, batch_size)
    xnorm = float(np.mean(np.linalg.norm(np.concatenate([plain, flipped], axis=0), axis=1)))
    embeddings = l2_normalize(plain + flipped)
    distances = pair_distances(embeddings)
    accuracies, best = kfold_accuracy(distances, vset.issame, n_folds)
    cosines = np.sum(embeddings[0::2] * embeddings[1::2], axis=1)
    details = tar_at_far_details(cosines, vset.issame, fars)
    return {
        "name": vset.name,
        "num_pairs": vset.num_pairs,
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "best_thresholds": best,
        "xnorm": xnorm,
        "tar_at_far": {far: item["tar"] for far, item in details.items()},
        "tar_at_far_notes": {far: item["note"] for far, item in details.items()},
        "positive_similarities": cosines[vset.issame],
        "negative_similarities": cosines[~vset.issame],
    }
