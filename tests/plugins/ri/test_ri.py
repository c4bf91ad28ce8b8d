"""RI (recognisability index, index diversion, RI regression) on the partial-FC head against the naive float64
full-FC reference: loss and every gradient to 1e-10, alone and composed, with sampled centres, before its start
epoch and without a centre; the unrecognisable-identity centre and mu_UI; 2 gloo ranks equal one process."""

import pytest
import torch
import torch.nn.functional as F

from plugins.magface import MagFace
from plugins.partial_fc import PartialFC
from plugins.ri import RI, nearest_negative_cosine
from plugins.unpg import UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support.distributed_harness import run_on_ranks
from tests.support.naive_partial_fc_losses import naive_loss, naive_unrecognisable_centre
from tests.support.partial_fc_runs import (
    ARCFACE,
    COSFACE,
    assert_close,
    float64_problem,
    head_step,
    make_head,
    naive_grads,
)

CLASSES, DIM, BATCH = 9, 12, 10


def ri_state(seed, dim=DIM):
    """A centre, a level mu_UI and regressor weights; the level puts about half the rows under the hinge."""
    g = torch.Generator().manual_seed(100 + seed)
    centre = F.normalize(torch.randn(dim, generator=g, dtype=torch.float64), dim=0)
    w = 0.3 * torch.randn(dim, generator=g, dtype=torch.float64)
    b = torch.tensor(0.2, dtype=torch.float64)
    return centre, 0.35, w, b


def arm(loss: RI, centre, level, w, b):
    loss.set_centre(centre, level)
    with torch.no_grad():
        loss.regressor.weight.copy_(w[None, :])
        loss.regressor.bias.copy_(b.reshape(1))


def naive_ri_options(loss: RI, centre, level, w, b):
    return {
        "centre": centre,
        "ui_level": level,
        "tau": loss.tau,
        "diversion_weight": loss.diversion_weight,
        "regression_weight": loss.regression_weight,
        "beta": loss.smooth_l1_beta,
        "w": w,
        "b": b,
    }


def check_against_naive(losses, margins, seed, scale, naive_extra=None, sample_rate=1.0, classes=CLASSES):
    embeddings, labels, weight = float64_problem(seed, batch=BATCH, classes=classes, dim=DIM)
    ri = next(loss for loss in losses if isinstance(loss, RI))
    centre, level, w, b = ri_state(seed)
    head = make_head(losses, classes, DIM, scale, margins=margins, sample_rate=sample_rate)
    arm(ri, centre, level, w, b)
    head.set_epoch(ri.start_epoch)
    fast = head_step(head, embeddings, labels, weight)
    sampled = head.weight_index.tolist()
    opts = naive_ri_options(ri, centre, level, w, b)
    naive = naive_grads(
        lambda x, wc, wr, br: naive_loss(
            x,
            labels,
            wc,
            scale,
            margins,
            classes=sampled,
            ri={**opts, "w": wr, "b": br},
            **(naive_extra or {}),
        ),
        embeddings,
        weight,
        [w, b],
    )
    for name, a, e in zip(("loss", "embedding grad", "centre grad"), fast[:3], naive[:3], strict=True):
        assert_close(a, e, name)
    prefix = f"{[type(loss).__name__ for loss in losses].index('RI')}.regressor"
    assert_close(fast[3][f"{prefix}.weight"].reshape(-1), naive[3][0], "regressor weight grad")
    assert_close(fast[3][f"{prefix}.bias"].reshape(()), naive[3][1], "regressor bias grad")
    return fast, head


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margins", [ARCFACE, COSFACE], ids=["arcface", "cosface"])
@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_ri_matches_naive(seed, margins, scale):
    fast, head = check_against_naive([RI(start_epoch=0)], margins, seed, scale)
    plain = head_step(
        make_head([], CLASSES, DIM, scale, margins=margins), *float64_problem(seed, BATCH, CLASSES, DIM)[:2]
    )
    assert float(fast[0]) != float(plain[0])  # the terms are really there


