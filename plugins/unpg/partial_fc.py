"""Partial FC with a negative-pair hook: class centres sharded across ranks, optional sampling of
negative centres, and an extra-logit hook (UNPG) between the cosine logits and the softmax.

Pipeline per step, on every rank:
    local embeddings (b, D) --all-gather--> X (B, D), labels y (B,)
    cos theta = normalize(X) @ normalize(W_shard)^T              (B, C_sample)
    hook(X, y, s) -> logsumexp(s * N')                           (0-d, the same on every rank)
    margin: s * psi(cos theta_{i,y_i}) on the target, s * cos theta elsewhere
    distributed softmax cross-entropy, the hook's term counted once in each row's denominator

Constructor and call match upstream arcface_torch's PartialFC_V2 (same `weight` parameter and
state_dict), so it replaces that class line for line; see PartialFC_V2_UNPG.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dist_ops import all_gather_no_grad, all_gather_with_grad, dist_softmax_cross_entropy, rank_and_world_size


class PartialFC(nn.Module):
    """Args:
        margin_loss: callable (cos logits (B, C), shard labels (B,) with -1 off shard) -> scaled logits,
            with attribute `s` (scale) -- e.g. upstream's CombinedMarginLoss.
        embedding_size (D), num_classes (C, global), sample_rate: fraction of this shard's centres used per
            step (positives always kept; 0 keeps only the positives, as upstream), fp16: compute the cosine matmul under fp16 autocast (CUDA),
        negative_pairs: None or a hook (X (B, D), y (B,), s) -> object with `.log_sum_exp` (0-d or None).
    The last hook diagnostics are in `self.last_stats`.
    """

    def __init__(self, margin_loss, embedding_size: int, num_classes: int, sample_rate: float = 1.0,
                 fp16: bool = False, negative_pairs: nn.Module | None = None):
        super().__init__()
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate={sample_rate} must be in [0, 1]; use 1.0 to keep every class centre")
        self.rank, self.world_size = rank_and_world_size()
        if num_classes < self.world_size:
            raise ValueError(f"num_classes={num_classes} is smaller than the world size {self.world_size}; "
                             f"every rank needs at least one class centre, so use fewer ranks")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        self.num_local = num_classes // self.world_size + int(self.rank < num_classes % self.world_size)
        self.class_start = num_classes // self.world_size * self.rank + min(self.rank, num_classes % self.world_size)
        self.sample_rate = sample_rate
        self.num_sample = max(1, int(sample_rate * self.num_local))
        self.fp16 = fp16
        self.margin_softmax = margin_loss
        self.negative_pairs = negative_pairs
        self.weight = nn.Parameter(torch.normal(0, 0.01, (self.num_local, embedding_size)))
        self.last_stats: dict[str, torch.Tensor] = {}

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
            raise ValueError(f"embeddings of shape {tuple(local_embeddings.shape)} do not match "
                             f"embedding_size={self.embedding_size}; pass (batch, {self.embedding_size})")
        if local_labels.numel() != local_embeddings.size(0):
            raise ValueError(f"{local_labels.numel()} labels for {local_embeddings.size(0)} embeddings; pass one label per row")
        low, high = (int(v) for v in torch.aminmax(local_labels))  # one host sync per step
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"label {bad} is outside [0, num_classes={self.num_classes}); "
                             f"set config.num_classes to the dataset's class count or fix the labels")

        embeddings = all_gather_with_grad(local_embeddings)            # (B, D)
        labels = all_gather_no_grad(local_labels)                      # (B,)
        shard_labels = labels - self.class_start
        shard_labels[(shard_labels < 0) | (shard_labels >= self.num_local)] = -1

        weight = self.weight
        if self.num_sample < self.num_local:
            index, shard_labels = self.sample(shard_labels)
            weight = self.weight[index]

        with torch.autocast(device_type=embeddings.device.type, enabled=self.fp16):
            logits = F.linear(F.normalize(embeddings), F.normalize(weight))
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()                                    # softmax and margins in fp32
        logits = logits.clamp(-1.0, 1.0)                               # (B, K) cos theta

        extra = None
        if self.negative_pairs is not None:
            term = self.negative_pairs(embeddings, labels, float(self.margin_softmax.s))
            self.last_stats = term.stats
            if term.log_sum_exp is not None:
                extra = term.log_sum_exp.to(logits.dtype).expand(logits.size(0))

        logits = self.margin_softmax(logits, shard_labels)
        return dist_softmax_cross_entropy(logits, shard_labels, extra)
