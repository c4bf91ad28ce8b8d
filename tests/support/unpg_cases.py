"""Small float64 UNPG problems with known edges, shared by the sharded-UNPG tests.

8 rows and 8 classes split evenly over 1, 2 or 4 ranks; lattice cases put negative pairs exactly on a whisker
bound (and, with wisk 0, outside it); "all equal" has IQR = 0; "one identity" has no negative pair.
"""

from __future__ import annotations

import torch

BATCH, DIM, CLASSES, SCALE = 8, 5, 8, 4.0  # 8 rows and 8 classes split evenly over 1, 2 or 4 ranks


def case_data(name: str):
    """(embeddings (B, D), labels (B,), class weights (C, D), wisk or None for no filter), float64."""
    g = torch.Generator().manual_seed(len(name))
    weight = torch.randn(CLASSES, DIM, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 3, 7, 5, 5, 6, 3])
    if name.startswith("random"):
        embeddings = torch.randn(BATCH, DIM, generator=g, dtype=torch.float64)
    elif name.startswith("lattice"):  # signed basis vectors: every cosine is exactly -1, 0 or 1
        embeddings = torch.zeros(BATCH, DIM, dtype=torch.float64)
        for row, (axis, sign) in enumerate([(0, 1), (0, 1), (1, -1), (0, -1), (0, 1), (2, 1), (0, 1), (0, -1)]):
            embeddings[row, axis] = sign * (row + 1.0) / 4  # varied norms, exact after normalising
    elif name == "all equal":  # rows along one axis: every similarity is exactly 1, IQR = 0
        embeddings = torch.zeros(BATCH, DIM, dtype=torch.float64)
        embeddings[:, 1] = torch.arange(1.0, BATCH + 1) / 3
    elif name == "one identity":  # no negative pair at all: the term vanishes
        embeddings = torch.randn(BATCH, DIM, generator=g, dtype=torch.float64)
        labels = torch.full((BATCH,), 2)
    else:
        raise KeyError(name)
    wisk = {"random": 1.5, "random wisk 0": 0.0, "random no filter": None, "lattice": 1.0, "lattice wisk 0": 0.0}.get(
        name, 1.5
    )
    return embeddings, labels, weight, wisk


CASES = ["random", "random wisk 0", "random no filter", "lattice", "lattice wisk 0", "all equal", "one identity"]
