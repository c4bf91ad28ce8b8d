"""UNPG head against the naive float64 reference: loss and gradients to ~1e-10."""

import pytest
import torch

from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support.naive_reference import naive_unpg_loss

MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4), "combined": (1.0, 0.3, 0.2)}


def make_batch(seed, batch=12, classes=7, dim=16):
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=g)
    labels[1] = labels[0]  # guarantee repeated labels
    weight = torch.randn(classes, dim, generator=g, dtype=torch.float64)
    return embeddings, labels, weight


def fast_loss_and_grads(embeddings, labels, weight, margins, scale, hook, epoch=0):
    # the official UNPG code differentiates the margin exactly: compare with that form
    margin = CombinedMarginLoss(scale, *margins, gradient="exact")
    head = PartialFC(margin, weight.shape[1], weight.shape[0], negative_pairs=hook).double()
    head.set_epoch(epoch)
    with torch.no_grad():
        head.weight.copy_(weight)
    x = embeddings.clone().requires_grad_(True)
    loss = head(x, labels)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad


def naive_loss_and_grads(embeddings, labels, weight, margins, scale, wisk, use_unpg, pair_weight=1.0):
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = naive_unpg_loss(x, labels, w, scale, margins, wisk, use_unpg, pair_weight)
    loss.backward()
    return loss.detach(), x.grad, w.grad


@pytest.mark.parametrize("margin", sorted(MARGINS))
@pytest.mark.parametrize("wisk", [None, 0.3, 1.5])  # None: filter off; 0.3 drops many pairs
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unpg_matches_naive_float64(margin, wisk, seed):
    embeddings, labels, weight = make_batch(seed)
    scale = 16.0  # moderate scale keeps the many negatives visible in the gradient
    hook = UNPG(filter=False) if wisk is None else UNPG(wisk=wisk)
    fast = fast_loss_and_grads(embeddings, labels, weight, MARGINS[margin], scale, hook)
    naive = naive_loss_and_grads(embeddings, labels, weight, MARGINS[margin], scale, wisk, True)
    for name, a, b in zip(("loss", "embedding grad", "centre grad"), fast, naive, strict=False):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"{name}: max diff {(a - b).abs().max():.3e}"


def test_small_wisk_drops_pairs_in_the_reference_batches():
    embeddings, labels, _ = make_batch(0)
    term = UNPG(wisk=0.3)(embeddings, labels, 16.0)
    assert int(term.stats["pairs_kept"]) < int(term.stats["pairs_total"])


def test_filter_changes_the_loss_and_unpg_differs_from_plain():
    """Guards against a reference that agrees because neither side does anything."""
    embeddings, labels, weight = make_batch(5, batch=24)
    plain = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, None)[0]
    unfiltered = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, UNPG(filter=False))[0]
    filtered = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, UNPG(wisk=0.0))[0]
    assert unfiltered > plain
    assert filtered < unfiltered


@pytest.mark.parametrize("margin", sorted(MARGINS))
def test_plain_margin_softmax_matches_naive(margin):
    embeddings, labels, weight = make_batch(3)
    fast = fast_loss_and_grads(embeddings, labels, weight, MARGINS[margin], 64.0, None)
    naive = naive_loss_and_grads(embeddings, labels, weight, MARGINS[margin], 64.0, None, False)
    for a, b in zip(fast, naive, strict=False):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_no_negative_pairs_reduces_to_margin_softmax():
    embeddings, _, weight = make_batch(4)
    labels = torch.full((embeddings.shape[0],), 3)
    with_unpg = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 64.0, UNPG())
    plain = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 64.0, None)
    for a, b in zip(with_unpg, plain, strict=False):
        assert torch.equal(a, b)


def test_batch_of_one_and_identical_embeddings_are_finite():
    _, _, weight = make_batch(6)
    single = fast_loss_and_grads(
        torch.randn(1, 16, dtype=torch.float64), torch.tensor([2]), weight, MARGINS["arcface"], 64.0, UNPG()
    )
    same = torch.randn(1, 16, dtype=torch.float64).repeat(8, 1)  # every similarity equal: IQR = 0
    constant = fast_loss_and_grads(same, torch.arange(8) % 7, weight, MARGINS["arcface"], 64.0, UNPG())
    for result in (single, constant):
        assert all(torch.isfinite(t).all() for t in result)


