"""Partial FC with the loss protocol: class centres sharded across ranks, optional sampling of negative
centres, and a list of losses (protocol.py) around arcface_torch's margin softmax.

Pipeline per step, on every rank:
    local embeddings (b, D) --all-gather--> X (B, D), labels y (B,)
    c = normalize(X) @ normalize(W_shard[sampled])^T                 (B, K) cosines, the LossContext
        (head_chunk > 0: in chunks of classes, never whole; the context holds the target cosines only)
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

from .chunked_softmax import ChunkedStep, chunk_width, chunked_cross_entropy, chunked_target_cosines
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
from .protocol import PartialFCLoss, ShardInfo, Term, chunked_refusal, overrides_rewrite


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
        head_chunk: 0 (default) computes the whole (B, K) logit matrix, as upstream; N > 0 runs the margin softmax
            over classes in chunks of N, "auto" picks N (chunked_softmax.py): the same loss and gradients,
            never a (B, K) tensor beyond the kept exps. For losses whose only rewrite is the target logit.
        head_chunk_budget: GiB per rank the chunked head may keep its exps in (B x K x 4 bytes keeps all); chunks
            beyond it are recomputed in backward (one more B x D x N product each). Kept between steps.
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
        head_chunk: int | str = 0,
        head_chunk_budget: float = 4.0,
    ):
        super().__init__()
        whole_number = isinstance(head_chunk, int) and not isinstance(head_chunk, bool)
        if not (head_chunk == "auto" or (whole_number and head_chunk >= 0)):
            raise ValueError(
                f"head_chunk={head_chunk!r} must be 0 (the whole logit matrix), a number of classes per chunk > 0, "
                f"or 'auto'"
            )
        if isinstance(head_chunk_budget, bool) or not (
            isinstance(head_chunk_budget, (int, float)) and head_chunk_budget >= 0
        ):
            raise ValueError(
                f"head_chunk_budget={head_chunk_budget!r} must be a number of GiB >= 0 (0 recomputes every chunk)"
            )
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
        self.head_chunk, self.head_chunk_budget = head_chunk, float(head_chunk_budget)
        self.last_chunking: dict[str, int] = {}
        self._workspace: torch.Tensor | None = None  # the chunked head's exps buffer, kept for the next step
        self._last_step = None
        if head_chunk:
            _check_chunkable(margin_loss, self.losses, head_chunk)
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

        if self.sample_rate < 1.0:
            index, shard_labels = self.sample(shard_labels)
        else:
            index = torch.arange(self.num_local, device=labels.device)
        self.weight_index = index  # (K,) shard rows used this step
        gathered = embeddings  # the cosines' input; the losses see it in fp32
        if embeddings.dtype in (torch.float16, torch.bfloat16):
            embeddings = embeddings.float()
        scale = getattr(self.margin_softmax, "s", None)
        if scale is None:
            raise TypeError(
                f"margin_loss {self.margin_softmax!r} has no scale attribute `s`; give it one "
                f"(arcface_torch's CombinedMarginLoss has it)"
            )
        context = dict(
            embeddings=embeddings,
            labels=labels,
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
        if self.head_chunk:
            ctx, total, auxiliary = self._chunked_loss(gathered, index, context)
        else:
            ctx, total, auxiliary = self._dense_loss(gathered, index, context)
        for term in auxiliary:
            value = term.value.to(total.dtype).reshape(())
            total = total + (count_once(value) if term.kind == "replicated" else sum_partial(value))

        with torch.no_grad():
            for loss in self.losses:
                ctx._reporter = loss.name
                loss.end_step(ctx)
        self.last_diagnostics = ctx.diagnostics
        return total

    def _loss_terms(self, ctx: LossContext) -> tuple[torch.Tensor | None, torch.Tensor | None, list[Term]]:
        """The losses' denominator terms combined by kind -> (replicated (B,) or None, partial (B,) or None,
        auxiliary terms)."""
        denominator: dict[str, list[torch.Tensor]] = {"replicated": [], "partial": []}
        auxiliary: list[Term] = []
        for loss in self.losses:
            ctx._reporter = loss.name
            for term in loss.denominator_terms(ctx):
                denominator[term.kind].append(term.value.to(ctx.dtype).expand(ctx.labels.numel()))
            auxiliary.extend(loss.auxiliary_losses(ctx))
        return _logaddexp(denominator["replicated"]), _logaddexp(denominator["partial"]), auxiliary

    def _dense_loss(self, embeddings: torch.Tensor, index: torch.Tensor, context: dict):
        """Today's head: the whole (B, K) cosine matrix, the margin object, dist_softmax_cross_entropy."""
        weight = self.weight[index] if self.sample_rate < 1.0 else self.weight
        with torch.autocast(device_type=embeddings.device.type, enabled=self.fp16):
            logits = F.linear(F.normalize(embeddings), F.normalize(weight))
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # softmax and margins in fp32
        logits = logits.clamp_(-1.0, 1.0)  # (B, K) cos theta, in place: no second copy
        ctx = LossContext(logits=logits, **context)
        replicated, partial, auxiliary = self._loss_terms(ctx)
        shard_labels = ctx.shard_labels
        if any(loss.defines_target_logit for loss in self.losses):
            scaled = logits * ctx.scale
        else:
            rewrites = any(overrides_rewrite(loss) for loss in self.losses)
            # upstream's margin objects may rewrite their input in place: keep ctx.logits intact for rewrites
            scaled = self.margin_softmax(logits.clone() if rewrites else logits, shard_labels.view(-1, 1))
        for loss in self.losses:
            ctx._reporter = loss.name
            scaled = loss.rewrite_logits(ctx, scaled)
        return ctx, dist_softmax_cross_entropy(scaled, shard_labels, replicated, partial), auxiliary

    def _chunked_loss(self, embeddings: torch.Tensor, index: torch.Tensor, context: dict):
        """The chunked head (chunked_softmax.py): classes in chunks of head_chunk, target logits from their
        cosines (n,) by the margin's psi or the loss's target_logit, the same loss and gradients."""
        device_type = embeddings.device.type
        with torch.autocast(device_type=device_type, enabled=self.fp16):
            unit = F.normalize(embeddings)
            matmul_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
        unit = unit.float() if unit.dtype in (torch.float16, torch.bfloat16) else unit
        shard_labels = context["shard_labels"]
        columns = index.numel()
        element = torch.empty((), dtype=torch.promote_types(unit.dtype, self.weight.dtype)).element_size()
        last = self._last_step
        step = ChunkedStep(
            scale=context["scale"],
            labels=shard_labels,
            width=chunk_width(self.head_chunk, unit.size(0), columns, element),
            kept_bytes=int(self.head_chunk_budget * 2**30),
            matmul_dtype=matmul_dtype,
            grad_enabled=torch.is_grad_enabled(),
            # the last step's buffer, unless that step still waits for its backward
            workspace=self._workspace if last is None or last.consumed or last.buffer is None else None,
        )
        target_cos, token = chunked_target_cosines(unit, self.weight, index if self.sample_rate < 1.0 else None, step)
        if step.buffer is not None and step.buffer.numel():
            reused = step.workspace is not None and step.buffer.data_ptr() == step.workspace.data_ptr()
            self._workspace = step.workspace if reused else step.buffer  # a reused one keeps its full size
            self._last_step = step
        ctx = LossContext(logits=None, shard_target_cos=target_cos, head_chunk=self.head_chunk, **context)
        replicated, partial, auxiliary = self._loss_terms(ctx)
        defining = [loss for loss in self.losses if loss.defines_target_logit]
        if defining:
            ctx._reporter = defining[0].name
            target_logits = defining[0].target_logit(ctx, target_cos)
        else:
            target_logits = self.margin_softmax.psi(target_cos) * ctx.scale
        self.last_chunking = {
            "width": step.width,
            "chunks": len(step.bounds),
            "kept": step.kept_chunks,
            "online": int(step.online),
        }
        return ctx, chunked_cross_entropy(target_logits, replicated, partial, token, step), auxiliary


