"""NPCFace (Zeng et al., 2020) as a partial-FC loss: hard negatives re-weighted, and a target margin that
grows with how hard the negatives of the row are.

    hard negatives  M_ij = [c_ij > cos(arccos(c_y) + m)], j != y_i     (raw c_y, strict >, no gradient)
    per-row margin  m_i  = m0 + m1 * mean_{j in M_i} c_ij   (m_i = m0 without hard negatives; no gradient)
    target logit    s * cos(arccos(c_y) + m_i)   where c_y > 0, else s * c_y
    other logits    s * (t * c_ij + a) for j in M_i, else s * c_ij  (every row, also rows with c_y <= 0)

Defaults (FaceX-Zoo's released code): m = 0.5, m0 = 0.40, m1 = 0.20, t = 1.10, a = 0.20. The sums and counts
over hard negatives are all-reduced across class shards, so rows are the global batch; with sample_rate < 1
the negatives are the sampled centres. Gradient: exact through cos(arccos(c_y) + m_i) via c_y and
sqrt(1 - c_y^2), none through the mask or m_i. margin_list does not apply.
"""

from __future__ import annotations

import math

import torch

from ..partial_fc.protocol import PartialFCLoss

_SQRT_EPS = 1e-7  # keeps d sqrt(1 - c^2) / d c finite at c = +-1


class NPCFace(PartialFCLoss):
    """Args: m (hard-negative threshold margin), m0, m1 (per-row margin m0 + m1 * mean hard cosine),
    t, a (hard-negative logit t * c + a)."""

    name = "npcface"
    defines_target_logit = True
    DEFAULTS = {"m": 0.5, "m0": 0.40, "m1": 0.20, "t": 1.10, "a": 0.20}

    def __init__(self, m: float = 0.5, m0: float = 0.40, m1: float = 0.20, t: float = 1.10, a: float = 0.20):
        super().__init__()
        if m < 0 or m0 < 0 or m1 < 0:
            raise ValueError(f"m={m}, m0={m0}, m1={m1} must be >= 0 (NPCFace uses 0.5, 0.40, 0.20)")
        if t <= 0:
            raise ValueError(f"t={t} must be > 0 (NPCFace uses 1.10)")
        self.m, self.m0, self.m1, self.t, self.a = float(m), float(m0), float(m1), float(t), float(a)

    def extra_repr(self) -> str:
        return f"m={self.m}, m0={self.m0}, m1={self.m1}, t={self.t}, a={self.a}"

    @torch.no_grad()
    def hard_negatives(self, ctx) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (hard mask (B, K) over this shard's columns, per-row margin m_i (B,) from every shard)."""
        cos_y = ctx.target_cos_detached  # (B,)
        threshold = cos_y * math.cos(self.m) - torch.sqrt((1.0 - cos_y**2).clamp_min(0)) * math.sin(self.m)
        hard = ctx.logits.detach() > threshold[:, None]  # (B, K)
        rows = ctx.on_shard_rows
        hard[rows, ctx.shard_labels[rows]] = False  # the target is no negative
        sums = torch.where(
            hard, ctx.logits.detach(), torch.zeros((), dtype=ctx.logits.dtype, device=ctx.logits.device)
        ).sum(dim=1)
        counts = hard.sum(dim=1).to(sums.dtype)
        # per-row sum and count of hard negatives over every rank's class shard
        sums, counts = ctx.all_reduce(sums), ctx.all_reduce(counts)
        margin = self.m0 + self.m1 * sums / counts.clamp_min(1.0)
        if ctx.collect_diagnostics:
            ctx.report("hard_negatives_per_row", counts.mean())
            ctx.report("margin_mean", margin.mean())
        return hard, margin

    def rewrite_logits(self, ctx, logits: torch.Tensor) -> torch.Tensor:
        hard, margin = self.hard_negatives(ctx)
        cos = ctx.logits
        # logits arrive as s * c_ij (the margin stage is skipped for a loss that defines the target logit)
        rewritten = torch.where(hard, logits.mul(self.t).add_(self.a * ctx.scale), logits)
        rows = ctx.on_shard_rows
        cols = ctx.shard_labels[rows]
        cos_y = cos[rows, cols]
        sin_y = torch.sqrt(1.0 - cos_y.clamp(-1.0 + _SQRT_EPS, 1.0 - _SQRT_EPS) ** 2)
        m_i = margin[rows]
        target = torch.where(cos_y > 0, cos_y * torch.cos(m_i) - sin_y * torch.sin(m_i), cos_y)
        return rewritten.index_put_((rows, cols), target * ctx.scale)
