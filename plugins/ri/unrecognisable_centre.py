"""The unrecognisable-identity (UI) centre and the recognisability of the unrecognisable faces (mu_UI).

Deng et al. ("Harnessing Unrecognizable Faces for Improving Face Recognition", arXiv 2106.04112) observe that a
face-recognition embedding sends unrecognisable faces, whatever made them so, into one cluster; its centre is
the mean of their unit embeddings. Chai et al. (CVPR 2023) measure every face against that centre. Here the
unrecognisable faces are degraded copies of training faces (recipes/arcface_torch/degradations.py), each rank
embedding its own share, so they also carry labels: mu_UI is the mean RI of those faces under the current class
centres, the level a face's RI must clear by tau in the index diversion loss.

    centre, mu_ui = unrecognisable_centre(ui_embeddings, ui_labels, weight_shard, class_start)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..partial_fc.collectives import all_gather_no_grad, all_reduce_no_grad, check_equal_batches
from .nearest_negative import nearest_negative_cosine
from .recognisability_index import recognisability_index

_ROWS_PER_CHUNK = 256  # UI faces scored against the shard at a time (bounds the (rows, K) cosine block)


@torch.no_grad()
def mean_unit_embedding(embeddings: torch.Tensor) -> torch.Tensor:
    """(n, D) this rank's embeddings -> (D,) normalize(sum over every rank's unit embeddings), identical on all."""
    unit = F.normalize(embeddings.double(), dim=1)
    total = all_reduce_no_grad(unit.sum(dim=0), "sum")  # the sum over every rank's faces
    if not bool(torch.isfinite(total).all()) or float(total.norm()) == 0.0:
        raise ValueError(
            "the unrecognisable faces' unit embeddings sum to zero or are not finite, so they have no centre; "
            "build the centre from more faces (ri.centre_images) or check the backbone's output"
        )
    return F.normalize(total, dim=0)


@torch.no_grad()
def unrecognisable_centre(
    embeddings: torch.Tensor, labels: torch.Tensor, weight_shard: torch.Tensor, class_start: int
) -> tuple[torch.Tensor, float]:
    """(n, D) embeddings of this rank's unrecognisable faces, (n,) their labels, (num_local, D) this rank's class
    centres -> ((D,) unit centre in the centres' dtype, mu_UI); every rank must pass the same n."""
    if embeddings.dim() != 2 or labels.numel() != embeddings.size(0) or embeddings.size(0) == 0:
        raise ValueError(
            f"unrecognisable faces: {tuple(embeddings.shape)} embeddings for {labels.numel()} labels; "
            f"pass (n, D) embeddings with n >= 1 and one label per face"
        )
    check_equal_batches(embeddings.size(0), embeddings.device)
    centre = mean_unit_embedding(embeddings)
    every = F.normalize(all_gather_no_grad(embeddings.double()), dim=1)  # (N, D): every rank's faces
    every_labels = all_gather_no_grad(labels.reshape(-1).long())
    shard = F.normalize(weight_shard.detach().double(), dim=1)
    scores = []
    for start in range(0, every.size(0), _ROWS_PER_CHUNK):
        unit = every[start : start + _ROWS_PER_CHUNK]
        own = every_labels[start : start + _ROWS_PER_CHUNK] - class_start
        own[(own < 0) | (own >= shard.size(0))] = -1
        cos = unit @ shard.t()  # (rows, num_local)
        rows = (own >= 0).nonzero(as_tuple=True)[0]
        positive = torch.zeros(unit.size(0), dtype=cos.dtype, device=cos.device)
        positive[rows] = cos[rows, own[rows]]
        # each face's own class centre lives on one rank; the others hold 0
        positive = all_reduce_no_grad(positive, "sum")
        negative = nearest_negative_cosine(cos, own)
        scores.append(recognisability_index(unit, centre, positive, negative))
    mu_ui = float(torch.cat(scores).mean())
    return centre.to(weight_shard.dtype), mu_ui
