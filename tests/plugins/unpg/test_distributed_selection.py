"""Distributed radix selection vs torch.sort of the whole multiset, in one process and on 2 and 4 gloo ranks."""

import math

import pytest
import torch

from plugins.unpg.distributed_selection import (
    distributed_kth_value,
    distributed_kth_values,
    distributed_whisker_bounds,
    order_preserving_keys,
)
from plugins.unpg.whisker_filter import whisker_bounds
from tests.support.distributed_harness import run_on_ranks

TINY32 = torch.finfo(torch.float32).smallest_normal
TINY64 = torch.finfo(torch.float64).smallest_normal


def datasets(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random, tied and adversarial multisets (each at least 5 values)."""
    g = torch.Generator().manual_seed(0)
    tiny = TINY32 if dtype == torch.float32 else TINY64
    denormals = torch.tensor([tiny / 2, tiny / 8, -tiny / 4, tiny / 2**20, -tiny / 2, 0.0, tiny], dtype=dtype)
    return {
        "random": torch.randn(997, generator=g, dtype=dtype),
        "ties": torch.randint(-3, 4, (500,), generator=g).to(dtype) / 4,
        "all identical": torch.full((64,), 0.3, dtype=dtype),
        "two values": torch.tensor([0.25, -0.75] * 20 + [0.25], dtype=dtype),
        "signed zeros": torch.tensor([0.0, -0.0, 0.0, -0.0, -0.0, 1.0, -1.0], dtype=dtype),
        "denormals": denormals,
        "infinities": torch.tensor([math.inf, -math.inf, 0.0, 1e30, -1e30, 5.0, math.inf], dtype=dtype),
        "cosines": torch.rand(1000, generator=g, dtype=dtype) * 2 - 1,
    }


def split(values: torch.Tensor, world_size: int, rank: int) -> torch.Tensor:
    """Uneven shares: rank 0 gets nothing when there are several ranks, the rest unequal slices."""
    if world_size == 1:
        return values
    cuts = [0, 0] + [len(values) * (r + 1) * (r + 2) // (world_size * (world_size + 1)) for r in range(1, world_size)]
    cuts[-1] = len(values)
    return values[cuts[rank] : cuts[rank + 1]]


def masks(values: torch.Tensor) -> torch.Tensor:
    """A fixed mask keeping two of every three values."""
    keep = torch.arange(len(values)) % 3 != 1
    return keep


def all_ks(n: int) -> list[int]:
    return list(range(n)) if n <= 64 else sorted({0, 1, n // 4, n // 2, (3 * n) // 4, n - 2, n - 1, 123 % n})


def select_everything(rank: int, world_size: int) -> dict:
    results = {}
    for dtype in (torch.float32, torch.float64):
        for name, values in datasets(dtype).items():
            local = split(values, world_size, rank)
            results[(dtype, name)] = distributed_kth_values(local, all_ks(len(values)))
            results[(dtype, name, "whisker")] = distributed_whisker_bounds(local, 1.5)
            scratch = local.clone()
            results[(dtype, name, "overwrite")] = distributed_kth_values(scratch, all_ks(len(values)), overwrite=True)
            mask = split(masks(values), world_size, rank)
            results[(dtype, name, "mask")] = distributed_kth_values(local, all_ks(int(masks(values).sum())), mask=mask)
    return results


def check_against_sort(results: dict) -> None:
    for dtype in (torch.float32, torch.float64):
        for name, values in datasets(dtype).items():
            expected = torch.sort(values).values
            ks = all_ks(len(values))
            for key in ((dtype, name), (dtype, name, "overwrite")):
                got = results[key]
                assert len(got) == len(ks)
                for k, value in zip(ks, got, strict=False):
                    assert value.dtype == dtype and value.dim() == 0
                    assert value == expected[k], f"{key} k={k}: {value.item()!r} != {expected[k].item()!r}"
            masked = torch.sort(values[masks(values)]).values
            for k, value in zip(all_ks(len(masked)), results[(dtype, name, "mask")], strict=False):
                assert value == masked[k], f"{dtype} {name} masked k={k}: {value.item()!r} != {masked[k].item()!r}"
            count, bounds = results[(dtype, name, "whisker")]
            reference = whisker_bounds(values, 1.5)
            assert count == len(values), name
            for field in ("q1", "q3", "lower", "upper"):
                a, b = getattr(bounds, field), getattr(reference, field)
                assert a == b or (torch.isnan(a) and torch.isnan(b)), f"{dtype} {name} {field}: {a} != {b}"


def test_one_process_matches_sort():
    check_against_sort(select_everything(0, 1))


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_match_sort_of_the_union(world_size):
    per_rank = run_on_ranks(select_everything, world_size)
    for rank_results in per_rank:
        check_against_sort(rank_results)


def test_keys_sort_like_floats():
    for dtype in (torch.float32, torch.float64):
        tiny = TINY32 if dtype == torch.float32 else TINY64
        ordered = torch.tensor([-math.inf, -2.0, -tiny, -tiny / 4, 0.0, tiny / 4, tiny, 1.0, math.inf], dtype=dtype)
        bits = 32 if dtype == torch.float32 else 64
        unsigned = [int(k) % (1 << bits) for k in order_preserving_keys(ordered)]
        assert unsigned == sorted(unsigned) and len(set(unsigned)) == len(unsigned), dtype
        zeros = order_preserving_keys(torch.tensor([0.0, -0.0], dtype=dtype))
        assert zeros[0] == zeros[1], "-0.0 and +0.0 compare equal, so they share a key"


def test_half_precision_is_selected_exactly():
    values = torch.randn(300, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    expected = torch.sort(values).values
    got = distributed_kth_values(values, [0, 7, 150, 299])
    assert [g.dtype for g in got] == [torch.bfloat16] * 4
    assert torch.equal(torch.stack(got), expected[[0, 7, 150, 299]])


def test_bad_input_is_a_clear_error():
    with pytest.raises(IndexError, match="index 5 is outside the 5 values"):
        distributed_kth_value(torch.zeros(5), 5)
    with pytest.raises(ValueError, match="2 NaN values"):
        distributed_kth_value(torch.tensor([1.0, math.nan, 0.0, math.nan]), 0)
    with pytest.raises(TypeError, match="floating values, got torch.int64"):
        distributed_kth_value(torch.arange(4), 0)
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) must match values of shape \(4,\)"):
        distributed_kth_values(torch.zeros(4), [0], mask=torch.ones(3, dtype=torch.bool))
    assert distributed_whisker_bounds(torch.zeros(0), 1.5) == (0, None)
