"""Test sets of whole identities (a folder of faces per person): every pair scored, plus balanced pairs.

A .bin holds a fixed list of pairs; an identity set holds N faces with identity labels, so it can be
scored over all N(N-1)/2 pairs (enough negatives for TAR at small FARs) and, for the 10-fold accuracy
that insightface reports, over a balanced pair list drawn from it:

    images, identity = load_identity_folder("/data/test_faces")     # uint8 (N, 112, 112, 3), int64 (N,)
    result = evaluate_identity_set(model, images, identity, fars=(1e-2, 1e-3, 1e-4))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from ..face_files import list_identity_folder
from ..face_image import decode_face
from .balanced_pairs import balanced_pairs
from .plots import similarity_overlap
from .tar_far import roc_curve, tar_at_far_details
from .verification import embed_with_flip, l2_normalize, ten_fold_accuracy


def load_identity_folder(
    root: str | os.PathLike, image_size: tuple[int, int] = (112, 112)
) -> tuple[np.ndarray, np.ndarray]:
    """Faces of an identity-per-folder tree, resized to `image_size` if needed: uint8 (N, H, W, 3) RGB, labels int64 (N,)."""
    _, samples = list_identity_folder(Path(root))
    images = np.stack([decode_face(path.read_bytes(), str(path), image_size, resize=True) for path, _ in samples])
    return images, np.array([label for _, label in samples], dtype=np.int64)


def evaluate_identity_set(
    model: nn.Module,
    images: np.ndarray,
    identity: np.ndarray,
    fars: Sequence[float] = (1e-2, 1e-3, 1e-4),
    batch_size: int = 64,
) -> dict:
    """Flip-test embeddings of every face, then:
    "accuracy": 10-fold accuracy over `balanced_pairs`; "tar_at_far" {far: TAR or NaN}, "tar_at_far_notes"
    {far: why NaN or ""}, "overlap", "roc" (fpr, tpr), "positive_similarities"/"negative_similarities":
    all N(N-1)/2 pairs; "pairs" {"positive", "negative"} counts of all pairs."""
    plain, flipped = embed_with_flip(model, images, batch_size)
    embeddings = l2_normalize(plain + flipped)
    pairs, issame = balanced_pairs(identity)
    distances = np.sum(np.square(embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]]), axis=1)
    accuracy, accuracy_std, _ = ten_fold_accuracy(distances, issame)
    first, second = np.triu_indices(embeddings.shape[0], k=1)
    scores = (embeddings @ embeddings.T)[first, second]
    same = identity[first] == identity[second]
    details = tar_at_far_details(scores, same, fars)
    fpr, tpr, _ = roc_curve(scores, same)
    return {
        "accuracy": accuracy,
        "accuracy_std": accuracy_std,
        "tar_at_far": {far: item["tar"] for far, item in details.items()},
        "tar_at_far_notes": {far: item["note"] for far, item in details.items()},
        "overlap": similarity_overlap(scores[same], scores[~same]),
        "roc": (fpr, tpr),
        "positive_similarities": scores[same],
        "negative_similarities": scores[~same],
        "pairs": {"positive": int(same.sum()), "negative": int((~same).sum())},
    }
