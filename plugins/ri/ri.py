"""Recognisability (Chai et al., CVPR 2023, "VLRFR") as a loss of the partial-FC head: the recognisability
index of every face, an index diversion loss that pushes hard faces away from the unrecognisable cluster, and a
regressor that learns to predict the index from the embedding alone (the face-quality score at test time).

With the unrecognisable-identity centre c (unrecognisable_centre.py, rebuilt by the recipe at the start of each
epoch from ri.start_epoch on) and the recognisability index xi_i (recognisability_index.py):

    L_ID  = 1/B sum_i max(0, mu_UI + tau - xi_i)                       index diversion (gradient into x_i, W)
    xi^_i = w . dropout(x_i / |x_i|) + b                               perceptibility regression
    L_reg = 1/B sum_i smoothL1_beta(xi^_i - stopgrad(xi_i))
    loss  = margin softmax + diversion_weight * L_ID + regression_weight * L_reg

mu_UI is the mean index of the unrecognisable faces themselves; a face whose index lies less than tau above it is
indistinguishable from them and L_ID raises its index (away from c, towards its own prototype, away from the
nearest negative one). Defaults: tau 0.2, diversion_weight 1.0, regression_weight 1.0, smooth-L1 beta 0.75,
dropout 0.0, start_epoch 1; the centre from 1024 training faces shrunk to 8x8 pixels and blurred by 1.5 pixels.
Until a centre is set (and before start_epoch) the loss adds nothing. Not included: the paper's perceptibility
attention module (a second branch on the backbone's feature map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..partial_fc.protocol import PartialFCLoss, ShardInfo, Term
from .nearest_negative import nearest_negative_cosine
from .recognisability_index import recognisability_index
from .unrecognisable_centre import unrecognisable_centre


def smooth_l1(difference: torch.Tensor, beta: float) -> torch.Tensor:
    """Elementwise 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (torch's smooth_l1_loss, unreduced)."""
    return F.smooth_l1_loss(difference, torch.zeros_like(difference), reduction="none", beta=beta)


class RI(PartialFCLoss):
    """Args: tau (margin above mu_UI), diversion_weight, regression_weight, smooth_l1_beta, dropout (on the
    regressor's input), start_epoch, and the centre's recipe: centre_images faces, shrunk to centre_size pixels,
    blurred by centre_blur pixels.

    Buffers: centre (D,), ui_level (mu_UI, 0-d), has_centre (0-d bool); parameters: regressor (Linear D -> 1,
    replicated on every rank, its gradient summed over ranks). L_ID is "replicated" (every rank computes it from
    the gathered batch), L_reg "partial" (each rank regresses its own rows, so dropout needs no shared RNG).
    """

    name = "ri"
    needs_unrecognisable_centre = True  # the recipe builds the centre with the backbone (train.py)
    reads_all_logits = "the nearest negative prototype of every face"  # so the chunked head refuses it
    DEFAULTS = {
        "tau": 0.2,
        "diversion_weight": 1.0,
        "regression_weight": 1.0,
        "smooth_l1_beta": 0.75,
        "dropout": 0.0,
        "start_epoch": 1,
        "centre_images": 1024,
        "centre_size": 8,
        "centre_blur": 1.5,
    }

    def __init__(
        self,
        tau: float = 0.2,
        diversion_weight: float = 1.0,
        regression_weight: float = 1.0,
        smooth_l1_beta: float = 0.75,
        dropout: float = 0.0,
        start_epoch: int = 1,
        centre_images: int = 1024,
        centre_size: int = 8,
        centre_blur: float = 1.5,
    ):
        super().__init__()
        for key, value in (("tau", tau), ("diversion_weight", diversion_weight)):
            if not _is_number(value) or value < 0:
                raise ValueError(f"{key}={value!r} must be a number >= 0 (default {self.DEFAULTS[key]})")
        if not _is_number(regression_weight) or regression_weight < 0:
            raise ValueError(f"regression_weight={regression_weight!r} must be a number >= 0 (default 1.0)")
        if not _is_number(smooth_l1_beta) or smooth_l1_beta <= 0:
            raise ValueError(f"smooth_l1_beta={smooth_l1_beta!r} must be a number > 0 (default 0.75)")
        if not _is_number(dropout) or not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout!r} must be a number in [0, 1) (default 0.0)")
        for key, value, low in (("start_epoch", start_epoch, 0), ("centre_images", centre_images, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key}={value!r} must be a whole number >= {low} (default {self.DEFAULTS[key]})")
        if isinstance(centre_size, bool) or not isinstance(centre_size, int) or not 1 <= centre_size <= 112:
            raise ValueError(f"centre_size={centre_size!r} must be a whole number of pixels in [1, 112] (default 8)")
        if not _is_number(centre_blur) or not 0 <= centre_blur <= 50:
            raise ValueError(f"centre_blur={centre_blur!r} must be a number of pixels in [0, 50] (default 1.5)")
        self.tau, self.diversion_weight, self.regression_weight = (
            float(tau),
            float(diversion_weight),
            float(regression_weight),
        )
        self.smooth_l1_beta, self.dropout = float(smooth_l1_beta), float(dropout)
        self.start_epoch, self.centre_images = int(start_epoch), int(centre_images)
        self.centre_size, self.centre_blur = int(centre_size), float(centre_blur)
        self.epoch = 0
        self.register_buffer("centre", None)
        self.register_buffer("ui_level", torch.zeros(()))
        self.register_buffer("has_centre", torch.zeros((), dtype=torch.bool))
        self.regressor: nn.Linear | None = None

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, diversion_weight={self.diversion_weight}, regression_weight={self.regression_weight}, "
            f"smooth_l1_beta={self.smooth_l1_beta}, dropout={self.dropout}, start_epoch={self.start_epoch}"
        )

    def attach(self, shard: ShardInfo) -> None:
        self.centre = torch.zeros(shard.embedding_size)
        self.regressor = nn.Linear(shard.embedding_size, 1)
        with torch.no_grad():  # the same start on every rank, whatever each rank's RNG
            self.regressor.weight.zero_()
            self.regressor.bias.zero_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def active(self) -> bool:
        return self.epoch >= self.start_epoch and bool(self.has_centre)

    def _require_attached(self) -> None:
        if self.regressor is None:
            raise RuntimeError("RI has no centre buffer; pass it to a PartialFC head (losses=[RI()]) before use")

    @torch.no_grad()
    def set_centre(self, centre: torch.Tensor, ui_level: float) -> None:
        """Use the unit centre (D,) and mu_UI from now on (identical on every rank)."""
        self._require_attached()
        if centre.shape != self.centre.shape:
            raise ValueError(f"centre of shape {tuple(centre.shape)} does not fit embedding size {self.centre.numel()}")
        self.centre.copy_(F.normalize(centre.to(self.centre.dtype), dim=0))
        self.ui_level.fill_(float(ui_level))
        self.has_centre.fill_(True)

    @torch.no_grad()
    def update_centre(
        self, embeddings: torch.Tensor, labels: torch.Tensor, weight_shard: torch.Tensor, class_start: int
    ):
        """Rebuild centre and mu_UI from this rank's unrecognisable faces (n, D), labels (n,) and class centres."""
        centre, mu_ui = unrecognisable_centre(embeddings, labels, weight_shard, class_start)
        self.set_centre(centre, mu_ui)

    def index(self, ctx) -> torch.Tensor:
        """(B,) xi_i of the gathered batch, differentiable, identical on every rank."""
        unit = ctx.unit_embeddings.to(ctx.logits.dtype)
        cos_negative = nearest_negative_cosine(ctx.logits, ctx.shard_labels)
        return recognisability_index(unit, self.centre, ctx.target_cos, cos_negative)

    def predict(self, unit_rows: torch.Tensor, regressor: tuple[torch.Tensor, torch.Tensor] | None = None):
        """xi^ (n,) for unit embeddings (n, D): the regressor's prediction (dropout in training mode)."""
        weight, bias = regressor if regressor is not None else (self.regressor.weight, self.regressor.bias)
        rows = F.dropout(unit_rows, self.dropout, self.training) if self.dropout else unit_rows
        return F.linear(rows, weight.to(rows.dtype), bias.to(rows.dtype)).reshape(-1)

    def auxiliary_losses(self, ctx) -> list[Term]:
        self._require_attached()
        if not self.active or (self.diversion_weight == 0 and self.regression_weight == 0):
            return []
        xi = self.index(ctx)
        terms = []
        if self.diversion_weight > 0:
            hinge = (self.ui_level.to(xi.dtype) + self.tau - xi).clamp_min(0.0)
            terms.append(Term(self.diversion_weight * hinge.mean(), "replicated"))
        if self.regression_weight > 0:
            params = (ctx.replicated_parameter(self.regressor.weight), ctx.replicated_parameter(self.regressor.bias))
            own = slice(ctx.rank * ctx.local_batch, (ctx.rank + 1) * ctx.local_batch)
            predicted = self.predict(F.normalize(ctx.local_rows.to(xi.dtype), dim=1), params)
            error = predicted - xi.detach()[own]
            part = smooth_l1(error, self.smooth_l1_beta).sum() / xi.numel()  # this rank's rows of 1/B sum_i
            terms.append(Term(self.regression_weight * part, "partial"))
        if ctx.collect_diagnostics:
            ctx.report("index_mean", xi.mean())
            ctx.report("ui_level", self.ui_level)
            ctx.report("diverted", (xi < self.ui_level + self.tau).to(xi.dtype).mean())
        return terms


def _is_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )
