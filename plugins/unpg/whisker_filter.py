"""Box-and-whisker filter of UNPG: drop negative pairs whose similarity is an outlier.

With N sorted ascending (0-based), Q1 = N[floor(0.25 |N|)], Q3 = N[floor(0.75 |N|)] (no interpolation),
IQR = Q3 - Q1, and the kept set is N' = { n : Q1 - w * IQR <= n <= Q3 + w * IQR }, w = "wisk".
Thresholds carry no gradient. Order statistics come from `torch.kthvalue`, which, unlike
`torch.quantile` (refuses more than 2^24 values), works for the ~33M pairs of a 8192 global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class WhiskerBounds:
    """0-d tensors: quartiles q1, q3 and the kept interval [lower, upper]."""

    q1: torch.Tensor
    q3: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor


def floor_index_order_statistic(values: torch.Tensor, index: int) -> torch.Tensor:
    """values (n,) -> 0-d tensor equal to sorted(values)[index] (0-based)."""
    if not 0 <= index < values.numel():
        raise IndexError(f"order statistic index {index} is outside a set of {values.numel()} values")
    return values.kthvalue(index + 1).values


@torch.no_grad()
def whisker_bounds(values: torch.Tensor, wisk: float) -> WhiskerBounds:
    """values (n,) with n >= 1 -> the floor-index quartiles and the whisker interval, without gradient."""
    n = values.numel()
    if n == 0:
        raise ValueError("whisker_bounds needs at least one value; skip the filter when there are no negative pairs")
    values = values.detach().reshape(-1)
    q1 = floor_index_order_statistic(values, n // 4)
    q3 = floor_index_order_statistic(values, (3 * n) // 4)
    iqr = q3 - q1
    return WhiskerBounds(q1=q1, q3=q3, lower=q1 - wisk * iqr, upper=q3 + wisk * iqr)
