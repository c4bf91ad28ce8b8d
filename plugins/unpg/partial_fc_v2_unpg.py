"""Drop-in replacement for upstream arcface_torch's PartialFC_V2 that trains with UNPG.

In an upstream train_v2.py, replace

    module_partial_fc = PartialFC_V2(margin_loss, cfg.embedding_size, cfg.num_classes, cfg.sample_rate, cfg.fp16)
with
    from plugins.unpg import PartialFC_V2_UNPG
    module_partial_fc = PartialFC_V2_UNPG(margin_loss, cfg.embedding_size, cfg.num_classes, cfg.sample_rate, cfg.fp16)

Same `weight` parameter (so checkpoints load both ways), same call (local_embeddings, local_labels) -> loss,
same gradient convention under DDP. Call `module_partial_fc.set_epoch(epoch)` at the start of each epoch
when a loss that depends on the epoch is added through `losses`.
"""

from __future__ import annotations

from ..partial_fc import PartialFC, PartialFCLoss
from .unpg import UNPG


class PartialFC_V2_UNPG(PartialFC):
    """PartialFC_V2's arguments plus UNPG's: wisk (w, default 1.5), filter (box-and-whisker on/off) and
    sharded ("auto": each rank builds only its b x B block of pairs when there is more than one rank; True /
    False force it); `losses` adds other partial-FC losses before UNPG (e.g. MagFace); head_chunk and
    head_chunk_budget select the chunked head (PartialFC's)."""

    def __init__(
        self,
        margin_loss,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
        fp16: bool = False,
        wisk: float = 1.5,
        filter: bool = True,
        losses: list[PartialFCLoss] | None = None,
        sharded: bool | str = "auto",
        head_chunk: int | str = 0,
        head_chunk_budget: float = 4.0,
    ):
        super().__init__(
            margin_loss,
            embedding_size,
            num_classes,
            sample_rate,
            fp16,
            losses=[*(losses or []), UNPG(wisk=wisk, filter=filter, sharded=sharded)],
            head_chunk=head_chunk,
            head_chunk_budget=head_chunk_budget,
        )

    @property
    def unpg(self) -> UNPG:
        return self.losses[-1]

    negative_pairs = unpg  # the attribute's earlier name
