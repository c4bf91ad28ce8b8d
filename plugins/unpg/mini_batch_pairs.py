"""MLPG: the mini-batch negative pairs of UNPG.

N = { <x_a/|x_a|, x_b/|x_b|> : a < b, y_a != y_b } over the global (all-gathered) batch: every unordered
pair of samples with different labels, once: the (B, B) similarity matrix, an upper-triangular mask,
and one gather into a flat (|N|,) vector through which gradients reach both embeddings of each pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """(B, D) embeddings, any float dtype -> (B, B) float32 (float64 stays float64) cosine similarities.

    Computed outside autocast: at scale s = 64 an fp16 exp of s * cos overflows, so UNPG works in fp32.
    """
    dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        unit = F.normalize(embeddings.to(dtype), dim=1)
        return unit @ unit.t()


def negative_pair_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B,) labels -> (B, B) bool, True at [a, b] iff a < b and y_a != y_b."""
    different = labels[:, None] != labels[None, :]
    return torch.triu(different, diagonal=1)


def positive_pair_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B,) labels -> (B, B) bool, True at [a, b] iff a < b and y_a == y_b (for diagnostics)."""
    same = labels[:, None] == labels[None, :]
    return torch.triu(same, diagonal=1)
