"""Exact k-th order statistics of a multiset spread across ranks, without gathering it.

Each rank holds some of the values (any count, 0 included). `distributed_kth_values(values, [k])` returns
sorted(all values of all ranks)[k] exactly, the value a sort of the gathered multiset picks, while
moving only small histograms between ranks.

How: every float maps to an unsigned key with the same order (sign bit set: flip every bit; clear: set
the sign bit; -0.0 is first made +0.0, since the two compare equal). Radix selection then fixes the key
of the k-th value digit by digit, most significant first: each round every rank counts its candidates per
digit value (a histogram of 2^radix_bits bins), one all-reduce sums the histograms, the bucket that holds
rank k is chosen the same way on every rank, and only that bucket's candidates stay. fp32 keys take
ceil(32 / radix_bits) rounds, fp64 ceil(64 / radix_bits); several k share each round's all-reduce.
The finished key converts back to the float exactly. Denormals, infinities and ties need no special case;
NaN is refused (it has no place in a sorted list). fp16 / bf16 values are selected through fp32 (an exact,
order-preserving widening) and returned in their dtype.

Without an initialised process group (one process) the same code runs with no collectives.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist

from .whisker_filter import WhiskerBounds

_KEY_DTYPES = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}


def _world_size(group: Optional[dist.ProcessGroup]) -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


def _all_reduce_sum(tensor: torch.Tensor, group: Optional[dist.ProcessGroup]) -> torch.Tensor:
    if _world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def order_preserving_keys(values: torch.Tensor) -> torch.Tensor:
    """float32 (n,) -> int32 (n,), float64 (n,) -> int64 (n,) holding unsigned keys as raw bits.

    Read as unsigned integers, keys sort exactly as the floats do; -0.0 and +0.0 get the same key.
    """
    key_dtype, bits = _KEY_DTYPES[values.dtype]
    sign_bit = -(1 << (bits - 1))  # the sign bit alone, as a signed integer of this width
    raw = values.reshape(-1).view(key_dtype)
    raw = torch.where(raw == sign_bit, torch.zeros_like(raw), raw)  # -0.0 -> +0.0
    # negative floats: flip every bit (larger magnitude -> smaller key); others: set the sign bit
    return raw ^ torch.where(raw < 0, torch.full_like(raw, -1), torch.full_like(raw, sign_bit))


def _key_to_value(key: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Unsigned key (Python int) -> 0-d float tensor, the inverse of order_preserving_keys."""
    key_dtype, bits = _KEY_DTYPES[dtype]
    sign = 1 << (bits - 1)
    raw = key ^ sign if key & sign else key ^ ((1 << bits) - 1)  # unsigned raw float bits
    signed = raw - (1 << bits) if raw & sign else raw
    return torch.tensor([signed], dtype=key_dtype, device=device).view(dtype)[0]


