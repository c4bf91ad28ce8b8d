"""Polynomial learning-rate decay with linear warmup, stepped once per optimizer step (as arcface_torch)."""
from __future__ import annotations

from torch.optim.lr_scheduler import LRScheduler


class PolynomialLRWarmup(LRScheduler):
    """lr = base * step / warmup during warmup, then base * (1 - (step - warmup) / (total - warmup)) ** power."""

    def __init__(self, optimizer, warmup_iters: int, total_iters: int, power: float = 2.0, last_epoch: int = -1):
        if total_iters < 1 or not 0 <= warmup_iters <= total_iters:
            raise ValueError(f"warmup_iters={warmup_iters}, total_iters={total_iters}: need 0 <= warmup <= total and total >= 1; "
                             f"lower warmup_epoch or train longer")
        self.warmup_iters, self.total_iters, self.power = warmup_iters, total_iters, power
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        step = self.last_epoch
        if step < self.warmup_iters:
            factor = (step + 1) / (self.warmup_iters + 1)
        else:
            progress = min(step - self.warmup_iters, self.total_iters - self.warmup_iters) / max(1, self.total_iters - self.warmup_iters)
            factor = (1.0 - progress) ** self.power
        return [base * factor for base in self.base_lrs]
