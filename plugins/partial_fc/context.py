"""LossContext: what a partial-FC loss sees in one step (see protocol.py for the hooks that receive it).

Shapes: B = global batch (all ranks), D = embedding size, K = class centres used on this rank this step
(the shard, or its sampled subset when sample_rate < 1). Everything batch-shaped is identical on every
rank; logits and centre-indexed values are this rank's shard.
"""

from __future__ import annotations

from functools import cached_property

import torch
import torch.nn.functional as F

from .collectives import all_reduce_no_grad, sum_gradients, sum_to_replicated


class LossContext:
    """Attributes:
        embeddings (X):   (B, D) gathered, un-normalised embeddings, differentiable, float32 or float64.
        labels (y):       (B,) global class ids.
        logits (c):       (B, K) cosines c_ij = <x_i/|x_i|, W_j/|W_j|> in [-1, 1], differentiable. Valid until
                          the margin stage: a margin object may rewrite them in place, as upstream's does.
                          The chunked head (head_chunk) never holds them: reading them there is an error.
        shard_target_cos: (n,) c_{i,y_i} of the on_shard_rows, differentiable (both heads).
        dtype, device:    of the logits (float32, or float64 for a float64 head).
        shard_labels:     (B,) column of y_i in `logits`, -1 when class y_i is on another rank.
        class_index:      (K,) global class id of each logits column.
        local_index:      (K,) row of each logits column in this rank's shard (for sharded buffers).
        class_start, num_local: this shard's class range [class_start, class_start + num_local).
        scale (s), epoch, rank, world_size, group (None: the default process group).
        local_batch (b): rows per rank (B = world_size * b); this rank's rows are [rank * b, (rank + 1) * b).
        collect_diagnostics: True on steps the recipe logs; skip costly diagnostics otherwise.
    Lazily computed (once per step, on every rank alike): norms, unit_embeddings, on_shard_rows, target_cos,
    target_cos_detached; local_rows, local_labels (this rank's part of the batch).
    """

    def __init__(
        self,
        *,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        logits: torch.Tensor | None,
        shard_labels: torch.Tensor,
        class_index: torch.Tensor,
        class_start: int,
        num_local: int,
        scale: float,
        epoch: int,
        rank: int,
        world_size: int,
        group=None,
        local_batch: int | None = None,
        collect_diagnostics: bool = False,
        shard_target_cos: torch.Tensor | None = None,
        head_chunk: int | str = 0,
    ):
        self.embeddings, self.labels, self.shard_labels = embeddings, labels, shard_labels
        self._logits, self.head_chunk = logits, head_chunk
        if shard_target_cos is not None:
            self.shard_target_cos = shard_target_cos
        source = logits if logits is not None else shard_target_cos
        self.dtype, self.device = source.dtype, source.device
        self.class_index = class_index
        self.local_index = class_index - class_start
        self.class_start, self.num_local = class_start, num_local
        self.scale, self.epoch = float(scale), epoch
        self.rank, self.world_size, self.group = rank, world_size, group
        self.local_batch = embeddings.size(0) // world_size if local_batch is None else int(local_batch)
        self.collect_diagnostics = collect_diagnostics
        self.diagnostics: dict[str, torch.Tensor] = {}
        self._reporter = ""

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            raise RuntimeError(
                f"loss {self._reporter or '?'!r} reads ctx.logits, the (B, K) cosines the chunked head "
                f"(head_chunk={self.head_chunk!r}) never holds; use ctx.shard_target_cos for target cosines, "
                f"or set head_chunk = 0"
            )
        return self._logits

    @cached_property
    def shard_target_cos(self) -> torch.Tensor:
        """(n,) c_{i,y_i} of the on_shard_rows (their target class is on this shard), differentiable."""
        rows = self.on_shard_rows
        return self.logits[rows, self.shard_labels[rows]]

    @cached_property
    def norms(self) -> torch.Tensor:
        """(B,) |x_i|, differentiable (MagFace's feature magnitude a_i before clamping)."""
        return self.embeddings.norm(dim=1)

    @cached_property
    def unit_embeddings(self) -> torch.Tensor:
        """(B, D) x_i / |x_i|, differentiable."""
        return F.normalize(self.embeddings, dim=1)

    @property
    def local_rows(self) -> torch.Tensor:
        """(b, D) this rank's own rows of `embeddings`, differentiable; their gradient goes back through the
        gather like every other row's (a "partial" term built on them follows the head's convention)."""
        return self.embeddings.narrow(0, self.rank * self.local_batch, self.local_batch)

    @property
    def local_labels(self) -> torch.Tensor:
        """(b,) this rank's own labels."""
        return self.labels.narrow(0, self.rank * self.local_batch, self.local_batch)

    @cached_property
    def on_shard_rows(self) -> torch.Tensor:
        """(n,) indices of the rows whose target class is on this shard."""
        return (self.shard_labels >= 0).nonzero(as_tuple=True)[0]

    @cached_property
    def target_cos(self) -> torch.Tensor:
        """(B,) c_{i,y_i}, all-reduced from the rank that holds each class, differentiable: its gradient reaches
        the holder's logits (summed over ranks, see collectives.sum_to_replicated)."""
        local = torch.zeros(self.labels.numel(), dtype=self.dtype, device=self.device)
        local = local.index_put((self.on_shard_rows,), self.shard_target_cos)
        # the target cosine of each row lives on one rank; the others hold 0
        return sum_to_replicated(local)

    @cached_property
    def target_cos_detached(self) -> torch.Tensor:
        """(B,) c_{i,y_i} without gradient (for masks and thresholds)."""
        local = torch.zeros(self.labels.numel(), dtype=self.dtype, device=self.device)
        local[self.on_shard_rows] = self.shard_target_cos.detach()
        # the target cosine of each row lives on one rank; the others hold 0
        return all_reduce_no_grad(local, "sum")

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Detached reduction over ranks ("sum", "max", "min"), e.g. per-row sums and counts over the shards."""
        return all_reduce_no_grad(tensor, op)

    def replicated_parameter(self, parameter: torch.Tensor) -> torch.Tensor:
        """Use a parameter every rank holds a copy of through this: after backward each copy holds the
        one-process gradient (the per-rank gradients summed over ranks)."""
        return sum_gradients(parameter)

    def report(self, name: str, value: torch.Tensor | float) -> None:
        """A diagnostic scalar, logged as "<loss name>/<name>"."""
        key = f"{self._reporter}/{name}" if self._reporter else name
        self.diagnostics[key] = value.detach() if torch.is_tensor(value) else torch.tensor(value)
