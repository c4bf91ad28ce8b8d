"""UNPG: unified negative pair generation (Jung et al.), as one extra softmax logit per sample.

Each sample's softmax denominator gets, beyond its class-level negatives, the kept mini-batch negatives:

    L = -1/B sum_i log( e^{s psi_i} / ( e^{s psi_i} + sum_{j != y_i} e^{s cos theta_ij} + sum_{n in N'} e^{s n} ) )

N' (see mini_batch_pairs.py, whisker_filter.py) is the same set for every row, so
sum_{n in N'} e^{s n} = exp(logsumexp(s * N')) and one scalar carries the whole set: the loss and its
gradient are identical to appending |N'| columns to every row, at O(B^2) memory instead of O(B^3).
The term never passes through the margin's arccos (its value can exceed 1). On the partial-FC protocol it
is a "replicated" denominator term: every rank holds the whole gathered batch and computes the same N'.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..partial_fc.protocol import PartialFCLoss, Term
from .mini_batch_pairs import cosine_similarity_matrix, negative_pair_mask, positive_pair_mask
from .whisker_filter import whisker_bounds


@dataclass
class NegativePairTerm:
    """log_sum_exp: 0-d float tensor logsumexp(s * N') or None when N' is empty; stats: 0-d tensors."""

    log_sum_exp: torch.Tensor | None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class UNPG(PartialFCLoss):
    """UNPG's loss for the partial-FC head: one denominator term per step.

    Args:
        wisk (w): whisker width; negatives outside [Q1 - w IQR, Q3 + w IQR] are dropped. Paper: 1.5.
        filter: False keeps every mini-batch negative pair (no box-and-whisker filter).

    forward(embeddings (B, D), labels (B,), scale (s)) -> NegativePairTerm, where embeddings and labels
    are the whole global batch (identical on every rank) and labels are global class ids.
    Set `collect_stats = True` (the head does on its diagnostic steps) to also get min/mean/max of positive
    and negative pair similarities.
    """

    name = "unpg"
    DEFAULTS = {"wisk": 1.5, "filter": True}  # config.unpg: the paper's values

    def __init__(self, wisk: float = 1.5, filter: bool = True):
        super().__init__()
        if wisk < 0:
            raise ValueError(f"wisk={wisk} must be >= 0 (the paper uses 1.5); pass filter=False to keep every pair")
        self.wisk = float(wisk)
        self.filter = bool(filter)
        self.collect_stats = False

    @classmethod
    def from_config(cls, config) -> UNPG:
        """Build from a recipe config holding `config.unpg.wisk` and `config.unpg.filter`."""
        return cls(wisk=config.unpg.wisk, filter=config.unpg.filter)

    def extra_repr(self) -> str:
        return f"wisk={self.wisk}, filter={self.filter}"

    def denominator_terms(self, ctx) -> list[Term]:
        term = self(ctx.embeddings, ctx.labels, ctx.scale, collect_stats=self.collect_stats or ctx.collect_diagnostics)
        for key, value in term.stats.items():
            ctx.report(key, value)
        return [] if term.log_sum_exp is None else [Term(term.log_sum_exp, "replicated")]

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, scale: float,
                collect_stats: bool | None = None) -> NegativePairTerm:
        similarities = cosine_similarity_matrix(embeddings)           # (B, B), differentiable
        negative_values = similarities[negative_pair_mask(labels)]   # N: (|N|,) pairs a < b, y_a != y_b
        detached = negative_values.detach()
        stats = {"pairs_total": torch.tensor(detached.numel())}
        if detached.numel() == 0:
            stats["pairs_kept"] = torch.tensor(0)
            return NegativePairTerm(None, stats)
        kept_values = negative_values
        if self.filter:
            bounds = whisker_bounds(detached, self.wisk)
            kept_values = negative_values[(detached >= bounds.lower) & (detached <= bounds.upper)]  # N'
            stats.update(q1=bounds.q1, q3=bounds.q3)
        stats["pairs_kept"] = torch.tensor(kept_values.numel())
        if self.collect_stats if collect_stats is None else collect_stats:
            stats.update(_similarity_stats("neg", detached))
            stats.update(_similarity_stats("pos", similarities.detach()[positive_pair_mask(labels)]))
        # sum over N' of e^{s n}, as one log-sum-exp
        return NegativePairTerm(torch.logsumexp(kept_values * scale, dim=0), stats)


def _similarity_stats(prefix: str, values: torch.Tensor) -> dict[str, torch.Tensor]:
    if values.numel() == 0:
        return {}
    return {f"{prefix}_min": values.min(), f"{prefix}_mean": values.mean(), f"{prefix}_max": values.max()}