def test_options_change_the_terms_as_the_equations_say():
    for options in ({"tau": 0.5}, {"diversion_weight": 0.0}, {"regression_weight": 0.0}, {"smooth_l1_beta": 0.1}):
        check_against_naive([RI(start_epoch=0, **options)], ARCFACE, 3, 32.0)


def test_composed_with_magface_and_unpg():
    magface = MagFace()
    opts = {k: getattr(magface, k) for k in ("l_a", "u_a", "l_m", "u_m", "lambda_g")}
    check_against_naive([MagFace(), RI(start_epoch=0)], ARCFACE, 4, 32.0, naive_extra={"magface": opts})
    check_against_naive([RI(start_epoch=0), UNPG(filter=False)], ARCFACE, 5, 32.0, naive_extra={"unpg_wisk": None})


def test_sampled_centres_give_the_nearest_negative_among_them():
    torch.manual_seed(0)
    fast, head = check_against_naive([RI(start_epoch=0)], ARCFACE, 6, 32.0, sample_rate=0.3, classes=40)
    assert head.weight_index.numel() == 12


def test_before_start_epoch_or_without_centre_the_loss_adds_nothing():
    embeddings, labels, weight = float64_problem(7, BATCH, CLASSES, DIM)
    plain = head_step(make_head([], CLASSES, DIM, 32.0), embeddings, labels, weight)
    late = RI(start_epoch=2)
    head = make_head([late], CLASSES, DIM, 32.0)
    arm(late, *ri_state(7))
    head.set_epoch(1)
    assert torch.equal(head_step(head, embeddings, labels, weight)[0], plain[0])
    no_centre = make_head([RI(start_epoch=0)], CLASSES, DIM, 32.0)
    no_centre.set_epoch(3)
    result = head_step(no_centre, embeddings, labels, weight)
    for a, b in zip(plain[:3], result[:3], strict=True):
        assert torch.equal(a, b)


def test_nearest_negative_without_any_negative_is_minus_one():
    logits = torch.tensor([[0.3], [0.2]], dtype=torch.float64)
    assert nearest_negative_cosine(logits, torch.tensor([0, -1])).tolist() == [-1.0, 0.2]
    empty = torch.zeros(2, 0, dtype=torch.float64)
    assert nearest_negative_cosine(empty, torch.tensor([-1, -1])).tolist() == [-1.0, -1.0]
    two = torch.tensor([[0.9, 0.4, 0.7]], dtype=torch.float64)
    assert nearest_negative_cosine(two, torch.tensor([0])).tolist() == [0.7]
    assert nearest_negative_cosine(two, torch.tensor([2])).tolist() == [0.9]


def ui_faces(seed, count=12):
    g = torch.Generator().manual_seed(200 + seed)
    embeddings = torch.randn(count, DIM, generator=g, dtype=torch.float64) * 5 + 0.5
    labels = torch.randint(0, CLASSES, (count,), generator=g)
    weight = torch.randn(CLASSES, DIM, generator=g, dtype=torch.float64)
    return embeddings, labels, weight


def test_unrecognisable_centre_matches_naive():
    embeddings, labels, weight = ui_faces(0)
    loss = RI()
    make_head([loss], CLASSES, DIM, 32.0)
    loss.update_centre(embeddings, labels, weight, 0)
    centre, level = naive_unrecognisable_centre(embeddings, labels, weight)
    assert_close(loss.centre, centre, "centre")
    assert abs(float(loss.ui_level) - level) <= 1e-10 * abs(level)
    assert bool(loss.has_centre)


