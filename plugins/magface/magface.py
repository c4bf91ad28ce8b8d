"""MagFace (Meng et al., CVPR 2021) as a partial-FC loss: a margin that grows with the feature magnitude,
plus a regulariser that rewards large magnitudes for confident samples.

    a_i   = clamp(|x_i|, l_a, u_a)                                  un-normalised embedding norm
    m(a)  = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m             magnitude-aware angular margin
    target logit  s * cos(arccos(c_y) + m(a_i))   where c_y > 0, else s * c_y (easy margin, as released)
    other logits  s * c_ij
    L = softmax cross-entropy + lambda_g * 1/B sum_i g(a_i),   g(a) = 1/a + a / u_a^2

Gradients as in the released code: exact through the angle (cos(arccos c + m) = c cos m - sqrt(1 - c^2) sin m)
and through a_i (the clamp passes none outside [l_a, u_a]). Defaults: [l_a, u_a] = [10, 110],
[l_m, u_m] = [0.45, 0.8], lambda_g = 35 (the released MS1M run script). margin_list does not apply.
"""

from __future__ import annotations

import torch

from ..partial_fc.protocol import PartialFCLoss, Term

_SQRT_EPS = 1e-7  # keeps d sqrt(1 - c^2) / d c finite at c = +-1


class MagFace(PartialFCLoss):
    """Args: l_a, u_a (magnitude range), l_m, u_m (margin range, radians), lambda_g (regulariser weight).

    Hooks: target_logit (through rewrite_logits on the dense head) sets the target logit (B rows, on the rank
    that holds each class), so MagFace runs on the chunked head too; the regulariser
    is a replicated auxiliary loss (every rank computes it from the gathered batch).
    """

    name = "magface"
    defines_target_logit = True
    DEFAULTS = {"l_a": 10.0, "u_a": 110.0, "l_m": 0.45, "u_m": 0.8, "lambda_g": 35.0}

    def __init__(
        self, l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45, u_m: float = 0.8, lambda_g: float = 35.0
    ):
        super().__init__()
        if not 0 < l_a < u_a:
            raise ValueError(f"l_a={l_a}, u_a={u_a} must satisfy 0 < l_a < u_a (MagFace uses 10 and 110)")
        if not 0 <= l_m <= u_m:
            raise ValueError(f"l_m={l_m}, u_m={u_m} must satisfy 0 <= l_m <= u_m (MagFace uses 0.45 and 0.8)")
        if lambda_g < 0:
            raise ValueError(f"lambda_g={lambda_g} must be >= 0 (MagFace uses 35)")
        self.l_a, self.u_a, self.l_m, self.u_m, self.lambda_g = (
            float(l_a),
            float(u_a),
            float(l_m),
            float(u_m),
            float(lambda_g),
        )

    def extra_repr(self) -> str:
        return f"l_a={self.l_a}, u_a={self.u_a}, l_m={self.l_m}, u_m={self.u_m}, lambda_g={self.lambda_g}"

    def magnitude(self, ctx) -> torch.Tensor:
        """(B,) a_i = clamp(|x_i|, l_a, u_a), differentiable inside the range."""
        return ctx.norms.clamp(self.l_a, self.u_a)

    def margin(self, magnitude: torch.Tensor) -> torch.Tensor:
        """m(a), same shape as `magnitude`."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (magnitude - self.l_a) + self.l_m

    def target_logit(self, ctx, cos: torch.Tensor) -> torch.Tensor:
        """(n,) c_y of ctx.on_shard_rows -> s cos(arccos(c_y) + m(a_i)) where c_y > 0, else s c_y."""
        margin = self.margin(self.magnitude(ctx)[ctx.on_shard_rows])
        sin = torch.sqrt(1.0 - cos.clamp(-1.0 + _SQRT_EPS, 1.0 - _SQRT_EPS) ** 2)
        target = torch.where(cos > 0, cos * torch.cos(margin) - sin * torch.sin(margin), cos)
        return target * ctx.scale

    def rewrite_logits(self, ctx, logits: torch.Tensor) -> torch.Tensor:
        rows = ctx.on_shard_rows
        target = self.target_logit(ctx, ctx.shard_target_cos)  # c_y of the rows held here
        return logits.index_put_((rows, ctx.shard_labels[rows]), target)  # the head's fresh s * c: written in place

    def auxiliary_losses(self, ctx) -> list[Term]:
        magnitude = self.magnitude(ctx)
        if ctx.collect_diagnostics:
            ctx.report("magnitude_mean", magnitude.mean())
            ctx.report("margin_mean", self.margin(magnitude).mean())
        if self.lambda_g == 0:
            return []
        regulariser = (1.0 / magnitude + magnitude / self.u_a**2).mean()  # 1/B sum_i g(a_i)
        return [Term(self.lambda_g * regulariser, "replicated")]
