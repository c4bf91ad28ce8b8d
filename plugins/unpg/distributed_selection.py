"""Exact k-th order statistics of a multiset spread across ranks, without gathering it.

Each rank holds some of the values (any count, 0 included). `distributed_kth_values(values, [k])` returns
sorted(all values of all ranks)[k] exactly, the value a sort of the gathered multiset picks, while
moving only small histograms between ranks.

How: every float maps to an unsigned key with the same order (sign bit set: flip every bit; clear: set
the sign bit; -0.0 is first made +0.0, since the two compare equal). Radix selection then fixes the key
of the k-th value one byte at a time, most significant first: each round every rank counts its
candidates per byte value (a 256-bin histogram), one all-reduce sums the histograms, the bucket that holds
rank k is chosen the same way on every rank, and only that bucket's candidates stay. fp32 keys take 4
rounds, fp64 8; several k share each round's all-reduce. The finished key converts back to the float
exactly. Denormals, infinities and ties need no special case; NaN is refused (it has no place in a sorted
list). fp16 / bf16 values are selected through fp32 (an exact, order-preserving widening) and returned in
their dtype.

Memory: the keys (4 or 8 bytes per value, or none with overwrite=True, which turns the caller's values
into keys in place), a byte per value for each round's bucket test, and the surviving candidates. A
`mask` selects the multiset inside a larger tensor without a compacted copy: the keys outside it are set
to the largest key, which cannot move any selected position, and only masked-in values are counted.
Without an initialised process group (one process) the same code runs with no collectives.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from .whisker_filter import WhiskerBounds

_KEY_DTYPES = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}
_CHUNK = 1 << 20  # values converted to keys per step, bounding the temporary


def _world_size(group: dist.ProcessGroup | None) -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


def _all_reduce_sum(tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    if _world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def _to_keys_in_place(values: torch.Tensor) -> torch.Tensor:
    """Contiguous float32 / float64 (n,) -> the same storage as int32 / int64 order-preserving keys."""
    key_dtype, bits = _KEY_DTYPES[values.dtype]
    sign_bit = -(1 << (bits - 1))  # the sign bit alone, as a signed integer of this width
    keys = values.view(key_dtype)
    for chunk in keys.split(_CHUNK):
        chunk.masked_fill_(chunk == sign_bit, 0)  # -0.0 -> +0.0
        # negative floats: flip every bit (larger magnitude -> smaller key); others: set the sign bit
        flip = chunk >> (bits - 1)  # -1 where negative, 0 elsewhere
        chunk ^= flip.bitwise_or_(sign_bit)
    return keys


def order_preserving_keys(values: torch.Tensor) -> torch.Tensor:
    """float32 (n,) -> int32 (n,), float64 (n,) -> int64 (n,) holding unsigned keys as raw bits.

    Read as unsigned integers, keys sort exactly as the floats do; -0.0 and +0.0 get the same key.
    """
    return _to_keys_in_place(values.reshape(-1).clone())


def _key_to_value(key: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Unsigned key (Python int) -> 0-d float tensor, the inverse of order_preserving_keys."""
    key_dtype, bits = _KEY_DTYPES[dtype]
    sign = 1 << (bits - 1)
    raw = key ^ sign if key & sign else key ^ ((1 << bits) - 1)  # unsigned raw float bits
    signed = raw - (1 << bits) if raw & sign else raw
    return torch.tensor([signed], dtype=key_dtype, device=device).view(dtype)[0]


def _byte(keys: torch.Tensor, round_index: int) -> torch.Tensor:
    """uint8 view of byte `round_index` of every key, most significant first (no copy)."""
    width = keys.element_size()
    column = width - 1 - round_index if sys.byteorder == "little" else round_index
    return keys.view(torch.uint8).view(-1, width)[:, column]


def _select_equal(keys: torch.Tensor, round_index: int, digit: int) -> torch.Tensor:
    """The keys whose byte `round_index` equals `digit`, gathered a chunk at a time (no index tensor of n)."""
    count = sum(int(torch.count_nonzero(_byte(chunk, round_index) == digit)) for chunk in keys.split(_CHUNK))
    out = torch.empty(count, dtype=keys.dtype, device=keys.device)
    position = 0
    for chunk in keys.split(_CHUNK):
        part = chunk[_byte(chunk, round_index) == digit]
        out[position : position + part.numel()] = part
        position += part.numel()
    return out