def test_state_dict_and_bad_options():
    head = make_head([RI()], CLASSES, DIM, 32.0)
    assert set(head.state_dict()) == {
        "weight",
        "losses.0.centre",
        "losses.0.ui_level",
        "losses.0.has_centre",
        "losses.0.regressor.weight",
        "losses.0.regressor.bias",
    }
    for options, message in (
        ({"tau": -0.1}, "tau=-0.1 must be a number >= 0"),
        ({"smooth_l1_beta": 0}, "smooth_l1_beta=0 must be a number > 0"),
        ({"dropout": 1.0}, r"dropout=1.0 must be a number in \[0, 1\)"),
        ({"start_epoch": 1.5}, "start_epoch=1.5 must be a whole number"),
        ({"centre_size": 0}, "centre_size=0 must be a whole number of pixels"),
    ):
        with pytest.raises(ValueError, match=message):
            RI(**options)


# ---- 2 gloo ranks (an uneven 5 / 4 class split) equal one process ------------------------------


def ri_steps(rank, world_size):
    """Centre rebuilt from each rank's share of the unrecognisable faces, then 2 steps of [magface, ri]."""
    losses = [MagFace(), RI(start_epoch=0, dropout=0.0)]
    head = make_head(losses, CLASSES, DIM, 32.0)
    ri = losses[1]
    embeddings, labels, weight = ui_faces(1, count=12)
    share = slice(rank * 12 // world_size, (rank + 1) * 12 // world_size)
    shard = weight[head.class_start : head.class_start + head.num_local]
    ri.update_centre(embeddings[share], labels[share], shard, head.class_start)
    _, _, w, b = ri_state(1)
    with torch.no_grad():
        ri.regressor.weight.copy_(w[None, :])
        ri.regressor.bias.copy_(b.reshape(1))
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    out = [(ri.centre.clone(), float(ri.ui_level))]
    for step in range(2):
        x, y, _ = float64_problem(30 + step, BATCH, CLASSES, DIM)
        out.append(head_step(head, x[rows], y[rows], shard) + (head.class_start,))
    return out


def ri_worker(rank, world_size):
    return ri_steps(rank, world_size)


@pytest.mark.slow
def test_two_ranks_equal_one_process():
    per_rank = run_on_ranks(ri_worker, 2)
    single = ri_steps(0, 1)
    for rank, results in enumerate(per_rank):
        assert_close(results[0][0], single[0][0], f"rank {rank}: centre", rtol=1e-12)
        assert abs(results[0][1] - single[0][1]) <= 1e-12 * abs(single[0][1])
        for step, (mine, ref) in enumerate(zip(results[1:], single[1:], strict=True)):
            loss, x_grad, w_grad, params, start = mine
            where = f"rank {rank} step {step}"
            assert_close(loss, ref[0], f"{where}: loss", rtol=1e-12)
            assert_close(x_grad, ref[1][rank * BATCH // 2 : (rank + 1) * BATCH // 2] * 2, f"{where}: embedding grad")
            assert_close(w_grad, ref[2][start : start + w_grad.shape[0]], f"{where}: centre grad")
            for key in ref[3]:  # the replicated regressor: the full one-process gradient on every rank
                assert_close(params[key], ref[3][key], f"{where}: grad of {key}")


def test_config_section_is_checked_by_the_loss():
    from recipes.arcface_torch.config import ConfigError, get_config

    cfg = get_config("recipes/arcface_torch/configs/synthetic_arcface", loss=["ri", "unpg"])
    assert cfg.ri == RI.DEFAULTS
    with pytest.raises(ConfigError, match=r"config.ri: tau=-1 must be a number >= 0"):
        get_config("recipes/arcface_torch/configs/synthetic_arcface", loss="ri", ri={"tau": -1})
    with pytest.raises(ConfigError, match="unknown config key 'ri.taus'; did you mean 'ri.tau'"):
        get_config("recipes/arcface_torch/configs/synthetic_arcface", loss="ri", ri={"taus": 0.1})


def test_the_chunked_head_refuses_ri_in_one_line():
    with pytest.raises(
        ValueError, match="loss 'ri' reads every \\(B, K\\) cosine \\(the nearest negative prototype.*head_chunk = 0"
    ):
        PartialFC(CombinedMarginLoss(32.0, *ARCFACE), DIM, CLASSES, losses=[RI()], head_chunk=4)
