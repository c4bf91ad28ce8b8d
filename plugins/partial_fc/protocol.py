"""The loss protocol of the partial-FC head: what a loss may do, and how several losses compose.

A loss is an nn.Module subclassing PartialFCLoss; the head calls its hooks every step with a LossContext
(context.py) holding the gathered batch, the shard's cosine logits and helpers for cross-rank reductions:

    attach(shard)                -> once, when the head is built: allocate sharded buffers (ShardInfo)
    set_epoch(epoch)             -> at the start of each epoch (the head forwards it)
    denominator_terms(ctx)       -> [Term]: log-sum-exp values (B,) or 0-d added to every row's softmax
                                    denominator, "replicated" (identical on every rank, counted once) or
                                    "partial" (each rank holds a part; the head sums the parts' exps)
    auxiliary_losses(ctx)        -> [Term]: 0-d losses added to the cross-entropy, "replicated" or "partial"
    rewrite_logits(ctx, logits)  -> (B, K) scaled logits after the margin stage (per-row margins,
                                    re-weighted hard negatives; the input is the head's own tensor and may
                                    be written in place); set defines_target_logit = True when the
                                    loss sets the target logit itself, so the head skips the margin object
    target_logit(ctx, cos)       -> (n,) scaled target logits of ctx.on_shard_rows from their cosines (n,), for a
                                    loss that defines the target logit and changes no other logit: what the
                                    chunked head (head_chunk, never holding (B, K) logits) calls instead of
                                    rewrite_logits; a loss that rewrites other logits cannot run chunked
    end_step(ctx)                -> after the loss is computed (memory-bank updates, no gradient)
    ctx.report(name, value)      -> diagnostics, logged by the recipe as "<loss name>/<name>"

Composition of a list of losses: logit rewrites chain in order, denominator terms of the same kind combine by
logaddexp, auxiliary losses add; at most one loss may define the target logit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from .context import LossContext

TermKind = Literal["replicated", "partial"]
TERM_KINDS = ("replicated", "partial")


@dataclass
class Term:
    """A loss contribution and how it is spread over ranks.

    value: 0-d or (B,) tensor. kind: "replicated" -- every rank computed the same value, the head counts it
    once; "partial" -- each rank holds one part and the whole is the sum of the parts (for denominator
    terms: the sum of the parts' exps, i.e. logsumexp over ranks). A part's gradient is the full dL/dpart (the
    head reduces parts, it never divides them by the world size), so a part built on ctx.local_rows or on this
    rank's block of the gathered batch gets the head's convention through the gather's backward.
    """

    value: torch.Tensor
    kind: TermKind = "replicated"

    def __post_init__(self) -> None:
        if self.kind not in TERM_KINDS:
            raise ValueError(f"term kind {self.kind!r} is unknown; use 'replicated' or 'partial'")


@dataclass(frozen=True)
class ShardInfo:
    """What a loss needs to know about the head's class sharding (rows [class_start, class_start + num_local))."""

    num_classes: int
    num_local: int
    class_start: int
    embedding_size: int
    rank: int
    world_size: int


class PartialFCLoss(nn.Module):
    """Base class: every hook defaults to "do nothing", so a loss overrides only what it changes.

    `name` is the loss's registry name and the prefix of its diagnostics.
    """

    name: str = "loss"
    defines_target_logit: bool = False
    reads_all_logits: str = ""  # what a loss reads the whole (B, K) cosines for; the chunked head refuses it
    DEFAULTS: dict = {}  # the loss's options and their defaults (the recipe's config.<name> section)

    @classmethod
    def from_config(cls, config) -> PartialFCLoss:
        """Build from a recipe config whose section config.<name> holds this loss's options."""
        return cls(**dict(config.get(cls.name) or {}))

    def attach(self, shard: ShardInfo) -> None:
        """Called once by the head that owns this loss; allocate per-shard buffers here."""

    def set_epoch(self, epoch: int) -> None:
        """Epoch number (from 0), for losses that switch on later in training."""

    def rewrite_logits(self, ctx: LossContext, logits: torch.Tensor) -> torch.Tensor:
        """(B, K) scaled logits -> (B, K) scaled logits. The default returns them unchanged."""
        return logits

    def target_logit(self, ctx: LossContext, cos: torch.Tensor) -> torch.Tensor:
        """(n,) target cosines c_{i,y_i} of ctx.on_shard_rows -> (n,) their scaled target logits. Override it
        (with defines_target_logit = True) for a loss whose only rewrite is the target logit."""
        raise NotImplementedError(f"loss {self.name!r} has no target_logit rule")

    def denominator_terms(self, ctx: LossContext) -> list[Term]:
        return []

    def auxiliary_losses(self, ctx: LossContext) -> list[Term]:
        return []

    @torch.no_grad()
    def end_step(self, ctx: LossContext) -> None:
        """After the head's forward pass; no gradient."""


def overrides_rewrite(loss: PartialFCLoss) -> bool:
    return type(loss).rewrite_logits is not PartialFCLoss.rewrite_logits


def has_target_logit(loss: PartialFCLoss) -> bool:
    return type(loss).target_logit is not PartialFCLoss.target_logit


def chunked_refusal(loss: PartialFCLoss) -> str | None:
    """Why `loss` cannot run on the chunked head (one sentence naming the loss and the fix), or None if it can:
    its logit rewrite must be the target logit alone (target_logit), never the other (B, K) logits, and it
    must not read them (reads_all_logits)."""
    if loss.reads_all_logits:
        return (
            f"loss {loss.name!r} reads every (B, K) cosine ({loss.reads_all_logits}), which the chunked head never "
            f"holds; set head_chunk = 0 to train it"
        )
    if has_target_logit(loss) and loss.defines_target_logit:
        return None
    if overrides_rewrite(loss) or loss.defines_target_logit:
        return (
            f"loss {loss.name!r} rewrites logits beyond the target column (rewrite_logits over the whole (B, K) "
            f"matrix), which the chunked head never holds; set head_chunk = 0 to train it"
        )
    return None
