"""Combined margin softmax logits: ArcFace, CosFace and arcface_torch's (m1, m2, m3) combination.

    target logit   s * psi(cos theta_{i,y_i}),   psi(c) = cos(m1 * arccos(c) + m2) - m3
    other logits   s * cos theta_{ij}
ArcFace = (1, m2, 0), CosFace = (1, 0, m3). Unlike upstream, the gradient flows through psi exactly
(upstream computes arccos/cos under no_grad, i.e. uses d psi / d cos = 1).
"""
from __future__ import annotations

import math

import torch
from torch import nn

_ARCCOS_EPS = 1e-7  # keeps d arccos / d c finite at c = +-1


class CombinedMarginLoss(nn.Module):
    """forward(cos logits (B, C) in [-1, 1], labels (B,) or (B, 1) column index or -1 off shard) -> (B, C) scaled logits.

    Args: s (scale), m1 (angular multiplier), m2 (additive angular margin), m3 (additive cosine margin),
    interclass_filtering_threshold: > 0 zeroes non-target logits above it (upstream's option).
    """

    def __init__(self, s: float, m1: float, m2: float, m3: float, interclass_filtering_threshold: float = 0.0):
        super().__init__()
        if s <= 0:
            raise ValueError(f"scale s={s} must be > 0; arcface_torch uses 64")
        if m1 <= 0 or m2 < 0 or m3 < 0 or m1 * math.pi + m2 <= 0:
            raise ValueError(f"margin_list=({m1}, {m2}, {m3}) is invalid; use m1 > 0, m2 >= 0, m3 >= 0, "
                             f"e.g. (1.0, 0.5, 0.0) for ArcFace or (1.0, 0.0, 0.4) for CosFace")
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.interclass_filtering_threshold = float(interclass_filtering_threshold)

    def extra_repr(self) -> str:
        return f"s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}"

    def psi(self, cos: torch.Tensor) -> torch.Tensor:
        """Margin applied to target cosines (any shape)."""
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cos - self.m3
        theta = torch.arccos(cos.clamp(-1.0 + _ARCCOS_EPS, 1.0 - _ARCCOS_EPS))
        return torch.cos(self.m1 * theta + self.m2) - self.m3

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.reshape(-1)  # (B,) or (B, 1) as upstream's PartialFC_V2 passes them
        rows = (labels >= 0).nonzero(as_tuple=True)[0]
        cols = labels[rows]
        target = logits[rows, cols]
        if self.interclass_filtering_threshold > 0:
            with torch.no_grad():
                dirty = logits > self.interclass_filtering_threshold
                dirty[rows, cols] = False
            logits = logits.masked_fill(dirty, 0.0)
        scaled = logits * self.s
        scaled.index_put_((rows, cols), self.psi(target) * self.s)
        return scaled