def _logaddexp(values: list[torch.Tensor]) -> torch.Tensor | None:
    if not values:
        return None
    result = values[0]
    for value in values[1:]:
        result = torch.logaddexp(result, value)
    return result


def _check_chunkable(margin_loss, losses, head_chunk) -> None:
    """One-line errors for what the chunked head cannot run: a loss rewriting the (B, K) logits, a margin with no
    psi (the target-only rule), upstream's interclass filtering (it rewrites non-target logits)."""
    for loss in losses:
        reason = chunked_refusal(loss)
        if reason:
            raise ValueError(f"head_chunk={head_chunk!r}: {reason}")
    if any(loss.defines_target_logit for loss in losses):
        return
    if not callable(getattr(margin_loss, "psi", None)):
        raise TypeError(
            f"head_chunk={head_chunk!r} needs a margin with psi(cos) (the target logit's rule), which "
            f"{type(margin_loss).__name__} lacks; use recipes.arcface_torch.margin_loss.CombinedMarginLoss or "
            f"head_chunk = 0"
        )
    if getattr(margin_loss, "interclass_filtering_threshold", 0.0) > 0:
        raise ValueError(
            f"head_chunk={head_chunk!r} does not run interclass_filtering_threshold="
            f"{margin_loss.interclass_filtering_threshold} (it rewrites non-target logits); set it to 0 or head_chunk = 0"
        )


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
