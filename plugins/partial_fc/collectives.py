"""Cross-rank pieces of the partial-FC head, each with the gradient rule that keeps training exact.

Gradient convention (upstream arcface_torch's PartialFC_V2): every rank returns the same loss L and
back-propagates its own graph; the sum over ranks of those per-rank gradients must be the one-process
gradient of L. The gathered embeddings' gradient is summed over ranks and multiplied by the world size;
DDP then averages backbone gradients over ranks, so the backbone receives exactly the one-process gradient.
A value every rank computes identically would otherwise be counted world_size times: `count_once` scales
its gradient by 1 / world_size. With no process group (plain `python train.py`) every function here is the
one-process computation.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _world_size() -> int:
    return rank_and_world_size()[1]


def check_equal_batches(local_rows: int, device: torch.device) -> None:
    """Raise the same clear error on every rank unless every rank holds `local_rows` rows (the equal-shape
    all-gather, upstream's too, requires equal per-rank batches)."""
    if _world_size() == 1:
        return
    sizes = torch.tensor([local_rows, -local_rows], dtype=torch.int64, device=device)
    # largest and (negated) smallest local batch over the ranks, so every rank raises together
    dist.all_reduce(sizes, op=dist.ReduceOp.MAX)
    largest, smallest = int(sizes[0]), -int(sizes[1])
    if largest != smallest:
        raise ValueError(
            f"partial FC needs equal per-rank batches (its all-gather requires them), got local batches "
            f"from {smallest} to {largest} rows; set the same batch_size on every rank and drop the last "
            f"incomplete batch (drop_last=True)"
        )


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world_size = rank_and_world_size()
        ctx.rank, ctx.world_size, ctx.local_size = rank, world_size, tensor.size(0)
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        # every rank receives every rank's rows (equal row counts per rank are required)
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        local = torch.empty((ctx.local_size, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
        # each rank's loss depends on every rank's rows: sum the gradients of all ranks, each rank receiving
        # only its own rows' sum (a reduce-scatter, not an all-reduce of the whole (B, D) block then a slice)
        dist.reduce_scatter(local, list(grad.contiguous().split(ctx.local_size, dim=0)), op=dist.ReduceOp.SUM)
        return local.mul_(ctx.world_size)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each rank -> (world_size * b, ...) in rank order; gradients flow back (see module doc)."""
    if _world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """(b, ...) on each rank -> (world_size * b, ...) in rank order, e.g. labels."""
    world_size = _world_size()
    if world_size == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    # every rank receives every rank's rows
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}


@torch.no_grad()
def all_reduce_no_grad(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A detached copy of `tensor` reduced over ranks with op "sum", "max" or "min" (the input is untouched)."""
    if op not in _OPS:
        raise ValueError(f"all-reduce op {op!r} is not supported; use one of {', '.join(_OPS)}")
    result = tensor.detach().clone()
    if _world_size() > 1:
        # every rank receives the element-wise reduction over all ranks
        dist.all_reduce(result, op=getattr(dist.ReduceOp, _OPS[op]))
    return result


class _SumToReplicated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, part: torch.Tensor) -> torch.Tensor:
        total = part.clone()
        # every rank receives the sum of every rank's part
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        # every rank used the replicated total in its own graph: each part receives the sum of those gradients
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def sum_to_replicated(part: torch.Tensor) -> torch.Tensor:
    """Each rank's part -> their sum, identical on every rank, differentiable.

    Backward: every part receives the sum over ranks of the gradient each rank's graph gives the total. Use it
    for a value one rank holds and all ranks need (the target cosine, zero on the other ranks).
    """
    if _world_size() == 1:
        return part
    return _SumToReplicated.apply(part)


class _CountOnce(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        ctx.world_size = _world_size()
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad / ctx.world_size


def count_once(value: torch.Tensor) -> torch.Tensor:
    """Identity for a value every rank computes identically; its gradient is divided by the world size, so
    that summed over ranks (the gather's backward, `sum_gradients`) it counts once."""
    if _world_size() == 1:
        return value
    return _CountOnce.apply(value)


def sum_partial(part: torch.Tensor) -> torch.Tensor:
    """Each rank's part of a loss term -> the whole term on every rank; each part gets the term's gradient once."""
    if _world_size() == 1:
        return part
    return count_once(sum_to_replicated(part))


class _SumGradients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value: torch.Tensor) -> torch.Tensor:
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        # a replicated parameter's gradient is the sum of every rank's part
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def sum_gradients(parameter: torch.Tensor) -> torch.Tensor:
    """Identity on a parameter every rank holds a copy of (outside DDP); in backward, every copy receives the
    sum over ranks of the per-rank gradients: the full one-process gradient, on every rank, after backward."""
    if _world_size() == 1:
        return parameter
    return _SumGradients.apply(parameter)
