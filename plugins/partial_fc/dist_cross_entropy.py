"""Softmax cross-entropy over classes sharded across ranks, with extra denominator terms.

    L = 1/B sum_i [ log( sum_{ranks} sum_k e^{z_ik} + e^{p_i} + e^{r_i} ) - z_{i,y_i} ]

z: each rank's (B, K) scaled logits for its shard; p_i: a "partial" term, each rank holding one part
(summed over ranks like a column); r_i: a "replicated" term, identical on every rank, added once. Gradients
follow the convention of collectives.py: every rank's backward gives its own columns' and its own partial
term's gradient; the replicated term's gradient is divided by the world size (every rank computes it).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .collectives import rank_and_world_size


def _all_reduce(tensor: torch.Tensor, op) -> torch.Tensor:
    if rank_and_world_size()[1] > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


class _DistSoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, labels: torch.Tensor, replicated: torch.Tensor | None, partial: torch.Tensor | None
    ) -> torch.Tensor:
        batch = logits.size(0)
        if logits.size(1) > 0:
            row_max = logits.detach().max(dim=1).values
        else:  # a shard with no sampled centre (sample_rate = 0 and no positive here)
            row_max = logits.new_full((batch,), float("-inf"))
        for extra in (replicated, partial):
            if extra is not None:
                row_max = torch.maximum(row_max, extra.detach())
        # the largest logit of each row over every rank's class shard and the extra terms, for a stable exp
        _all_reduce(row_max, dist.ReduceOp.MAX)
        probs = (logits.detach() - row_max[:, None]).exp_()
        denominator = probs.sum(dim=1)
        partial_exp = None
        if partial is not None:
            partial_exp = (partial.detach() - row_max).exp()
            denominator = denominator + partial_exp  # this rank's part, summed over ranks next
        # softmax denominator of each row: sum of exps over every rank's class shard and partial terms
        _all_reduce(denominator, dist.ReduceOp.SUM)
        replicated_exp = None
        if replicated is not None:
            replicated_exp = (replicated.detach() - row_max).exp()
            denominator = denominator + replicated_exp  # identical on every rank: added once, after the sum
        on_shard = labels >= 0
        rows = on_shard.nonzero(as_tuple=True)[0]
        target = torch.zeros(batch, dtype=logits.dtype, device=logits.device)
        target[rows] = logits.detach()[rows, labels[rows]] - row_max[rows]
        # each row's target class lives on exactly one rank; the others contribute 0
        _all_reduce(target, dist.ReduceOp.SUM)
        probs.div_(denominator[:, None])
        replicated_prob = None if replicated_exp is None else replicated_exp / denominator
        partial_prob = None if partial_exp is None else partial_exp / denominator
        ctx.save_for_backward(probs, labels, replicated_prob, partial_prob)
        return (denominator.log() - target).mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        probs, labels, replicated_prob, partial_prob = ctx.saved_tensors
        batch = probs.size(0)
        rows = (labels >= 0).nonzero(as_tuple=True)[0]
        grad_logits = probs
        grad_logits[rows, labels[rows]] -= 1.0
        grad_logits.mul_(grad_loss / batch)
        grad_replicated = grad_partial = None
        if replicated_prob is not None:
            # every rank computes this same gradient and the gather's backward sums over ranks: count once
            grad_replicated = replicated_prob * (grad_loss / (batch * rank_and_world_size()[1]))
        if partial_prob is not None:
            grad_partial = partial_prob * (grad_loss / batch)
        return grad_logits, None, grad_replicated, grad_partial


def dist_softmax_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, extra: torch.Tensor | None = None, partial: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean softmax cross-entropy over classes sharded across ranks.

    logits:  (B, K) float, this rank's scaled logits for the whole global batch.
    labels:  (B,) or (B, 1) int64, target column on this shard or -1 when the target lives on another rank.
    extra:   (B,) float or None, a replicated log-sum-exp term: identical on every rank, counted once.
    partial: (B,) float or None, this rank's part of a log-sum-exp term whose parts add up over ranks.
    Returns the 0-d loss, identical on every rank.
    """
    return _DistSoftmaxCrossEntropy.apply(logits, labels.reshape(-1), extra, partial)
