"""UniTSFace's unified threshold sample-to-sample loss (USS; Jia et al., NeurIPS 2023) as a partial-FC loss,
added to the margin softmax of margin_list (the paper: CosFace (1.0, 0.0, 0.4)).

A memory bank holds one unit vector m_j per class, sharded like the class centres. With c_ij = cos(x_i, m_j)
over the written rows j, bias b (one learnable scalar) and margin m:

    L_uss = 1/B sum_i [ softplus(-clamp(s (c_{i y_i} - m) - b, -s, s))
                        + sum_{j != y_i} softplus(clamp(s c_ij - b, -s, s)) ]
    loss  = margin softmax + weight * L_uss        (from epoch start_epoch on; epochs count from 0)

softplus(z) = log(1 + e^z) exactly. Rows of the bank never written take no part; a sample whose own class is
not written has no positive term; with sample_rate < 1 only the step's sampled classes take part; while the
bank is empty the term is 0. The first time the term meets a non-empty bank, b (if <= 0) is set to
mean_i logsumexp_{written j != y_i}(s c_ij) (the released initialisation), once: the `initialised` flag
keeps it from being re-set if training later drives b below 0. At the end of every forward pass of the head,
each class j of the step's global batch gets m_j = normalize(mean of normalize(x_i) over its samples),
detached (the released code keeps the last sample; the mean does not depend on the order of ranks).
Defaults: weight 1.0, start_epoch 1 (as released), m 0.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..partial_fc.protocol import PartialFCLoss, ShardInfo, Term


class USS(PartialFCLoss):
    """Args: weight (of L_uss), start_epoch (first epoch with the term), m (positive margin).

    Parameters and buffers: bias (b, 0-d, replicated on every rank, its gradient summed over ranks),
    bank (num_local, D) and written (num_local,) for this rank's classes, initialised (0-d bool).
    The term is "partial": each rank sums over its own bank rows; the head adds the parts.
    """

    name = "uss"
    DEFAULTS = {"weight": 1.0, "start_epoch": 1, "m": 0.1}

    def __init__(self, weight: float = 1.0, start_epoch: int = 1, m: float = 0.1):
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight={weight} must be >= 0 (UniTSFace uses 1.0)")
        if int(start_epoch) != start_epoch or start_epoch < 0:
            raise ValueError(f"start_epoch={start_epoch!r} must be a whole number >= 0 (UniTSFace starts at epoch 1)")
        self.weight, self.start_epoch, self.m = float(weight), int(start_epoch), float(m)
        self.epoch = 0
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("bank", None)
        self.register_buffer("written", None)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, start_epoch={self.start_epoch}, m={self.m}"

    def attach(self, shard: ShardInfo) -> None:
        self.bank = torch.zeros(shard.num_local, shard.embedding_size)
        self.written = torch.zeros(shard.num_local, dtype=torch.bool)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _require_bank(self) -> None:
        if self.bank is None:
            raise RuntimeError("USS has no memory bank; pass it to a PartialFC head (losses=[USS()]) before use")

    def auxiliary_losses(self, ctx) -> list[Term]:
        self._require_bank()
        if self.epoch < self.start_epoch or self.weight == 0:
            return []
        written = self.written[ctx.local_index]  # (K,) sampled bank rows
        # is any bank row written on any rank? (every rank takes the same branch)
        if not bool(ctx.all_reduce(written.any().to(ctx.dtype).reshape(1), "max")):
            return []
        bank = self.bank[ctx.local_index].to(ctx.dtype)  # (K, D)
        cos = ctx.unit_embeddings.to(ctx.dtype) @ bank.t()  # (B, K) c_ij
        rows = ctx.on_shard_rows
        cols = ctx.shard_labels[rows]
        negative = written[None, :].expand_as(cos).clone()
        negative[rows, cols] = False  # j != y_i
        if not bool(self.initialised):
            self._initialise_bias(ctx, cos.detach(), negative)
        s = ctx.scale
        bias = ctx.replicated_parameter(self.bias).to(cos.dtype)
        positive_rows = rows[written[cols]]  # own class written here
        positive_cos = cos[positive_rows, ctx.shard_labels[positive_rows]]
        positive = _softplus(-(s * (positive_cos - self.m) - bias).clamp(-s, s)).sum()
        negative_terms = _softplus((s * cos - bias).clamp(-s, s))
        negative_sum = torch.where(negative, negative_terms, torch.zeros_like(negative_terms)).sum()
        part = (positive + negative_sum) / cos.size(0)  # this shard's part of L_uss
        if ctx.collect_diagnostics:
            ctx.report("bias", self.bias)
        return [Term(self.weight * part, "partial")]

    @torch.no_grad()
    def _initialise_bias(self, ctx, cos: torch.Tensor, negative: torch.Tensor) -> None:
        """b = mean_i logsumexp_{written j != y_i}(s c_ij) over every shard, if b <= 0; then never again."""
        scaled = torch.where(negative, cos * ctx.scale, torch.full_like(cos, float("-inf")))
        local = torch.logsumexp(scaled, dim=1) if cos.size(1) else cos.new_full((cos.size(0),), float("-inf"))
        # logsumexp over every rank's shard: the row maximum, then the sum of exps below it
        row_max = ctx.all_reduce(local, "max")
        shifted = torch.where(torch.isfinite(local), (local - row_max).exp(), torch.zeros_like(local))
        total = row_max + ctx.all_reduce(shifted, "sum").log()
        valid = torch.isfinite(total)
        if not bool(valid.any()):
            return  # no written negative anywhere yet: initialise on a later step
        if float(self.bias.detach()) <= 0:
            self.bias.copy_(total[valid].mean().to(self.bias.dtype))
        self.initialised.fill_(True)

    @torch.no_grad()
    def end_step(self, ctx) -> None:
        """m_j <- normalize(mean of normalize(x_i) over the batch's samples of class j), for this shard's classes."""
        self._require_bank()
        rows = ctx.on_shard_rows
        if rows.numel() == 0:
            return
        bank_rows = ctx.local_index[ctx.shard_labels[rows]]
        touched, inverse = torch.unique(bank_rows, return_inverse=True)
        unit = ctx.unit_embeddings.detach()[rows].to(self.bank.dtype)
        sums = torch.zeros(touched.numel(), unit.size(1), dtype=unit.dtype, device=unit.device)
        sums.index_add_(0, inverse, unit)
        self.bank[touched] = F.normalize(sums, dim=1)
        self.written[touched] = True


def _softplus(z: torch.Tensor) -> torch.Tensor:
    """log(1 + e^z) without a linear cut-off."""
    return torch.logaddexp(z, torch.zeros_like(z))