def _radix_select(
    values: torch.Tensor,
    indices_for_count: Callable[[int], Sequence[int]],
    group: dist.ProcessGroup | None,
    overwrite: bool,
    mask: torch.Tensor | None = None,
) -> tuple[int, list[torch.Tensor]]:
    """(size n of the union, [sorted(union)[k] for k in indices_for_count(n)]); no values when n = 0."""
    if not values.is_floating_point():
        raise TypeError(f"order statistics need floating values, got {values.dtype}; cast them to float32")
    if mask is not None and mask.shape != values.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} must match values of shape {tuple(values.shape)}")
    out_dtype = values.dtype
    values = values.detach().reshape(-1)
    if values.dtype not in _KEY_DTYPES:
        values, overwrite = values.float(), True  # fp16 / bf16 -> fp32 is exact and keeps the order
    if mask is None:
        nan_count, local_count = torch.count_nonzero(torch.isnan(values)), values.numel()
    else:
        mask = mask.reshape(-1)
        nan_count = torch.count_nonzero(torch.isnan(values).logical_and_(mask))
        local_count = torch.count_nonzero(mask)  # not mask.sum(), which first widens the mask to int64
    keys = _to_keys_in_place(values if overwrite and values.is_contiguous() else values.clone())
    if mask is not None:
        # values outside the mask get the largest key: above every selected position, so they change no answer
        keys.masked_fill_(~mask, -1)
    key_dtype = values.dtype
    device = keys.device

    # round 1 (most significant byte) is shared by every k and also counts NaNs and values
    counts = torch.zeros(258, dtype=torch.int64, device=device)
    counts[:256] = torch.bincount(_byte(keys, 0), minlength=256)
    counts[256], counts[257] = nan_count, local_count
    # sum every rank's per-byte, NaN and value counts: the same histogram of the whole union on every rank
    counts = _all_reduce_sum(counts, group).cpu()
    nan_count, total = int(counts[256]), int(counts[257])
    if nan_count:
        raise ValueError(
            f"order statistics got {nan_count} NaN values, which have no place in a sorted list; "
            f"remove them (a mask or torch.nan_to_num) first"
        )
    ks = [int(k) for k in indices_for_count(total)]
    for k in ks:
        if not 0 <= k < total:
            raise IndexError(f"order statistic index {k} is outside the {total} values held across ranks")
    if not ks:
        return total, []

    remaining = list(ks)  # position of the wanted value among its candidates
    prefixes = [0] * len(ks)  # the chosen leading bytes of each wanted key
    candidates = [keys] * len(ks)
    histograms = counts[:256].expand(len(ks), 256)  # bins may also count masked-out keys (all in bin 255)
    rounds = keys.element_size()
    for round_index in range(rounds):
        for i in range(len(ks)):
            cumulative = torch.cumsum(histograms[i], dim=0)
            digit = int(torch.searchsorted(cumulative, torch.tensor(remaining[i]), right=True))
            remaining[i] -= int(cumulative[digit - 1]) if digit > 0 else 0
            prefixes[i] = (prefixes[i] << 8) | digit
            if round_index + 1 < rounds:  # keep only the chosen bucket's keys
                candidates[i] = _select_equal(candidates[i], round_index, digit)
        if round_index + 1 == rounds:
            break
        histograms = torch.stack([torch.bincount(_byte(c, round_index + 1), minlength=256) for c in candidates])
        # sum every rank's per-byte counts of the remaining candidates, for every wanted k at once
        histograms = _all_reduce_sum(histograms, group).cpu()
    return total, [_key_to_value(prefix, key_dtype, device).to(out_dtype) for prefix in prefixes]


@torch.no_grad()
def distributed_kth_values(
    values: torch.Tensor,
    ks: Sequence[int],
    group: dist.ProcessGroup | None = None,
    overwrite: bool = False,
    mask: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """Exact order statistics of the multiset formed by every rank's `values`.

    values: (n_r,) floating tensor on this rank (any shape is flattened; n_r may be 0 and may differ by rank).
    ks: 0-based positions in the sorted union, the same list on every rank.
    overwrite: True lets the function turn `values` into keys in place (saves a copy; values are garbage after).
    mask: bool like values, or None; only values where it is True belong to the multiset (no compacted copy).
    Returns one 0-d tensor per k, equal on every rank to sorted(union)[k], in values' dtype and device.
    Every rank must call this together: 4 all-reduces for fp32 (8 for fp64) of len(ks) x 256 counts at most.
    """
    ks = list(ks)
    return _radix_select(values, lambda total: ks, group, overwrite, mask)[1]


def distributed_kth_value(values: torch.Tensor, k: int, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """sorted(union of every rank's values)[k] as a 0-d tensor; see distributed_kth_values."""
    return distributed_kth_values(values, [k], group)[0]


@torch.no_grad()
def distributed_count(local_count: int, device: torch.device, group: dist.ProcessGroup | None = None) -> int:
    """Sum over the ranks of each rank's `local_count`."""
    count = torch.tensor([int(local_count)], dtype=torch.int64, device=device)
    # sum of every rank's count
    return int(_all_reduce_sum(count, group).item())


@torch.no_grad()
def distributed_whisker_bounds(
    values: torch.Tensor,
    wisk: float,
    group: dist.ProcessGroup | None = None,
    overwrite: bool = False,
    mask: torch.Tensor | None = None,
) -> tuple[int, WhiskerBounds | None]:
    """UNPG's box-and-whisker bounds over the union of every rank's values.

    values: (n_r,) on this rank. With n the size of the union, Q1 = sorted[floor(n / 4)],
    Q3 = sorted[floor(3 n / 4)], IQR = Q3 - Q1, bounds [Q1 - w IQR, Q3 + w IQR] (w = wisk), computed as
    whisker_filter.whisker_bounds does on the gathered values. Returns (n, bounds), bounds None when n = 0.
    overwrite, mask: as in distributed_kth_values.
    """
    if wisk < 0:
        raise ValueError(f"wisk={wisk} must be >= 0 (the paper uses 1.5)")
    total, quartiles = _radix_select(values, lambda n: [n // 4, (3 * n) // 4] if n else [], group, overwrite, mask)
    if total == 0:
        return 0, None
    q1, q3 = quartiles
    iqr = q3 - q1
    return total, WhiskerBounds(q1=q1, q3=q3, lower=q1 - wisk * iqr, upper=q3 + wisk * iqr)
