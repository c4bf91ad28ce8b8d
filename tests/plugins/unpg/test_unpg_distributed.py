"""2 gloo ranks vs 1 process on the same global batch: equal loss, backbone and class-centre gradients."""

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support.distributed_harness import run_on_ranks

NUM_CLASSES, BATCH, IN_DIM, DIM = 11, 8, 20, 16  # 11 classes: an uneven 6 / 5 split over 2 ranks
CASES = [
    (name, margins, unpg)
    for name, margins in (("arcface", (1.0, 0.5, 0.0)), ("cosface", (1.0, 0.0, 0.4)))
    for unpg in (False, True)
]


def problem():
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 3, 10, 5, 5, 6, 2])
    weight = torch.randn(NUM_CLASSES, DIM, generator=g, dtype=torch.float64)
    backbone = nn.Linear(IN_DIM, DIM).double()
    with torch.no_grad():
        backbone.weight.copy_(torch.randn(DIM, IN_DIM, generator=g, dtype=torch.float64))
        backbone.bias.copy_(torch.randn(DIM, generator=g, dtype=torch.float64))
    return inputs, labels, weight, backbone


def step(backbone, margins, unpg, weight_rows, inputs, labels):
    head = PartialFC(
        CombinedMarginLoss(16.0, *margins), DIM, NUM_CLASSES, negative_pairs=UNPG(wisk=0.5) if unpg else None
    ).double()
    with torch.no_grad():
        head.weight.copy_(weight_rows(head))
    loss = head(backbone(inputs), labels)
    loss.backward()
    grads = [p.grad.clone() for p in backbone.parameters()]
    return loss.detach(), grads, head.weight.grad.clone(), head.class_start


def distributed_worker(rank, world_size):
    inputs, labels, weight, backbone = problem()
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    results = []
    for _, margins, unpg in CASES:
        model = DistributedDataParallel(problem()[3])
        results.append(
            step(
                model,
                margins,
                unpg,
                lambda head: weight[head.class_start : head.class_start + head.num_local],
                inputs[rows],
                labels[rows],
            )
        )
    return results


@pytest.mark.slow
def test_two_ranks_equal_one_process():
    per_rank = run_on_ranks(distributed_worker, 2)
    inputs, labels, weight, _ = problem()
    for index, (name, margins, unpg) in enumerate(CASES):
        loss, backbone_grads, centre_grad, _ = step(problem()[3], margins, unpg, lambda head: weight, inputs, labels)
        for rank_result in (r[index] for r in per_rank):
            d_loss, d_backbone, d_centre, start = rank_result
            case = f"{name} unpg={unpg}"
            assert torch.allclose(d_loss, loss, rtol=1e-12, atol=1e-12), case
            for a, b in zip(d_backbone, backbone_grads, strict=False):
                assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"{case}: backbone grad"
            shard = centre_grad[start : start + d_centre.shape[0]]
            assert torch.allclose(d_centre, shard, rtol=1e-10, atol=1e-12), f"{case}: centre grad"
        assert per_rank[0][index][3] == 0 and per_rank[1][index][3] == 6


# ---- every registered loss, built from a config the way train.py builds it -------------------------


def registered_losses():
    from recipes.arcface_torch.losses import LOSSES, load_plugins

    load_plugins(["plugins.unpg"])
    return LOSSES.names()


def registry_problem():
    g = torch.Generator().manual_seed(1)
    embeddings = torch.randn(BATCH, DIM, generator=g, dtype=torch.float64)
    weight = torch.randn(NUM_CLASSES, DIM, generator=g, dtype=torch.float64)
    return embeddings, torch.tensor([0, 0, 3, 10, 5, 5, 6, 2]), weight


def head_step(loss_name, weight_rows, embeddings, labels):
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.losses import build_head

    cfg = get_config("recipes/arcface_torch/configs/synthetic_unpg", loss=loss_name, embedding_size=DIM, scale=16.0)
    head = build_head(cfg, NUM_CLASSES).double()
    with torch.no_grad():
        head.weight.copy_(weight_rows(head))
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad, head.class_start


def registry_worker(rank, world_size, names):
    embeddings, labels, weight = registry_problem()
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    return [
        head_step(name, lambda h: weight[h.class_start : h.class_start + h.num_local], embeddings[rows], labels[rows])
        for name in names
    ]


@pytest.mark.slow
def test_every_registered_loss_is_finite_and_rank_invariant():
    names = registered_losses()
    assert {"margin_softmax", "unpg"} <= set(names)
    per_rank = run_on_ranks(registry_worker, 2, names)
    embeddings, labels, weight = registry_problem()
    for index, name in enumerate(names):
        loss, x_grad, w_grad, _ = head_step(name, lambda h: weight, embeddings, labels)
        assert torch.isfinite(loss) and torch.isfinite(x_grad).all() and torch.isfinite(w_grad).all(), name
        for rank, result in enumerate(r[index] for r in per_rank):
            d_loss, d_x_grad, d_w_grad, start = result
            assert torch.allclose(d_loss, loss, rtol=1e-12), name
            # each rank's local rows get world_size x the global-loss gradient (DDP then averages)
            local = x_grad[rank * BATCH // 2 : (rank + 1) * BATCH // 2] * 2
            assert torch.allclose(d_x_grad, local, rtol=1e-10, atol=1e-12), f"{name}: embedding grad"
            assert torch.allclose(d_w_grad, w_grad[start : start + d_w_grad.shape[0]], rtol=1e-10, atol=1e-12), name
