"""Sharded UNPG term: each rank builds only its own rows' block of the pair matrix.

Rank r of W holds its b local embeddings X_r (b, D) and the all-gathered batch X (B, D), B = W b, with
labels. It forms S_r = unit(X_r) unit(X)^T (b, B) and takes the block's negative entries (y_a != y_c).
Across the world these entries are the doubled multiset 2N: every unordered negative pair {a, c} appears
once as (a, c) on a's rank and once as (c, a) on c's rank (the diagonal is never negative). No rank holds
B x B, and every rank does 1/W of the work instead of all of it.

Quartiles of 2N equal those of N. With n = |N|, sorted(2N)[j] = sorted(N)[floor(j / 2)], so
    Q1(2N) = sorted(2N)[floor(2n / 4)] = sorted(N)[floor(floor(2n / 4) / 2)] = sorted(N)[floor(n / 4)] = Q1(N)
because floor(floor(x) / 2) = floor(x / 2) for real x: with m = floor(x / 2), 2m <= x < 2m + 2 gives
2m <= floor(x) <= 2m + 1, hence floor(floor(x) / 2) = m. Q3 is the same with 3n / 4 (2q n for q = 3/4).
So the whisker bounds, computed by the exact distributed selection (distributed_selection.py), are those of
N, and the kept entries are N' doubled: logsumexp(s 2N') = logsumexp(s N') + log 2. (Exactly so when
S[a, c] and S[c, a] carry the same bits; they come from different matrix products, so in general the two
copies, and with them the quartiles, agree to rounding: loss and gradients match the replicated term to
1e-12 in float64 in the tests.)

Each rank returns its share  share_r = logsumexp(s N'_r) - log 2  (N'_r: the kept entries of its block), so
that sum_r e^{share_r} = sum_{n in N'} e^{s n}: the UNPG term is logsumexp over ranks of the shares
(combine_shares: an all-reduced max and sum of exps), or, in a distributed softmax whose denominator is
already an all-reduced sum of exps, each rank adds e^{share_r} to its local sum before that all-reduce and the
term is counted once with no collective of its own. Similarities and exps are fp32 (fp64 stays fp64) even
under autocast: at s = 64, e^{s n} overflows fp16.

Gradient convention (the project's, as plugins.partial_fc.collectives.all_gather_with_grad): the gradients every rank sends back
through the gather are summed and multiplied by W, so each rank's local embeddings receive W x the
one-process gradient of the global loss (DDP's average then gives the backbone the one-process gradient).
When X_r is the tensor that was gathered, S_r's gradient reaches it directly, not through the gather, so
that path is scaled by W here (when X_r is instead a slice of the gathered X, the gather does it); the
gradient reaching a share must be the full dL/dshare (what a softmax whose denominator sums the shares
gives): a share is reduced, never divided by W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .distributed_selection import distributed_count, distributed_whisker_bounds


@dataclass
class ShardedPairShare:
    """share: 0-d tensor logsumexp(s N'_r) - log 2 (-inf when this rank keeps no entry), or None when the
    whole world has no negative pair. stats: 0-d tensors pairs_total (|N|), q1, q3 (with the filter) and
    entries_kept_here (this rank's kept block entries; each kept pair is counted on two ranks)."""

    share: torch.Tensor | None
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def _world(group: dist.ProcessGroup | None) -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `factor`."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.factor, None


def _check_equal_batches(
    local_rows: int, gathered_rows: int, world_size: int, device: torch.device, group: dist.ProcessGroup | None
) -> None:
    sizes = torch.tensor([local_rows, -local_rows], dtype=torch.int64, device=device)
    if world_size > 1:
        # largest and (negated) smallest local batch over the ranks, so every rank raises together
        dist.all_reduce(sizes, op=dist.ReduceOp.MAX, group=group)
    largest, smallest = int(sizes[0]), -int(sizes[1])
    if largest != smallest or gathered_rows != world_size * local_rows:
        raise ValueError(
            f"sharded UNPG needs equal per-rank batches (the equal-shape all-gather requires them), got local "
            f"batches from {smallest} to {largest} and a gathered batch of {gathered_rows} over {world_size} ranks; "
            f"set the same batch_size on every rank and drop the last incomplete batch (drop_last=True)"
        )


def sharded_pair_share(
    local_embeddings: torch.Tensor,
    gathered_embeddings: torch.Tensor,
    local_labels: torch.Tensor,
    gathered_labels: torch.Tensor,
    scale: float,
    wisk: float = 1.5,
    filter: bool = True,
    group: dist.ProcessGroup | None = None,
    rows_from_gather: bool = False,
) -> ShardedPairShare:
    """This rank's share of UNPG's negative-pair term.

    local_embeddings: (b, D) this rank's rows (the tensor the caller all-gathered).
    gathered_embeddings: (B, D), B = W b, all ranks' rows gathered with gradient (plugins.partial_fc.collectives.all_gather_with_grad).
    local_labels (b,), gathered_labels (B,): global class ids. scale (s); wisk (w); filter: False keeps all of N.
    rows_from_gather: True when local_embeddings is this rank's slice of gathered_embeddings (as in the
    partial-FC head): its gradient then goes back through the gather, whose backward applies the W factor;
    False when it is the tensor the caller gathered, whose row gradient is scaled by W here.
    Every rank of `group` must call this together (a few small all-reduces: batch sizes, then the selection's
    histograms, or one count without the filter).
    """
    if wisk < 0:
        raise ValueError(f"wisk={wisk} must be >= 0 (the paper uses 1.5); pass filter=False to keep every pair")
    if (
        local_embeddings.dim() != 2
        or gathered_embeddings.dim() != 2
        or local_embeddings.shape[1] != gathered_embeddings.shape[1]
    ):
        raise ValueError(
            f"embeddings must be (b, D) and (B, D), got {tuple(local_embeddings.shape)} and "
            f"{tuple(gathered_embeddings.shape)}"
        )
    if local_labels.shape != local_embeddings.shape[:1] or gathered_labels.shape != gathered_embeddings.shape[:1]:
        raise ValueError(
            f"labels {tuple(local_labels.shape)} / {tuple(gathered_labels.shape)} must give one label per "
            f"embedding row ({local_embeddings.shape[0]} / {gathered_embeddings.shape[0]})"
        )
    world_size = _world(group)
    _check_equal_batches(
        local_embeddings.shape[0], gathered_embeddings.shape[0], world_size, local_embeddings.device, group
    )

    dtype = torch.float64 if local_embeddings.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=local_embeddings.device.type, enabled=False):
        rows = local_embeddings
        if world_size > 1 and not rows_from_gather:
            rows = _ScaleGradient.apply(local_embeddings, float(world_size))
        block = F.normalize(rows.to(dtype), dim=1) @ F.normalize(gathered_embeddings.to(dtype), dim=1).t()  # S_r (b, B)
        with torch.no_grad():
            kept = local_labels[:, None] != gathered_labels[None, :]  # negative entries of the block
            stats = {}
            if filter:
                # the selection turns its copy of the block into sort keys in place, ignoring entries outside kept
                doubled_count, bounds = distributed_whisker_bounds(
                    block.detach().clone(), wisk, group, overwrite=True, mask=kept
                )
                if bounds is not None:
                    kept &= block.detach() >= bounds.lower
                    kept &= block.detach() <= bounds.upper  # N'_r
                    stats.update(q1=bounds.q1, q3=bounds.q3)
            else:
                doubled_count = distributed_count(int(torch.count_nonzero(kept)), block.device, group)
            stats["pairs_total"] = torch.tensor(doubled_count // 2)
            kept_here = int(torch.count_nonzero(kept))
            stats["entries_kept_here"] = torch.tensor(kept_here)
        if doubled_count == 0:
            return ShardedPairShare(None, stats)
        if kept_here == 0:
            # e^{share} = 0, yet tied to the block so that backward runs on this rank like on the others
            # (the gather's backward is a collective); its gradient is exactly 0
            return ShardedPairShare(block.reshape(-1)[:1].sum().mul(0.0).add(-math.inf), stats)
        share = _KeptLogSumExp.apply(block, kept, float(scale)) - math.log(2.0)
    return ShardedPairShare(share, stats)


class _KeptLogSumExp(torch.autograd.Function):
    """logsumexp of s * S_r over the kept entries; keeps only the (b, B) logits for backward (d/dS = s softmax)."""

    @staticmethod
    def forward(ctx, block: torch.Tensor, kept: torch.Tensor, scale: float) -> torch.Tensor:
        logits = block.detach() * scale
        logits.masked_fill_(kept.logical_not(), -math.inf)  # outside N'_r: e^{-inf} = 0, in the sum and the gradient
        peak = logits.max()
        log_sum_exp = peak + logits.sub(peak).exp_().sum().log()  # one (b, B) temporary, not torch.logsumexp's two
        ctx.save_for_backward(logits, log_sum_exp)
        ctx.scale = scale
        return log_sum_exp

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, log_sum_exp = ctx.saved_tensors
        return logits.sub(log_sum_exp).exp_().mul_(grad * ctx.scale), None, None


class _CombineShares(torch.autograd.Function):
    @staticmethod
    def forward(ctx, share: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        peak = share.detach().clone().reshape(1)
        if _world(group) > 1:
            # the largest share over the ranks, for a stable exp
            dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
        total = (share.detach() - peak).exp()
        if _world(group) > 1:
            # sum over the ranks of e^{share_r - peak}
            dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        term = (peak + total.log()).reshape(())
        ctx.save_for_backward(share.detach(), term)
        return term

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        share, term = ctx.saved_tensors
        # d term / d share_r = e^{share_r - term}; grad is the full dL/dterm, the same on every rank
        return grad * (share - term).exp(), None


def combine_shares(share: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """0-d share on each rank -> 0-d UNPG term logsumexp(s N') = log sum_r e^{share_r}, equal on every rank.

    Backward: the incoming gradient must be the full dL/dterm, identical on every rank (a loss every rank
    computes whole); each rank then sends its block's part, and the gather's backward adds them up.
    """
    return _CombineShares.apply(share, group)
