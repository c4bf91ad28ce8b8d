"""Run the partial-FC head with a list of losses on a float64 problem and collect loss and gradients."""

from __future__ import annotations

import torch

from plugins.partial_fc import PartialFC
from recipes.arcface_torch.margin_loss import CombinedMarginLoss

ARCFACE, COSFACE = (1.0, 0.5, 0.0), (1.0, 0.0, 0.4)


def float64_problem(seed: int, batch: int = 10, classes: int = 9, dim: int = 12, norm_range=(5.0, 130.0)):
    """Embeddings with norms spread over norm_range (MagFace's clamp both active and not), labels with
    repeats, centres."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.nn.functional.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    spread = torch.linspace(norm_range[0], norm_range[1], batch, dtype=torch.float64)
    norms = spread[torch.randperm(batch, generator=g)][:, None]
    labels = torch.randint(0, classes, (batch,), generator=g)
    labels[1] = labels[0]
    weight = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    return directions * norms, labels, weight


def make_head(losses, num_classes: int, dim: int, scale: float, margins=ARCFACE, sample_rate: float = 1.0):
    # the naive references differentiate the margin through arccos/cos, so the head uses the exact gradient
    margin = CombinedMarginLoss(scale, *margins, gradient="exact")
    return PartialFC(margin, dim, num_classes, sample_rate, losses=losses).double()


def head_step(head, embeddings, labels, weight_rows=None):
    """-> (loss, embedding grad, centre grad, {loss param name: grad}) after one forward/backward."""
    with torch.no_grad():
        if weight_rows is not None:
            head.weight.copy_(weight_rows)
    head.zero_grad(set_to_none=True)
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    params = {
        name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for name, p in head.losses.named_parameters()
    }
    return loss.detach(), x.grad.clone(), head.weight.grad.clone(), params


def naive_grads(loss_fn, embeddings, weight, extra_params=()):
    """loss_fn(x, w, *extra) -> 0-d; returns (loss, x grad, w grad, [extra grads])."""
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    extras = [p.clone().requires_grad_(True) for p in extra_params]
    loss = loss_fn(x, w, *extras)
    loss.backward()
    return loss.detach(), x.grad, w.grad, [e.grad if e.grad is not None else torch.zeros_like(e) for e in extras]


def assert_close(actual, expected, what: str, rtol: float = 1e-10) -> None:
    """Relative to the scale of the expected values (any CPU's rounding)."""
    scale = expected.abs().max().clamp_min(1e-30)
    error = (actual - expected).abs().max()
    assert error <= rtol * scale, f"{what}: max difference {float(error):.3e} vs scale {float(scale):.3e}"


def assert_same_step(fast, naive) -> None:
    """head_step's loss, embedding and centre gradients equal naive_grads' (to assert_close's 1e-10)."""
    for what, a, b in zip(("loss", "embedding grad", "centre grad"), fast[:3], naive[:3], strict=True):
        assert_close(a, b, what)
