"""Drop-in replacement for upstream arcface_torch's PartialFC_V2 that trains with UNPG.

In an upstream train_v2.py, replace

    module_partial_fc = PartialFC_V2(margin_loss, cfg.embedding_size, cfg.num_classes, cfg.sample_rate, cfg.fp16)
with
    from plugins.unpg import PartialFC_V2_UNPG
    module_partial_fc = PartialFC_V2_UNPG(margin_loss, cfg.embedding_size, cfg.num_classes, cfg.sample_rate, cfg.fp16)

Same `weight` parameter (so checkpoints load both ways), same call (local_embeddings, local_labels) -> loss,
same gradient convention under DDP.
"""
from __future__ import annotations

from .partial_fc import PartialFC
from .unpg import UNPG


class PartialFC_V2_UNPG(PartialFC):
    """PartialFC_V2's arguments plus UNPG's: wisk (w, default 1.5) and filter (box-and-whisker on/off)."""

    def __init__(self, margin_loss, embedding_size: int, num_classes: int, sample_rate: float = 1.0,
                 fp16: bool = False, wisk: float = 1.5, filter: bool = True):
        super().__init__(margin_loss, embedding_size, num_classes, sample_rate, fp16,
                         negative_pairs=UNPG(wisk=wisk, filter=filter))
