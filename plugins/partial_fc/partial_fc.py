"""Partial FC with the loss protocol: class centres sharded across ranks, optional sampling of negative
centres, and a list of losses (protocol.py) around arcface_torch's margin softmax.

Pipeline per step, on every rank:
    local embeddings (b, D) --all-gather--> X (B, D), labels y (B,)
    c = normalize(X) @ normalize(W_shard[sampled])^T                 (B, K) cosines, the LossContext
    losses: denominator terms and auxiliary losses from the context
    margin stage: margin_loss(c, shard labels (B, 1)) -> scaled logits (skipped, s * c instead, when a loss
                  defines the target logit), then each loss's rewrite_logits in order
    distributed softmax cross-entropy with the denominator terms; + auxiliary losses; losses' end_step

Constructor and call match upstream arcface_torch's PartialFC_V2 (same `weight` parameter and state_dict,
labels (b,) or (b, 1)), so it replaces that class line for line. With no loss it is PartialFC_V2.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .collectives import (
    all_gather_no_grad,
    all_gather_with_grad,
    check_equal_batches,
    count_once,
    rank_and_world_size,
    sum_partial,
)
from .context import LossContext
from .dist_cross_entropy import dist_softmax_cross_entropy
from .protocol import PartialFCLoss, ShardInfo, Term, overrides_rewrite


def class_shard(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class, number of classes) of rank `rank`'s shard of the class centres: contiguous shards, the
    first num_classes % world_size ranks one class more, as upstream's PartialFC_V2 splits them."""
    start = num_classes // world_size * rank + min(rank, num_classes % world_size)
    return start, num_classes // world_size + int(rank < num_classes % world_size)