def _radix_select(
    values: torch.Tensor,
    indices_for_count: Callable[[int], Sequence[int]],
    group: Optional[dist.ProcessGroup],
    radix_bits: int,
) -> tuple[int, list[torch.Tensor]]:
    """(size n of the union, [sorted(union)[k] for k in indices_for_count(n)]); no values when n = 0."""
    if not values.is_floating_point():
        raise TypeError(f"order statistics need floating values, got {values.dtype}; cast them to float32")
    if not 1 <= radix_bits <= 16:
        raise ValueError(f"radix_bits={radix_bits} must be in [1, 16] (8 gives 256-bin histograms)")
    out_dtype = values.dtype
    values = values.detach().reshape(-1)
    if values.dtype not in _KEY_DTYPES:
        values = values.float()  # fp16 / bf16 -> fp32 is exact and keeps the order
    keys = order_preserving_keys(values)
    key_bits = _KEY_DTYPES[values.dtype][1]
    bins = 1 << radix_bits
    device = keys.device

    # round 1 (most significant digit) is shared by every k and also counts NaNs
    width = min(radix_bits, key_bits)
    shift = key_bits - width
    digits = (keys >> shift) & ((1 << width) - 1)
    counts = torch.zeros(bins + 1, dtype=torch.int64, device=device)
    counts[:bins] = torch.bincount(digits, minlength=bins)
    counts[bins] = torch.isnan(values).sum()
    # sum every rank's per-digit counts and NaN count: the same histogram of the whole union on every rank
    counts = _all_reduce_sum(counts, group).cpu()
    nan_count, total = int(counts[bins]), int(counts[:bins].sum())
    if nan_count:
        raise ValueError(f"order statistics got {nan_count} NaN values, which have no place in a sorted list; "
                         f"remove them (a mask or torch.nan_to_num) first")
    ks = [int(k) for k in indices_for_count(total)]
    for k in ks:
        if not 0 <= k < total:
            raise IndexError(f"order statistic index {k} is outside the {total} values held across ranks")
    if not ks:
        return total, []

    remaining = list(ks)  # rank of the wanted value among its candidates
    prefixes = [0] * len(ks)  # the chosen leading digits of each wanted key
    candidates = [keys] * len(ks)
    candidate_digits = [digits] * len(ks)
    histograms = counts[:bins].expand(len(ks), bins)
    while True:
        for i in range(len(ks)):
            cumulative = torch.cumsum(histograms[i], dim=0)
            digit = int(torch.searchsorted(cumulative, torch.tensor(remaining[i]), right=True))
            remaining[i] -= int(cumulative[digit - 1]) if digit > 0 else 0
            prefixes[i] = (prefixes[i] << width) | digit
            if shift > 0:  # keep only the chosen bucket's keys
                candidates[i] = candidates[i][candidate_digits[i] == digit]
        if shift == 0:
            break
        width = min(radix_bits, shift)
        shift -= width
        candidate_digits = [(cand >> shift) & ((1 << width) - 1) for cand in candidates]
        histograms = torch.stack([torch.bincount(d, minlength=bins) for d in candidate_digits])
        # sum every rank's per-digit counts of the remaining candidates, for every wanted k at once
        histograms = _all_reduce_sum(histograms, group).cpu()
    return total, [_key_to_value(prefix, values.dtype, device).to(out_dtype) for prefix in prefixes]


@torch.no_grad()
def distributed_kth_values(
    values: torch.Tensor,
    ks: Sequence[int],
    group: Optional[dist.ProcessGroup] = None,
    radix_bits: int = 8,
) -> list[torch.Tensor]:
    """Exact order statistics of the multiset formed by every rank's `values`.

    values: (n_r,) floating tensor on this rank (any shape is flattened; n_r may be 0 and may differ by rank).
    ks: 0-based positions in the sorted union, the same list on every rank.
    Returns one 0-d tensor per k, equal on every rank to sorted(union)[k], in values' dtype and device.
    Every rank must call this together: ceil(key bits / radix_bits) all-reduces of at most
    len(ks) x 2^radix_bits counts (4 rounds for fp32, 8 for fp64 at the default radix_bits = 8).
    """
    ks = list(ks)
    return _radix_select(values, lambda total: ks, group, radix_bits)[1]


def distributed_kth_value(values: torch.Tensor, k: int, group: Optional[dist.ProcessGroup] = None) -> torch.Tensor:
    """sorted(union of every rank's values)[k] as a 0-d tensor; see distributed_kth_values."""
    return distributed_kth_values(values, [k], group)[0]


@torch.no_grad()
def distributed_count(values: torch.Tensor, group: Optional[dist.ProcessGroup] = None) -> int:
    """Number of values held across all ranks."""
    count = torch.tensor([values.numel()], dtype=torch.int64, device=values.device)
    # sum of every rank's count
    return int(_all_reduce_sum(count, group).item())


@torch.no_grad()
def distributed_whisker_bounds(
    values: torch.Tensor, wisk: float, group: Optional[dist.ProcessGroup] = None, radix_bits: int = 8
) -> tuple[int, Optional[WhiskerBounds]]:
    """UNPG's box-and-whisker bounds over the union of every rank's values.

    values: (n_r,) on this rank. With n the size of the union, Q1 = sorted[floor(n / 4)],
    Q3 = sorted[floor(3 n / 4)], IQR = Q3 - Q1, bounds [Q1 - w IQR, Q3 + w IQR] (w = wisk), computed as
    whisker_filter.whisker_bounds does on the gathered values. Returns (n, bounds), bounds None when n = 0.
    """
    if wisk < 0:
        raise ValueError(f"wisk={wisk} must be >= 0 (the paper uses 1.5)")
    total, quartiles = _radix_select(values, lambda n: [n // 4, (3 * n) // 4] if n else [], group, radix_bits)
    if total == 0:
        return 0, None
    q1, q3 = quartiles
    iqr = q3 - q1
    return total, WhiskerBounds(q1=q1, q3=q3, lower=q1 - wisk * iqr, upper=q3 + wisk * iqr)
