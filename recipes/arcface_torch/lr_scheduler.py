"""Upstream arcface_torch's PolynomialLRWarmup, stepped once per batch (as upstream's train_v2 steps it,
also when gradient_acc > 1).

At scheduler step l (0-based: the lr the l-th batch trains with), warmup w and total t, both in batches:
    l = 0            -> base                                  (upstream starts at the base lr)
    1 <= l <= w      -> base * l / w                          (linear warmup; none when w <= 0)
    w < l <= t       -> base * (1 - (l - w') / (t - w')) ** power,   w' = max(w, 0)
    l > t            -> the value at l = t                    (0 after a full decay)
Upstream computes the decay as a chain of per-step ratios; the product telescopes to the closed form above.
"""

from __future__ import annotations

from torch.optim.lr_scheduler import LRScheduler


def polynomial_warmup_factor(step: int, warmup_iters: int, total_iters: int, power: float = 1.0) -> float:
    """Multiplier of the base lr at scheduler step `step` (the formula in the module docstring)."""
    step = min(step, total_iters)
    if step == 0:
        return 1.0
    if step <= warmup_iters:
        return step / warmup_iters
    start = max(warmup_iters, 0)
    return (1.0 - (step - start) / (total_iters - start)) ** power


class PolynomialLRWarmup(LRScheduler):
    """Args: warmup_iters (w, batches; <= 0: no warmup), total_iters (t, batches), power (1.0 = linear, upstream)."""

    def __init__(self, optimizer, warmup_iters: int, total_iters: int, power: float = 1.0, last_epoch: int = -1):
        if total_iters < 1:
            raise ValueError(
                f"total_iters={total_iters}: the schedule needs at least one step; "
                f"raise num_epoch or use more data than one global batch"
            )
        if power <= 0:
            raise ValueError(f"lr_power={power} must be > 0; upstream uses 1.0 (linear decay)")
        self.warmup_iters, self.total_iters, self.power = int(warmup_iters), int(total_iters), float(power)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        factor = polynomial_warmup_factor(self.last_epoch, self.warmup_iters, self.total_iters, self.power)
        return [base * factor for base in self.base_lrs]
