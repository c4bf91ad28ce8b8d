"""Independent, deliberately slow float64 reference for margin softmax with UNPG.

Builds every row's logits explicitly (the target first, then every other class, then every kept
mini-batch negative pair as its own column, as the official UNPG code does) and calls F.cross_entropy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def naive_psi(cos: torch.Tensor, m1: float, m2: float, m3: float) -> torch.Tensor:
    """Exact margin of one target cosine (0-d); past the angle where m1*theta + m2 reaches pi it goes on
    as a line of slope 1 through that point (the monotonic form of the "exact" margin gradient)."""
    theta = torch.arccos(cos)
    if float(m1 * theta.detach() + m2) <= math.pi:
        return torch.cos(m1 * theta + m2) - m3
    turn = math.cos((math.pi - m2) / m1)
    return cos - turn - 1.0 - m3


def naive_kept_negatives(embeddings: torch.Tensor, labels, wisk: float | None) -> list[torch.Tensor]:
    """Every pair a < b with different labels, then the floor-index box-and-whisker filter (None: no filter)."""
    unit = [e / e.norm() for e in embeddings]
    pairs = [
        torch.dot(unit[a], unit[b])
        for a in range(len(unit))
        for b in range(a + 1, len(unit))
        if int(labels[a]) != int(labels[b])
    ]
    if not pairs or wisk is None:
        return pairs
    ordered = sorted(float(p.detach()) for p in pairs)
    q1 = ordered[math.floor(0.25 * len(ordered))]
    q3 = ordered[math.floor(0.75 * len(ordered))]
    low, high = q1 - wisk * (q3 - q1), q3 + wisk * (q3 - q1)
    return [p for p in pairs if low <= float(p.detach()) <= high]


def naive_unpg_loss(
    embeddings, labels, weight, s, margins, wisk: float | None, use_unpg: bool = True, pair_weight: float = 1.0
):
    """embeddings (B, D), labels (B,), weight (C, D) -> mean loss; float64 in, float64 out. Each kept pair's
    column counts `pair_weight` times in the softmax denominator (its logit + log pair_weight)."""
    m1, m2, m3 = margins
    negatives = naive_kept_negatives(embeddings, labels, wisk) if use_unpg else []
    rows = []
    for i in range(embeddings.shape[0]):
        x = embeddings[i] / embeddings[i].norm()
        y = int(labels[i])
        columns = [s * naive_psi(torch.dot(x, weight[y] / weight[y].norm()), m1, m2, m3)]
        for j in range(weight.shape[0]):
            if j != y:
                columns.append(s * torch.dot(x, weight[j] / weight[j].norm()))
        columns.extend(s * n + math.log(pair_weight) for n in negatives)
        rows.append(torch.stack(columns))
    logits = torch.stack(rows)
    target = torch.zeros(len(rows), dtype=torch.long)
    return F.cross_entropy(logits, target)
