"""The partial-FC head's margin softmax cross-entropy in chunks of classes: the (B, K) logits are never held whole.

On this rank's K class centres W (K, D) and the gathered unit embeddings x^ (B, D), with w^_j = w_j / |w_j|:

    c_ij = clamp(<x^_i, w^_j>, -1, 1)        z_ij = s c_ij (j != y_i)        z_{i,y_i} = t_i
    L = 1/B sum_i [ log( sum_{ranks} sum_j e^{z_ij} + e^{p_i} + e^{r_i} ) - z_{i,y_i} ]

t_i is the target logit (the margin, s psi(c_{i,y_i}), or a loss's own rule), p_i / r_i the partial / replicated
denominator terms, as in dist_cross_entropy.py. Two autograd functions joined by a 0-d token, so that the target
logits go through ordinary autograd between them:

    ChunkedCosines   forward, chunk by chunk of N columns: s w^ (N, D), one (B, D) x (D, N) product z = x^ (s w^)^T,
                     the clamp, e = exp(z - m) and the row sums of e with the target columns taken out (their
                     cosines are the output, (n,), for the margin). m is 0 when every e^{+-s} and the sums fit the
                     dtype (fp32 up to s ~ 70, fp64 up to s ~ 350); beyond that a running row maximum (an online
                     log-sum-exp, shift m^(c) per chunk). The exps are kept in one buffer while the memory budget
                     allows; the chunks beyond it are recomputed in backward (one more B x D x N product each).
    ChunkedSoftmax   the target logits and denominator terms join the row maximum (one MAX all-reduce) and the
                     sum of exps (one SUM all-reduce; the target logit a third, as in the dense head) -> the loss.

Backward, with a_i = exp(m_i - M_i) / S_i * dL / B (the world's row maximum M and sum of exps S), so that the
softmax off the target is P_ij = a_i e_ij, chunk by chunk:

    U    += E_c (s w^)_c                                         (B, N) x (N, D);   d x^ = a o U at the end
    Q     = E_c^T (a o x^)                                       (N, B) x (B, D)
    dW_c  = (s / |w_j|) (Q_j - <w^_j, Q_j> w^_j)                 (the normalisation's gradient)

(an online chunk first scales E_c by exp(m^(c) - m) to the last shift m). The target cosines' gradient, from the
margin, is added row by row. A step costs the three B x D x K products of the matmul floor (plus one per
recomputed chunk), three element-wise passes over each (B, N) chunk (clamp, exp, row sum) and a few over
(N, D) rows; no (B, K) tensor exists beyond the kept-exps buffer, which the budget bounds. Loss and gradients
equal the dense head's (partial_fc.py, dist_cross_entropy.py) to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .collectives import rank_and_world_size

NORM_EPS = 1e-12  # F.normalize's eps: |w| below it counts as eps
AUTO_CHUNK_BYTES = 4 * 2**20  # "auto" chunk width: a (B, N) block of about this size ...
AUTO_CHUNK_MIN, AUTO_CHUNK_MAX = 1024, 8192  # ... with N in this range (a multiple of 128)


def chunk_width(head_chunk: int | str, batch: int, num_columns: int, element_size: int) -> int:
    """Columns per chunk: `head_chunk` itself, or for "auto" a (B, N) block of ~AUTO_CHUNK_BYTES with
    AUTO_CHUNK_MIN <= N <= AUTO_CHUNK_MAX; never more than the K columns (at least 1)."""
    if head_chunk == "auto":
        width = AUTO_CHUNK_BYTES // max(1, batch * element_size) // 128 * 128
        width = min(max(width, AUTO_CHUNK_MIN), AUTO_CHUNK_MAX)
    else:
        width = int(head_chunk)
    return max(1, min(width, num_columns))


def exps_fit_unshifted(scale: float, columns: int, dtype: torch.dtype) -> bool:
    """Whether e^z for every |z| <= s, and sums of `columns` of them, are normal numbers of `dtype` (a margin of
    e^2 either side): then the exps need no shift."""
    info = torch.finfo(dtype)
    return scale + math.log(max(columns, 1)) < math.log(info.max) - 2 and scale < -math.log(info.tiny) - 2


def _all_reduce(tensor: torch.Tensor, op) -> torch.Tensor:
    if rank_and_world_size()[1] > 1:
        dist.all_reduce(tensor, op=op)
    return tensor


@dataclass
class ChunkedStep:
    """What one step's two functions share, filled by ChunkedCosines.forward, then ChunkedSoftmax.forward.

    Set by the head: scale s, labels (B,) target column or -1, width N, kept_bytes (the exps budget), matmul_dtype
    (the products' dtype under autocast, else None), online (None: decided from exps_fit_unshifted), workspace.
    """

    scale: float
    labels: torch.Tensor
    width: int
    kept_bytes: int
    matmul_dtype: torch.dtype | None = None
    online: bool | None = None
    grad_enabled: bool = True  # autograd's mode at the call (inside forward it is always off)
    bounds: list[tuple[int, int]] = field(default_factory=list)  # per chunk (start, end) columns
    kept_chunks: int = 0
    workspace: torch.Tensor | None = None  # a free flat tensor the head offers for the buffer (reused if it fits)
    buffer: torch.Tensor | None = None  # the kept chunks' exps, chunk after chunk, each (B, N) contiguous
    inverse_norms: torch.Tensor | None = None  # (K,) 1 / |w_j|
    shifts: torch.Tensor | None = None  # (chunks, B) m^(c), online only
    target_rows: torch.Tensor | None = None  # (n,) rows whose target class is on this shard, ascending
    target_columns: torch.Tensor | None = None  # (n,)
    chunk_targets: list[torch.Tensor] = field(default_factory=list)  # per chunk: positions into target_rows
    target_logits_raw: torch.Tensor | None = None  # (n,) s c_{i,y_i} (clamped) as the chunk computed it
    local_max: torch.Tensor | None = None  # (B,) the shift m of this shard's exps (0 unless online)
    row_sum: torch.Tensor | None = None  # (B,) sum of this shard's non-target exps e^{z - m}
    world_max: torch.Tensor | None = None  # (B,) M, over every rank, the target logits and the extra terms
    denominator: torch.Tensor | None = None  # (B,) S, the world's sum of exps below M
    consumed: bool = False

    def block(self, chunk: int, batch: int, scratch: torch.Tensor) -> torch.Tensor:
        """(B, width of chunk) view: its place in the kept buffer, or the recompute scratch."""
        start, end = self.bounds[chunk]
        if chunk < self.kept_chunks:
            return self.buffer[batch * start : batch * end].view(batch, end - start)
        return scratch[: batch * (end - start)].view(batch, end - start)


class _Rows:
    """Reusable (N, D) scratch rows by name (the CPU allocator maps and faults every large temporary afresh)."""

    def __init__(self, width: int, dim: int, dtype: torch.dtype, device: torch.device):
        self.width, self.dim, self.dtype, self.device = width, dim, dtype, device
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, rows: int) -> torch.Tensor:
        if name not in self.tensors:
            self.tensors[name] = torch.empty((self.width, self.dim), dtype=self.dtype, device=self.device)
        return self.tensors[name][:rows]


def _centres(weight: torch.Tensor, index: torch.Tensor | None, start: int, end: int, rows: _Rows) -> torch.Tensor:
    """(end - start, D) of the step's K centres, in the compute dtype: a slice, or the sampled rows gathered."""
    if index is None:
        part = weight[start:end]
        return part if part.dtype == rows.dtype else rows("centres", end - start).copy_(part)
    out = rows("centres", end - start)
    if weight.dtype == rows.dtype:
        return torch.index_select(weight, 0, index[start:end], out=out)
    return out.copy_(weight.index_select(0, index[start:end]))


def _product(left: torch.Tensor, right: torch.Tensor, dtype: torch.dtype | None, out: torch.Tensor, add: bool = False):
    """out = left @ right (out += with add); the product in `dtype` (autocast's) when given, stored in out's."""
    if dtype is None or dtype == out.dtype:
        return out.addmm_(left, right) if add else torch.mm(left, right, out=out)
    product = torch.mm(left.to(dtype), right.to(dtype))
    return out.add_(product) if add else out.copy_(product)


def _exps(step: ChunkedStep, block: torch.Tensor, chunk: int) -> torch.Tensor:
    """block (B, N) of clamped z = s c -> e = exp(z - m^(c)) in place, the target entries 0."""
    if step.online:
        block.sub_(step.shifts[chunk][:, None])
    block.exp_()
    positions = step.chunk_targets[chunk]
    if positions.numel():
        start = step.bounds[chunk][0]
        block[step.target_rows[positions], step.target_columns[positions] - start] = 0.0
    return block


def _scaled_cosines(unit: torch.Tensor, scaled: torch.Tensor, step: ChunkedStep, out: torch.Tensor) -> torch.Tensor:
    """out (B, N) <- z = clamp(x^ (s w^)^T, -s, s), as the dense head clamps c to [-1, 1]. (The clamp's gradient,
    0 where rounding pushed |c| past 1, needs no mask: there x^ and w^ are parallel, where the normalisations'
    gradients, tangential, vanish.)"""
    _product(unit, scaled.t(), step.matmul_dtype, out)
    return out.clamp_(-step.scale, step.scale)


class ChunkedCosines(torch.autograd.Function):
    """(unit embeddings (B, D), weight (num_local, D), index (K,) or None, step) -> (target cosines (n,), token)."""

    @staticmethod
    def forward(ctx, unit: torch.Tensor, weight: torch.Tensor, index: torch.Tensor | None, step: ChunkedStep):
        batch, device, scale = unit.size(0), unit.device, step.scale
        columns = weight.size(0) if index is None else index.numel()
        dtype = torch.promote_types(unit.dtype, weight.dtype)
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # softmax in fp32, the products in half under autocast
        if step.online is None:
            step.online = not exps_fit_unshifted(scale, columns * rank_and_world_size()[1], dtype)
        step.bounds = [(start, min(start + step.width, columns)) for start in range(0, columns, step.width)]
        chunks = len(step.bounds)
        element = torch.empty((), dtype=dtype).element_size()
        needs_grad = step.grad_enabled and any(ctx.needs_input_grad[:2])
        step.kept_chunks = min(chunks, step.kept_bytes // (batch * step.width * element)) if needs_grad else 0
        kept_columns = step.bounds[step.kept_chunks - 1][1] if step.kept_chunks else 0
        reuse = step.workspace
        if (
            reuse is not None
            and reuse.numel() >= batch * kept_columns
            and (reuse.dtype, reuse.device) == (dtype, device)
        ):
            step.buffer = reuse[: batch * kept_columns]  # the last step's memory, its pages already mapped
        else:
            step.buffer = torch.empty(batch * kept_columns, dtype=dtype, device=device)
        scratch = torch.empty(batch * step.width if chunks > step.kept_chunks else 0, dtype=dtype, device=device)
        rows_scratch = _Rows(step.width, weight.size(1), dtype, device)
        step.inverse_norms = torch.empty(columns, dtype=dtype, device=device)
        step.shifts = torch.empty((chunks, batch), dtype=dtype, device=device) if step.online else None

        # the target of each row on this shard, grouped by the chunk that holds its column (one host sync)
        step.target_rows = (step.labels >= 0).nonzero(as_tuple=True)[0]
        step.target_columns = step.labels[step.target_rows]
        owner = torch.div(step.target_columns, step.width, rounding_mode="floor")
        counts = torch.bincount(owner, minlength=chunks).tolist() if chunks else []
        step.chunk_targets = list(torch.argsort(owner, stable=True).split(counts)) if chunks else []
        step.target_logits_raw = torch.zeros(step.target_rows.numel(), dtype=dtype, device=device)

        local_max = torch.full((batch,), float("-inf") if step.online else 0.0, dtype=dtype, device=device)
        row_sum = torch.zeros(batch, dtype=dtype, device=device)
        unit_c = unit.to(dtype)
        unit_mm = unit_c if step.matmul_dtype is None else unit_c.to(step.matmul_dtype)
        for chunk, (start, end) in enumerate(step.bounds):
            centres = _centres(weight, index, start, end, rows_scratch)
            inverse = step.inverse_norms[start:end]
            torch.linalg.vector_norm(centres, dim=1, out=inverse).clamp_min_(NORM_EPS).reciprocal_()
            scaled = torch.mul(centres, (inverse * scale)[:, None], out=rows_scratch("scaled", end - start))
            block = step.block(chunk, batch, scratch)
            _scaled_cosines(unit_mm, scaled, step, block)
            positions = step.chunk_targets[chunk]
            if positions.numel():
                rows, cols = step.target_rows[positions], step.target_columns[positions] - start
                step.target_logits_raw[positions] = block[rows, cols]
            if step.online:  # the running maximum; the sum so far rescaled to it
                shift = torch.maximum(local_max, block.amax(dim=1))
                row_sum.mul_((local_max - shift).exp_())
                step.shifts[chunk] = local_max = shift
            row_sum.add_(_exps(step, block, chunk).sum(dim=1))
        step.local_max, step.row_sum = local_max, row_sum

        cosines = step.target_logits_raw / scale  # clamped with the block
        ctx.save_for_backward(unit_c, weight, index)
        ctx.step = step
        return cosines, torch.zeros((), dtype=dtype, device=device)

    @staticmethod
    def backward(ctx, grad_cosines: torch.Tensor, grad_token: torch.Tensor):
        unit, weight, index = ctx.saved_tensors
        step: ChunkedStep = ctx.step
        if step.consumed:
            raise RuntimeError(
                "the chunked partial-FC head's backward ran twice for one forward (its kept exponentials are "
                "overwritten); run the forward again, or set head_chunk = 0 to retain the graph"
            )
        step.consumed = True
        batch, dtype, device, scale = unit.size(0), unit.dtype, unit.device, step.scale
        # every row is written by its chunk when all centres are used; sampling leaves the unused rows 0
        grad_weight = (torch.empty if index is None else torch.zeros)(weight.shape, dtype=dtype, device=device)
        scratch = torch.empty(
            batch * step.width if len(step.bounds) > step.kept_chunks else 0, dtype=dtype, device=device
        )
        rows_scratch = _Rows(step.width, weight.size(1), dtype, device)
        # a_i = e^{m_i - M_i} / S_i * dL / B: P = a o E off the target (grad_token carries dL)
        factor = (step.local_max - step.world_max).exp_().div_(step.denominator).mul_(grad_token.to(dtype) / batch)
        weighted = unit * factor[:, None]  # a o x^, for Q = E^T (a o x^)
        mm = step.matmul_dtype
        unit_mm = unit if mm is None else unit.to(mm)
        weighted_mm = weighted if mm is None else weighted.to(mm)
        summed = torch.zeros_like(unit)  # U = sum_c E_c (s w^)_c
        for chunk, (start, end) in enumerate(step.bounds):
            centres = _centres(weight, index, start, end, rows_scratch)
            inverse = step.inverse_norms[start:end]
            scaled = torch.mul(centres, (inverse * scale)[:, None], out=rows_scratch("scaled", end - start))
            block = step.block(chunk, batch, scratch)
            if chunk >= step.kept_chunks:  # beyond the budget: the same exps again
                _exps(step, _scaled_cosines(unit_mm, scaled, step, block), chunk)
            if step.online:  # to the last shift m
                block.mul_((step.shifts[chunk] - step.local_max).exp_()[:, None])
            _product(block, scaled, mm, summed, add=True)
            rows = grad_weight[start:end] if index is None else rows_scratch("grad", end - start)
            _product(block.t(), weighted_mm, mm, rows)  # Q
            # (s / |w_j|) (Q_j - <w^_j, Q_j> w^_j), with s w^ at hand: <s w^, Q> s w^ / s^2
            radial = torch.mul(rows, scaled, out=rows_scratch("radial", end - start)).sum(dim=1).div_(scale * scale)
            rows.addcmul_(scaled, radial[:, None], value=-1.0).mul_((inverse * scale)[:, None])
            if index is not None:
                grad_weight.index_copy_(0, index[start:end], rows)
        step.buffer = None
        grad_unit = summed.mul_(factor[:, None])

        # the target cosines c_t = <x^_i, w^_y>: their gradient from the margin, row by row
        inverse = step.inverse_norms[step.target_columns]
        cos = step.target_logits_raw / scale
        grad = grad_cosines.to(dtype)
        weight_rows = step.target_columns if index is None else index[step.target_columns]
        centres = weight.index_select(0, weight_rows).to(dtype)
        along = (grad * inverse)[:, None]
        grad_unit.index_add_(0, step.target_rows, along * centres)
        unit_rows = unit.index_select(0, step.target_rows)
        grad_weight.index_add_(0, weight_rows, along * unit_rows - (grad * cos * inverse * inverse)[:, None] * centres)
        return grad_unit, grad_weight.to(weight.dtype), None, None


class ChunkedSoftmax(torch.autograd.Function):
    """(target logits (n,), replicated (B,) or None, partial (B,) or None, token, step) -> 0-d loss."""

    @staticmethod
    def forward(ctx, target_logits, replicated, partial, token, step: ChunkedStep):
        rows, batch = step.target_rows, step.labels.numel()
        dtype = step.row_sum.dtype
        target_logits = target_logits.detach().to(dtype)
        row_max = step.local_max.clone()
        row_max[rows] = torch.maximum(row_max[rows], target_logits)
        for extra in (replicated, partial):
            if extra is not None:
                row_max = torch.maximum(row_max, extra.detach().to(dtype))
        # the largest logit of each row over every rank's class shard and the extra terms, for a stable exp
        _all_reduce(row_max, dist.ReduceOp.MAX)
        denominator = step.row_sum * (step.local_max - row_max).exp()
        target_exp = (target_logits - row_max[rows]).exp()
        denominator.index_add_(0, rows, target_exp)
        partial_exp = None
        if partial is not None:
            partial_exp = (partial.detach().to(dtype) - row_max).exp()
            denominator = denominator + partial_exp  # this rank's part, summed over ranks next
        # softmax denominator of each row: sum of exps over every rank's class shard and partial terms
        _all_reduce(denominator, dist.ReduceOp.SUM)
        replicated_exp = None
        if replicated is not None:
            replicated_exp = (replicated.detach().to(dtype) - row_max).exp()
            denominator = denominator + replicated_exp  # identical on every rank: added once, after the sum
        target = torch.zeros(batch, dtype=dtype, device=row_max.device)
        target[rows] = target_logits - row_max[rows]
        # each row's target class lives on exactly one rank; the others contribute 0
        _all_reduce(target, dist.ReduceOp.SUM)
        step.world_max, step.denominator = row_max, denominator
        ctx.step = step
        ctx.has_replicated, ctx.has_partial = replicated is not None, partial is not None
        ctx.save_for_backward(
            target_exp / denominator[rows],
            None if replicated_exp is None else replicated_exp / denominator,
            None if partial_exp is None else partial_exp / denominator,
        )
        return (denominator.log() - target).mean()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        target_prob, replicated_prob, partial_prob = ctx.saved_tensors
        batch = ctx.step.labels.numel()
        grad_target = (target_prob - 1.0) * (grad_loss / batch)
        grad_replicated = grad_partial = None
        if ctx.has_replicated:
            # every rank computes this same gradient and the gather's backward sums over ranks: count once
            grad_replicated = replicated_prob * (grad_loss / (batch * rank_and_world_size()[1]))
        if ctx.has_partial:
            grad_partial = partial_prob * (grad_loss / batch)
        return grad_target, grad_replicated, grad_partial, grad_loss.reshape(()), None


def chunked_target_cosines(
    unit: torch.Tensor, weight: torch.Tensor, index: torch.Tensor | None, step: ChunkedStep
) -> tuple[torch.Tensor, torch.Tensor]:
    """First half. unit (B, D) unit embeddings, weight (num_local, D) this shard's centres, index (K,) the
    sampled rows or None for all -> (target cosines (n,) of step.target_rows, differentiable; 0-d token)."""
    return ChunkedCosines.apply(unit, weight, index, step)


def chunked_cross_entropy(
    target_logits: torch.Tensor,
    replicated: torch.Tensor | None,
    partial: torch.Tensor | None,
    token: torch.Tensor,
    step: ChunkedStep,
) -> torch.Tensor:
    """Second half: target logits (n,), the denominator terms (B,) or None -> the 0-d loss (same on every rank)."""
    return ChunkedSoftmax.apply(target_logits, replicated, partial, token, step)
