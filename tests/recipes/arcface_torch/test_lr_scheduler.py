"""PolynomialLRWarmup against upstream arcface_torch's schedule, at every step of warmup, decay and beyond."""

import pytest
import torch

from recipes.arcface_torch.lr_scheduler import PolynomialLRWarmup


def upstream_chained_lrs(base: float, warmup: int, total: int, power: float, steps: int) -> list[float]:
    """Upstream's rule as it runs: step 0 and steps past `total` keep the current lr, warmup steps set
    base * l / w, decay steps multiply the current lr by the ratio of consecutive decay factors."""
    lrs, lr = [], base
    for step in range(steps):
        if step == 0 or step > total:
            pass
        elif step <= warmup:
            lr = base * step / warmup
        else:
            lr *= ((1.0 - (step - warmup) / (total - warmup)) / (1.0 - (step - 1 - warmup) / (total - warmup))) ** power
        lrs.append(lr)
    return lrs


def issue_formula(base: float, warmup: int, total: int, power: float, step: int) -> float:
    """The closed form: l = 0 -> base; 1 <= l <= w -> base l / w; l > w -> base (1 - (l - w) / (t - w)) ** p,
    with no warmup when w <= 0 and the value of l = t after t."""
    step = min(step, total)
    w = max(warmup, 0)
    if step == 0:
        return base
    if step <= w:
        return base * step / w
    return base * (1.0 - (step - w) / (total - w)) ** power


def scheduler_lrs(base: float, warmup: int, total: int, power: float, steps: int) -> list[float]:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=base, momentum=0.9)
    scheduler = PolynomialLRWarmup(optimizer, warmup, total, power=power)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])  # the lr this batch trains with
        assert optimizer.param_groups[1]["lr"] == optimizer.param_groups[0]["lr"]  # both groups follow it
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize(
    "warmup, total, power",
    [
        (5, 50, 1.0),  # upstream default power
        (0, 30, 1.0),  # warmup_epoch = 0
        (-12, 40, 1.0),  # warmup_epoch = -1 (upstream's 3millions config): no warmup
        (5, 50, 2.0),  # config.lr_power
        (7, 7, 1.0),  # warmup as long as training
    ],
)
def test_every_step_matches_upstream(warmup, total, power):
    steps = total + 6  # also past the end, where upstream keeps the last value
    ours = scheduler_lrs(0.1, warmup, total, power, steps)
    chained = upstream_chained_lrs(0.1, warmup, total, power, steps)
    closed = [issue_formula(0.1, warmup, total, power, step) for step in range(steps)]
    assert ours == pytest.approx(chained, rel=1e-9, abs=1e-15)
    assert ours == pytest.approx(closed, rel=1e-12, abs=1e-15)


def test_warmup_starts_at_base_then_rises_linearly():
    lrs = scheduler_lrs(0.4, 4, 20, 1.0, 6)
    assert lrs == pytest.approx([0.4, 0.1, 0.2, 0.3, 0.4, 0.4 * 15 / 16])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(warmup_iters=0, total_iters=0), r"total_iters=0: the schedule needs at least one step"),
        (dict(warmup_iters=0, total_iters=10, power=0.0), r"lr_power=0.0 must be > 0"),
    ],
)
def test_bad_schedule_is_refused(kwargs, message):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=message):
        PolynomialLRWarmup(optimizer, **kwargs)
