"""UNPG: unified negative pair generation (Jung et al.), as one extra softmax logit per sample.

Each sample's softmax denominator gets, beyond its class-level negatives, the kept mini-batch negatives:

    L = -1/B sum_i log( e^{s psi_i} / ( e^{s psi_i} + sum_{j != y_i} e^{s cos theta_ij} + sum_{n in N'} e^{s n} ) )

N' (see mini_batch_pairs.py, whisker_filter.py) is the same set for every row, so
sum_{n in N'} e^{s n} = exp(logsumexp(s * N')) and one scalar carries the whole set: the loss and its
gradient are identical to appending |N'| columns to every row, at O(B^2) memory instead of O(B^3).
The term never passes through the margin's arccos (its value can exceed 1). On the partial-FC protocol it
is a denominator term in one of two equal forms (`sharded`):
    replicated: every rank builds the whole B x B matrix and computes the same N' -- a "replicated" term;
    sharded:    rank r builds only its b x B block and returns its share logsumexp(s N'_r) - log 2 with
                quartiles from an exact distributed selection (sharded_pairs.py) -- a "partial" term, whose
                parts' exps the head adds to its all-reduced softmax denominator. O(b B) memory per rank.

Two options beyond the paper, off by default: `pair_weight` lambda scales the term, lambda sum_{n in N'} e^{s n}
(log lambda added to its log-sum-exp: each kept pair counts lambda times a class negative), and
`start_epoch` leaves the term out before that epoch (the plain margin softmax until then).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..partial_fc.protocol import PartialFCLoss, Term
from .mini_batch_pairs import cosine_similarity_matrix, negative_pair_mask, positive_pair_mask
from .sharded_pairs import sharded_pair_share
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
        sharded: "auto" (sharded when the world has more than one rank), True or False: build only this
            rank's b x B block (a partial term) instead of the whole B x B matrix on every rank (a replicated
            term). Loss and gradients agree to rounding; sharding needs equal per-rank batches.
        pair_weight (lambda > 0): the term is lambda sum_{N'} e^{s n}. Paper: 1 (not in the paper).
        start_epoch: first epoch (from 0) with the term; before it the loss is the plain margin softmax.
            Paper: 0 (not in the paper).

    forward(embeddings (B, D), labels (B,), scale (s)) -> NegativePairTerm, where embeddings and labels
    are the whole global batch (identical on every rank) and labels are global class ids.
    Set `collect_stats = True` (the head does on its diagnostic steps) to also get min/mean/max of positive
    and negative pair similarities (replicated form; the sharded form reports pairs_total, pairs_kept, q1, q3).
    """

    name = "unpg"
    # config.unpg: the paper's values
    DEFAULTS = {"wisk": 1.5, "filter": True, "sharded": "auto", "pair_weight": 1.0, "start_epoch": 0}

    def __init__(
        self,
        wisk: float = 1.5,
        filter: bool = True,
        sharded: bool | str = "auto",
        pair_weight: float = 1.0,
        start_epoch: int = 0,
    ):
        super().__init__()
        if not (isinstance(pair_weight, (int, float)) and math.isfinite(pair_weight) and pair_weight > 0):
            raise ValueError(
                f"pair_weight={pair_weight!r} must be a number > 0 (1.0 is the paper's UNPG; leave UNPG out of "
                f"config.loss to drop the term)"
            )
        if isinstance(start_epoch, bool) or int(start_epoch) != start_epoch or start_epoch < 0:
            raise ValueError(f"start_epoch={start_epoch!r} must be a whole number >= 0 (0: from the first epoch)")
        if wisk < 0:
            raise ValueError(f"wisk={wisk} must be >= 0 (the paper uses 1.5); pass filter=False to keep every pair")
        if not (isinstance(sharded, bool) or sharded == "auto"):
            raise ValueError(
                f"sharded={sharded!r} is not one of 'auto', True, False; use 'auto' to shard when "
                f"the world has more than one rank"
            )
        self.wisk = float(wisk)
        self.filter = bool(filter)
        self.sharded = sharded
        self.pair_weight, self.start_epoch = float(pair_weight), int(start_epoch)
        self.collect_stats = False

    @classmethod
    def from_config(cls, config) -> UNPG:
        """Build from a recipe config holding `config.unpg` (wisk, filter, sharded, pair_weight, start_epoch)."""
        section = config.unpg
        return cls(**{key: section.get(key, default) for key, default in cls.DEFAULTS.items()})

    def extra_repr(self) -> str:
        extra = "" if self.pair_weight == 1.0 else f", pair_weight={self.pair_weight}"
        extra += "" if self.start_epoch == 0 else f", start_epoch={self.start_epoch}"
        return f"wisk={self.wisk}, filter={self.filter}, sharded={self.sharded!r}{extra}"

    def uses_sharding(self, world_size: int) -> bool:
        """Whether a head on `world_size` ranks gets the sharded (partial) term."""
        return world_size > 1 if self.sharded == "auto" else bool(self.sharded)

    def denominator_terms(self, ctx) -> list[Term]:
        if ctx.epoch < self.start_epoch:
            return []
        if self.uses_sharding(ctx.world_size):
            terms = self._sharded_terms(ctx)
        else:
            collect = self.collect_stats or ctx.collect_diagnostics
            term = self(ctx.embeddings, ctx.labels, ctx.scale, collect_stats=collect)
            for key, value in term.stats.items():
                ctx.report(key, value)
            terms = [] if term.log_sum_exp is None else [Term(term.log_sum_exp, "replicated")]
        if self.pair_weight != 1.0:  # lambda sum e^{s n}: log lambda on every part (partial parts add as exps)
            terms = [Term(term.value + math.log(self.pair_weight), term.kind) for term in terms]
        return terms

    def _sharded_terms(self, ctx) -> list[Term]:
        collect = self.collect_stats or ctx.collect_diagnostics
        result = sharded_pair_share(
            ctx.local_rows,
            ctx.embeddings,
            ctx.local_labels,
            ctx.labels,
            ctx.scale,
            wisk=self.wisk,
            filter=self.filter,
            group=ctx.group,
            rows_from_gather=True,
        )
        kept_here = result.stats.pop("entries_kept_here")
        for key, value in result.stats.items():
            ctx.report(key, value)
        if collect:
            # every kept pair is an entry on two ranks' blocks
            ctx.report("pairs_kept", ctx.all_reduce(kept_here) // 2)
        return [] if result.share is None else [Term(result.share, "partial")]

    def forward(
        self, embeddings: torch.Tensor, labels: torch.Tensor, scale: float, collect_stats: bool | None = None
    ) -> NegativePairTerm:
        similarities = cosine_similarity_matrix(embeddings)  # (B, B), differentiable
        negative_values = similarities[negative_pair_mask(labels)]  # N: (|N|,) pairs a < b, y_a != y_b
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