class PartialFC(nn.Module):
    """Args:
        margin_loss: callable (cos logits (B, K), shard labels (B, 1) with -1 off shard) -> scaled logits,
            with attribute `s` (scale) -- e.g. upstream's CombinedMarginLoss.
        embedding_size (D), num_classes (C, global), sample_rate: fraction of this shard's centres used per
            step (positives always kept; 0 keeps only the positives, as upstream), fp16: compute the cosine
            matmul under fp16 autocast (CUDA),
        losses: a PartialFCLoss or a list of them, composed in order (see protocol.py).
        negative_pairs: a single loss, the keyword earlier versions used for UNPG; appended to `losses`.
    `collect_diagnostics = True` asks the losses for their costly diagnostics on the next step; the last
    step's diagnostics are in `last_diagnostics` ({"<loss>/<name>": 0-d tensor}).
    """

    def __init__(
        self,
        margin_loss,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
        fp16: bool = False,
        losses: PartialFCLoss | Iterable[PartialFCLoss] | None = None,
        *,
        negative_pairs: PartialFCLoss | None = None,
    ):
        super().__init__()
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate={sample_rate} must be in [0, 1]; use 1.0 to keep every class centre")
        if not callable(margin_loss):
            raise TypeError(
                f"margin_loss {margin_loss!r} is not callable; pass a margin object such as "
                f"arcface_torch's CombinedMarginLoss"
            )
        self.rank, self.world_size = rank_and_world_size()
        if num_classes < self.world_size:
            raise ValueError(
                f"num_classes={num_classes} is smaller than the world size {self.world_size}; "
                f"every rank needs at least one class centre, so use fewer ranks"
            )
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.class_start, self.num_local = class_shard(num_classes, self.rank, self.world_size)
        self.sample_rate = sample_rate
        self.num_sample = int(sample_rate * self.num_local)
        self.fp16 = fp16
        self.margin_softmax = margin_loss
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.num_local, embedding_size)))
        self.losses = nn.ModuleList(_as_loss_list(losses, negative_pairs))
        self.epoch = 0
        self.collect_diagnostics = False
        self.last_diagnostics: dict[str, torch.Tensor] = {}
        shard = ShardInfo(num_classes, self.num_local, self.class_start, embedding_size, self.rank, self.world_size)
        for loss in self.losses:
            loss.attach(shard)

    def set_epoch(self, epoch: int) -> None:
        """Tell the losses the epoch (from 0), as samplers are told; call at the start of every epoch."""
        self.epoch = int(epoch)
        for loss in self.losses:
            loss.set_epoch(self.epoch)

    def parameter_groups(self) -> list[dict]:
        """Optimizer groups for the head: centres and the losses' tensor parameters together (upstream's
        partial-FC group), the losses' scalar parameters in a group without weight decay (if any)."""
        tensors = [self.weight] + [p for p in self.losses.parameters() if p.dim() > 0]
        scalars = [p for p in self.losses.parameters() if p.dim() == 0]
        groups = [{"params": tensors}]
        if scalars:
            groups.append({"params": scalars, "weight_decay": 0.0})
        return groups

    @torch.no_grad()
    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels (B,) shard-relative (-1 off shard) -> (sampled weight rows index (K,), labels remapped).

        Keeps every positive centre of the batch and fills up with random negative centres.
        """
        positive = torch.unique(labels[labels >= 0], sorted=True)
        if self.num_sample <= positive.numel():
            index = positive
        else:
            priority = torch.rand(self.num_local, device=labels.device)
            priority[positive] = 2.0
            index = priority.topk(self.num_sample).indices.sort().values
        remapped = labels.clone()
        on_shard = labels >= 0
        remapped[on_shard] = torch.searchsorted(index, labels[on_shard])
        return index, remapped

    def forward(self, local_embeddings: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
        """local_embeddings (b, D), local_labels (b,) or (b, 1) global class ids -> 0-d loss (same on all ranks)."""
        local_labels = local_labels.reshape(-1).long()
        if local_embeddings.dim() != 2 or local_embeddings.size(1) != self.embedding_size:
            raise ValueError(
                f"embeddings of shape {tuple(local_embeddings.shape)} do not match "
                f"embedding_size={self.embedding_size}; pass (batch, {self.embedding_size})"
            )
        if local_labels.numel() != local_embeddings.size(0):
            raise ValueError(
                f"{local_labels.numel()} labels for {local_embeddings.size(0)} embeddings; pass one label per row"
            )
        low, high = (int(v) for v in torch.aminmax(local_labels))  # one host sync per step
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(
                f"label {bad} is outside [0, num_classes={self.num_classes}); "
                f"set config.num_classes to the dataset's class count or fix the labels"
            )

        check_equal_batches(local_embeddings.size(0), local_embeddings.device)
        embeddings = all_gather_with_grad(local_embeddings)  # (B, D)
        labels = all_gather_no_grad(local_labels)  # (B,)
        shard_labels = labels - self.class_start
        shard_labels[(shard_labels < 0) | (shard_labels >= self.num_local)] = -1

        weight = self.weight
        if self.sample_rate < 1.0:
            index, shard_labels = self.sample(shard_labels)
            weight = self.weight[index]
        else:
            index = torch.arange(self.num_local, device=labels.device)
        self.weight_index = index  # (K,) shard rows used this step

        with torch.autocast(device_type=embeddings.device.type, enabled=self.fp16):
            logits = F.linear(F.normalize(embeddings), F.normalize(weight))
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # softmax and margins in fp32
        logits = logits.clamp_(-1.0, 1.0)  # (B, K) cos theta, in place: no second copy
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            embeddings = embeddings.float()

        scale = getattr(self.margin_softmax, "s", None)
        if scale is None:
            raise TypeError(
                f"margin_loss {self.margin_softmax!r} has no scale attribute `s`; give it one "
                f"(arcface_torch's CombinedMarginLoss has it)"
            )
        ctx = LossContext(
            embeddings=embeddings,
            labels=labels,
            logits=logits,
            shard_labels=shard_labels,
            class_index=index + self.class_start,
            class_start=self.class_start,
            num_local=self.num_local,
            scale=float(scale),
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
            local_batch=local_embeddings.size(0),
            collect_diagnostics=self.collect_diagnostics,
        )
        denominator: dict[str, list[torch.Tensor]] = {"replicated": [], "partial": []}
        auxiliary: list[Term] = []
        for loss in self.losses:
            ctx._reporter = loss.name
            for term in loss.denominator_terms(ctx):
                denominator[term.kind].append(term.value.to(logits.dtype).expand(logits.size(0)))
            auxiliary.extend(loss.auxiliary_losses(ctx))

        if any(loss.defines_target_logit for loss in self.losses):
            scaled = logits * ctx.scale
        else:
            rewrites = any(overrides_rewrite(loss) for loss in self.losses)
            # upstream's margin objects may rewrite their input in place: keep ctx.logits intact for rewrites
            scaled = self.margin_softmax(logits.clone() if rewrites else logits, shard_labels.view(-1, 1))
        for loss in self.losses:
            ctx._reporter = loss.name
            scaled = loss.rewrite_logits(ctx, scaled)

        total = dist_softmax_cross_entropy(
            scaled, shard_labels, _logaddexp(denominator["replicated"]), _logaddexp(denominator["partial"])
        )
        for term in auxiliary:
            value = term.value.to(total.dtype).reshape(())
            total = total + (count_once(value) if term.kind == "replicated" else sum_partial(value))

        with torch.no_grad():
            for loss in self.losses:
                ctx._reporter = loss.name
                loss.end_step(ctx)
        self.last_diagnostics = ctx.diagnostics
        return total


def _logaddexp(values: list[torch.Tensor]) -> torch.Tensor | None:
    if not values:
        return None
    result = values[0]
    for value in values[1:]:
        result = torch.logaddexp(result, value)
    return result


def _as_loss_list(losses, negative_pairs) -> list[PartialFCLoss]:
    if losses is None:
        result = []
    elif isinstance(losses, PartialFCLoss):
        result = [losses]
    else:
        result = list(losses)
    if negative_pairs is not None:
        result.append(negative_pairs)
    for loss in result:
        if not isinstance(loss, PartialFCLoss):
            raise TypeError(
                f"{loss!r} is not a PartialFCLoss; subclass plugins.partial_fc.PartialFCLoss and override its hooks"
            )
    defining = [loss.name for loss in result if loss.defines_target_logit]
    if len(defining) > 1:
        raise ValueError(
            f"losses {', '.join(defining)} each define the target logit; combine at most one of them "
            f"with others (e.g. ['magface', 'unpg'])"
        )
    return result
