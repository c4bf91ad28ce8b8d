"""Partial FC for arcface_torch and the loss protocol its losses plug into. Depends on torch only.

from plugins.partial_fc import PartialFC, PartialFCLoss, Term
head = PartialFC(margin_loss, embedding_size, num_classes, sample_rate, fp16, losses=[...])
"""

from .collectives import (
    all_gather_no_grad,
    all_gather_with_grad,
    all_reduce_no_grad,
    count_once,
    rank_and_world_size,
    sum_gradients,
    sum_partial,
    sum_to_replicated,
)
from .context import LossContext
from .dist_cross_entropy import dist_softmax_cross_entropy
from .partial_fc import PartialFC, class_shard
from .protocol import PartialFCLoss, ShardInfo, Term

__all__ = [
    "PartialFC",
    "class_shard",
    "PartialFCLoss",
    "LossContext",
    "ShardInfo",
    "Term",
    "dist_softmax_cross_entropy",
    "all_gather_with_grad",
    "all_gather_no_grad",
    "all_reduce_no_grad",
    "count_once",
    "sum_partial",
    "sum_to_replicated",
    "sum_gradients",
    "rank_and_world_size",
]
