"""cos(theta_n), the cosine to the nearest negative prototype, when the prototypes (class centres) are sharded.

Each rank holds the cosines of the whole gathered batch to its own centres (the head's logits, B x K). A row's
nearest negative is the largest cosine over every rank's columns except its own class; the rank holding it
passes that value on, so the gradient reaches exactly that centre and that embedding, as in one process.
"""

from __future__ import annotations

import torch

from ..partial_fc.collectives import all_reduce_no_grad, rank_and_world_size, sum_to_replicated

NO_NEGATIVE = -1.0  # cos(theta_n) of a row that meets no negative centre (all labels equal, sample_rate = 0)


def local_nearest_negative(logits: torch.Tensor, shard_labels: torch.Tensor) -> torch.Tensor:
    """(B, K) cosines, (B,) own column or -1 -> (B,) largest cosine of a column that is not the row's own class;
    -inf where this shard has none. Differentiable (the gradient goes to the chosen column)."""
    batch, columns = logits.shape
    if columns == 0:
        return logits.new_full((batch,), float("-inf"))
    if columns == 1:
        own = shard_labels == 0
        return torch.where(own, torch.full_like(logits[:, 0], float("-inf")), logits[:, 0])
    values, index = logits.topk(2, dim=1)
    first_is_own = index[:, 0] == shard_labels  # shard_labels -1 (off shard) never matches a column
    return torch.where(first_is_own, values[:, 1], values[:, 0])


def nearest_negative_cosine(logits: torch.Tensor, shard_labels: torch.Tensor) -> torch.Tensor:
    """(B, K) this shard's cosines, (B,) own column or -1 -> (B,) cos(theta_n) over all ranks, identical on every
    rank; NO_NEGATIVE where no rank has a negative column. Gradients: see collectives.sum_to_replicated."""
    local = local_nearest_negative(logits, shard_labels)
    rank, world_size = rank_and_world_size()
    if world_size == 1:
        return torch.where(torch.isfinite(local), local, torch.full_like(local, NO_NEGATIVE))
    best = all_reduce_no_grad(local, "max")  # each row's nearest negative over every rank's shard
    candidates = torch.where(local == best, torch.full_like(local, float(rank)), torch.full_like(local, world_size))
    holder = all_reduce_no_grad(candidates, "min")  # the lowest rank holding it (ties counted once)
    mine = (holder == rank) & torch.isfinite(best)
    part = torch.where(mine, local, torch.zeros_like(local))
    # the holder's value reaches every rank; its gradient is summed back onto the holder's column
    value = sum_to_replicated(part)
    return torch.where(torch.isfinite(best), value, torch.full_like(value, NO_NEGATIVE))
