"""Cross-rank pieces of the partial-FC head: all-gather with gradient, and a softmax cross-entropy whose
classes are sharded across ranks and whose denominator may hold one extra logit per row that every rank
computed identically (UNPG's term), counted once.

Gradient convention (the same as upstream arcface_torch's PartialFC_V2): the gathered embeddings' gradient
is summed over ranks and multiplied by the world size; DDP then averages backbone gradients over ranks, so
the backbone receives exactly the single-process gradient of the global-batch loss.
With no process group (plain `python train.py`) every function here is the one-process computation.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world_size = rank_and_world_size()
        ctx.rank, ctx.world_size, ctx.local_size = rank, world_size, tensor.size(0)
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        # every rank receives every rank's rows (equal row counts per rank are required)
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        # each rank's loss depends on every rank's rows: sum the gradients of all ranks
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        local = grad.narrow(0, ctx.rank * ctx.local_size, ctx.local_size)
        return local * ctx.world_size


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each rank -> (world_size * b, ...) in rank order; gradients flow back (see module doc)."""
    if rank_and_world_size()[1] == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each rank -> (world_size * b, ...) in rank order, e.g. labels."""
    world_size = rank_and_world_size()[1]
    if world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    # every rank receives every rank's rows
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _all_reduce(tensor: torch.Tensor, op) -> torch.Tensor:
    if rank_and_world_size()[1] > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


class _DistSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        batch = logits.size(0)
        row_max = logits.detach().max(dim=1).values
        if extra is not None:
            row_max = torch.maximum(row_max, extra.detach())
        # the largest logit of each row over every rank's class shard (and the extra term), for a stable exp
        _all_reduce(row_max, dist.ReduceOp.MAX)
        probs = (logits.detach() - row_max[:, None]).exp_()
        denominator = probs.sum(dim=1)
        # softmax denominator of each row: sum of exps over every rank's class shard
        _all_reduce(denominator, dist.ReduceOp.SUM)
        extra_prob = None
        if extra is not None:
            extra_exp = (extra.detach() - row_max).exp()
            denominator = denominator + extra_exp  # identical on every rank: added once, after the sum
            extra_prob = extra_exp / denominator
        on_shard = labels >= 0
        rows = on_shard.nonzero(as_tuple=True)[0]
        target = torch.zeros(batch, dtype=logits.dtype, device=logits.device)
        target[rows] = logits.detach()[rows, labels[rows]] - row_max[rows]
        # each row's target class lives on exactly one rank; the others contribute 0
        _all_reduce(target, dist.ReduceOp.SUM)
        probs.div_(denominator[:, None])
        ctx.save_for_backward(probs, labels, extra_prob)
        ctx.has_extra = extra is not None
        return (denominator.log() - target).mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        probs, labels, extra_prob = ctx.saved_tensors
        batch = probs.size(0)
        rows = (labels >= 0).nonzero(as_tuple=True)[0]
        grad_logits = probs
        grad_logits[rows, labels[rows]] -= 1.0
        grad_logits.mul_(grad_loss / batch)
        grad_extra = None
        if ctx.has_extra:
            # every rank computes this same gradient and all_gather_with_grad sums over ranks: divide so it counts once
            grad_extra = extra_prob * (grad_loss / (batch * rank_and_world_size()[1]))
        return grad_logits, None, grad_extra


def dist_softmax_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, extra: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean softmax cross-entropy over classes sharded across ranks.

    logits: (B, C_local) float, this rank's scaled logits for the whole global batch.
    labels: (B,) int64, target column on this shard or -1 when the target lives on another rank.
    extra:  (B,) float or None, one more logit per row, identical on every rank, counted once.
    Returns the 0-d loss, identical on every rank.
    """
    return _DistSoftmaxCrossEntropy.apply(logits, labels, extra)
