"""Combined margin softmax logits: ArcFace, CosFace and arcface_torch's (m1, m2, m3) combination.

    target logit   s * psi(cos theta_{i,y_i}),   psi(c) = cos(m1 * arccos(c) + m2) - m3
    other logits   s * cos theta_{ij}
ArcFace = (1, m2, 0), CosFace = (1, 0, m3).

Gradient of the target logit (`gradient`):
    "straight_through" (default, upstream arcface_torch): the forward value is psi(c), the backward
        treats psi as c + constant (upstream computes arccos/cos under no_grad), so d psi / d c = 1.
    "exact": d psi / d c = m1 * sin(m1 theta + m2) / sin(theta) (the official UNPG code). Where
        m1 * theta + m2 > pi, cos(m1 theta + m2) turns back up and would reward moving away from the
        centre; there psi continues linearly, psi(c) = c - m3 - (1 + th) for c < th = cos((pi - m2) / m1),
        which is continuous and monotonic.
CosFace (m1 = 1, m2 = 0) has d psi / d c = 1 in both modes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_ARCCOS_EPS = 1e-7  # keeps d arccos / d c finite at c = +-1
MARGIN_GRADIENTS = ("straight_through", "exact")


class CombinedMarginLoss(nn.Module):
    """forward(cos logits (B, C) in [-1, 1], labels (B,) or (B, 1): column index or -1 off shard) -> (B, C) scaled logits.

    Args: s (scale), m1 (angular multiplier), m2 (additive angular margin), m3 (additive cosine margin),
    interclass_filtering_threshold: > 0 sets every non-target logit above it to 0, in every row (upstream's option),
    gradient: "straight_through" (upstream) or "exact" (see the module docstring).
    """

    def __init__(
        self,
        s: float,
        m1: float,
        m2: float,
        m3: float,
        interclass_filtering_threshold: float = 0.0,
        gradient: str = "straight_through",
    ):
        super().__init__()
        if s <= 0:
            raise ValueError(f"scale s={s} must be > 0; arcface_torch uses 64")
        if m1 <= 0 or m2 < 0 or m3 < 0:
            raise ValueError(
                f"margin_list=({m1}, {m2}, {m3}) is invalid; use m1 > 0, m2 >= 0, m3 >= 0, "
                f"e.g. (1.0, 0.5, 0.0) for ArcFace or (1.0, 0.0, 0.4) for CosFace"
            )
        if gradient not in MARGIN_GRADIENTS:
            raise ValueError(f"margin_gradient={gradient!r} is not known; use 'straight_through' (upstream) or 'exact'")
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.interclass_filtering_threshold = float(interclass_filtering_threshold)
        self.gradient = gradient
        turn = (math.pi - self.m2) / self.m1  # theta where m1 * theta + m2 reaches pi
        self.threshold = math.cos(turn) if turn < math.pi else -1.0  # th: below it psi continues linearly

    def extra_repr(self) -> str:
        return f"s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}, gradient={self.gradient}"

    def _angular(self, cos: torch.Tensor) -> torch.Tensor:
        theta = torch.arccos(cos.clamp(-1.0 + _ARCCOS_EPS, 1.0 - _ARCCOS_EPS))
        return torch.cos(self.m1 * theta + self.m2)

    def psi(self, cos: torch.Tensor) -> torch.Tensor:
        """Margin applied to target cosines (any shape), with the gradient chosen by `self.gradient`."""
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cos - self.m3
        if self.gradient == "straight_through":
            with torch.no_grad():
                shift = torch.cos(self.m1 * torch.arccos(cos) + self.m2) - cos
            return cos + shift - self.m3
        beyond = cos < self.threshold
        linear = cos - (1.0 + self.threshold)
        return torch.where(beyond, linear, self._angular(cos)) - self.m3

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
        scaled = scaled.index_put_((rows, cols), self.psi(target) * self.s)  # in place into the fresh product
        return scaled
