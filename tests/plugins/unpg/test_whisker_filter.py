"""Floor-index quartiles and the whisker interval against a plain sort."""

import math

import numpy as np
import pytest
import torch

from plugins.unpg import whisker_bounds


def sorted_reference(values: np.ndarray, wisk: float):
    ordered = np.sort(values)
    q1 = ordered[math.floor(0.25 * len(ordered))]
    q3 = ordered[math.floor(0.75 * len(ordered))]
    return q1, q3, q1 - wisk * (q3 - q1), q3 + wisk * (q3 - q1)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 101, 1000])
@pytest.mark.parametrize("wisk", [0.0, 1.5])
def test_small_sets_match_sorted_list(n, wisk):
    values = torch.from_numpy(np.random.default_rng(n).standard_normal(n))
    bounds = whisker_bounds(values, wisk)
    q1, q3, low, high = sorted_reference(values.numpy(), wisk)
    assert bounds.q1.item() == q1 and bounds.q3.item() == q3
    assert bounds.lower.item() == pytest.approx(low, abs=0) and bounds.upper.item() == pytest.approx(high, abs=0)


def test_ties_use_the_sorted_position():
    values = torch.tensor([0.5, 0.1, 0.1, 0.1, 0.9, 0.9, 0.3, 0.9])
    bounds = whisker_bounds(values, 1.5)
    assert bounds.q1.item() == pytest.approx(0.1) and bounds.q3.item() == pytest.approx(0.9)


@pytest.mark.slow
def test_more_values_than_torch_quantile_accepts():
    n = 2**24 + 3  # torch.quantile refuses inputs this large
    values = torch.from_numpy(np.random.default_rng(0).random(n, dtype=np.float32))
    with pytest.raises(RuntimeError):
        torch.quantile(values, 0.25)
    bounds = whisker_bounds(values, 1.5)
    q1, q3, _, _ = sorted_reference(values.numpy(), 1.5)
    assert bounds.q1.item() == q1 and bounds.q3.item() == q3


def test_empty_set_is_an_error():
    with pytest.raises(ValueError, match="at least one value"):
        whisker_bounds(torch.empty(0), 1.5)


def test_thresholds_carry_no_gradient():
    values = torch.randn(50, requires_grad=True)
    bounds = whisker_bounds(values, 1.5)
    assert not bounds.q1.requires_grad and not bounds.upper.requires_grad