def test_identical_similarities_keep_every_pair():
    same = torch.randn(1, 16).repeat(6, 1)
    term = UNPG()(same, torch.arange(6), 64.0)
    assert int(term.stats["pairs_total"]) == 15 and int(term.stats["pairs_kept"]) == 15
    assert torch.isclose(term.log_sum_exp, torch.tensor(64.0) + torch.log(torch.tensor(15.0)), atol=1e-3)


def test_stats_report_pair_counts_and_similarities():
    embeddings, labels, _ = make_batch(7, batch=20)
    hook = UNPG()
    hook.collect_stats = True
    term = hook(embeddings.float(), labels, 64.0)
    expected_negatives = sum(int(labels[a] != labels[b]) for a in range(20) for b in range(a + 1, 20))
    assert int(term.stats["pairs_total"]) == expected_negatives
    assert 0 < int(term.stats["pairs_kept"]) <= expected_negatives
    assert term.stats["q1"] <= term.stats["q3"]
    assert -1 <= term.stats["neg_min"] <= term.stats["neg_mean"] <= term.stats["neg_max"] <= 1
    assert "pos_mean" in term.stats


def test_negative_wisk_is_rejected():
    with pytest.raises(ValueError, match="wisk=-1"):
        UNPG(wisk=-1)


def assert_same(fast, naive):
    for name, a, b in zip(("loss", "embedding grad", "centre grad"), fast, naive, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), f"{name}: max diff {(a - b).abs().max():.3e}"


@pytest.mark.parametrize("pair_weight", [0.05, 0.5, 3.0])
@pytest.mark.parametrize("sharded", [False, True])
def test_pair_weight_matches_naive_float64(pair_weight, sharded):
    embeddings, labels, weight = make_batch(3)
    hook = UNPG(wisk=1.5, pair_weight=pair_weight, sharded=sharded)
    fast = fast_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, hook)
    assert_same(
        fast, naive_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, 1.5, True, pair_weight)
    )
    plain = naive_loss_and_grads(embeddings, labels, weight, MARGINS["arcface"], 16.0, 1.5, True)
    assert not torch.allclose(fast[0], plain[0], rtol=1e-6)  # the weight changes the loss


@pytest.mark.parametrize("sharded", [False, True])
def test_start_epoch_is_plain_margin_softmax_before_it_and_unpg_from_it(sharded):
    embeddings, labels, weight = make_batch(4)
    hook = UNPG(wisk=1.5, start_epoch=2, sharded=sharded)
    args = (embeddings, labels, weight, MARGINS["cosface"], 16.0)
    for epoch in (0, 1):
        assert_same(fast_loss_and_grads(*args, hook, epoch=epoch), naive_loss_and_grads(*args, 1.5, False))
    for epoch in (2, 5):
        assert_same(fast_loss_and_grads(*args, hook, epoch=epoch), naive_loss_and_grads(*args, 1.5, True))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pair_weight": 0}, "pair_weight=0 must be a number > 0"),
        ({"pair_weight": float("nan")}, "pair_weight=nan must be a number > 0"),
        ({"pair_weight": "1"}, "pair_weight='1' must be a number > 0"),
        ({"start_epoch": -1}, "start_epoch=-1 must be a whole number >= 0"),
        ({"start_epoch": 1.5}, "start_epoch=1.5 must be a whole number >= 0"),
    ],
)
def test_bad_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        UNPG(**options)


def test_options_come_from_the_config_section():
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.losses import build_losses

    unpg = build_losses(get_config("recipes/arcface_torch/configs/synthetic_unpg"))[0]
    assert (unpg.pair_weight, unpg.start_epoch) == (1.0, 0)
    config = get_config("recipes/arcface_torch/configs/synthetic_unpg", unpg={"pair_weight": 0.1, "start_epoch": 1})
    unpg = build_losses(config)[0]
    assert (unpg.pair_weight, unpg.start_epoch) == (0.1, 1)
    assert "pair_weight=0.1, start_epoch=1" in repr(unpg)
