"""Unrecognisable faces made from training faces, embedded by the backbone: the centre the "ri" loss needs.

At the start of every epoch from ri.start_epoch on, train.py calls `refresh_unrecognisable_centres`: the same
ri.centre_images training faces on every run (drawn from (seed, epoch)), each rank taking its share, are shrunk
to ri.centre_size pixels and blurred (degradations.unrecognisable), embedded by the backbone in eval mode, and
handed to the loss, which averages their unit embeddings over all ranks into the centre and scores them for
mu_UI. Nothing here draws from the global RNGs, so a resumed run rebuilds the same centre.

`centre_of_faces` builds the same centre post hoc, in one process, for any model and any faces (the ERS cosine of
an ArcFace or MagFace model; `unpg-face-quality --build-centre`).
"""

from __future__ import annotations

import numpy as np
import torch

from .degradations import unrecognisable
from .face_image import INPUT_MEAN, INPUT_STD

_INDEX_STREAM = 31
_EMBED_BATCH = 128


def tensor_to_face(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) network input (x - 127.5) / 127.5 -> uint8 (H, W, 3) RGB."""
    pixels = image.detach().float().cpu() * INPUT_STD + INPUT_MEAN
    return pixels.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def faces_to_input(faces: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) network input."""
    batch = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float()
    return batch.sub_(INPUT_MEAN).div_(INPUT_STD)


@torch.no_grad()
def embed_faces(backbone: torch.nn.Module, faces: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB faces -> (N, D) float32 embeddings, backbone in eval mode (its mode restored)."""
    was_training = backbone.training
    backbone.eval()
    try:
        rows = [
            backbone(faces_to_input(faces[start : start + _EMBED_BATCH]).to(device)).float()
            for start in range(0, len(faces), _EMBED_BATCH)
        ]
    finally:
        backbone.train(was_training)
    return torch.cat(rows)


def centre_indices(dataset_size: int, count: int, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of `count` training-set indices drawn without replacement from (seed, epoch); every
    rank gets the same number (count rounded down to a multiple of world_size, at least one each)."""
    per_rank = max(1, min(count, dataset_size) // world_size)
    rng = np.random.default_rng((int(seed), _INDEX_STREAM, int(epoch)))
    picked = rng.choice(dataset_size, size=per_rank * world_size, replace=dataset_size < per_rank * world_size)
    return picked[rank * per_rank : (rank + 1) * per_rank]


def unrecognisable_training_faces(dataset, indices, size: int, blur: float) -> tuple[np.ndarray, torch.Tensor]:
    """(uint8 (n, H, W, 3) degraded faces, int64 (n,) labels) for dataset items `indices`."""
    faces, labels = [], []
    for index in indices:
        image, label = dataset[int(index)]
        faces.append(unrecognisable(tensor_to_face(image), size, blur))
        labels.append(int(label))
    return np.stack(faces), torch.tensor(labels, dtype=torch.int64)


def refresh_unrecognisable_centres(head, backbone, dataset, epoch: int, seed: int, rank: int, world_size: int, device):
    """Rebuild the centre of every loss of `head` that needs one and is active from `epoch` on (call on every
    rank at the start of the epoch). Returns the number of losses refreshed."""
    refreshed = 0
    for loss in head.losses:
        if not getattr(loss, "needs_unrecognisable_centre", False) or epoch < loss.start_epoch:
            continue
        indices = centre_indices(len(dataset), loss.centre_images, seed, epoch, rank, world_size)
        faces, labels = unrecognisable_training_faces(dataset, indices, loss.centre_size, loss.centre_blur)
        embeddings = embed_faces(backbone, faces, device)
        loss.update_centre(embeddings, labels.to(device), head.weight.detach(), head.class_start)
        refreshed += 1
    return refreshed


@torch.no_grad()
def centre_of_faces(backbone: torch.nn.Module, faces: np.ndarray, size: int = 8, blur: float = 1.5) -> torch.Tensor:
    """(D,) float32 unit centre of the unrecognisable versions of uint8 (N, H, W, 3) RGB `faces` (one process)."""
    if len(faces) == 0:
        raise ValueError("no faces to build the unrecognisable-identity centre from; pass at least one face")
    device = next(backbone.parameters()).device
    degraded = np.stack([unrecognisable(face, size, blur) for face in faces])
    unit = torch.nn.functional.normalize(embed_faces(backbone, degraded, device).double(), dim=1)
    total = unit.sum(dim=0)
    if float(total.norm()) == 0.0 or not bool(torch.isfinite(total).all()):
        raise ValueError("the unrecognisable faces' embeddings cancel out or are not finite; use more faces")
    return torch.nn.functional.normalize(total, dim=0).float().cpu()
