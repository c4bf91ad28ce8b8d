"""MagFace on the partial-FC head against the naive float64 full-FC reference (loss and gradients to ~1e-10)."""

import pytest
import torch

from plugins.magface import MagFace
from plugins.unpg import UNPG
from tests.support.naive_partial_fc_losses import naive_loss
from tests.support.partial_fc_runs import (
    COSFACE,
    assert_same_step,
    float64_problem,
    head_step,
    make_head,
    naive_grads,
)

OPTIONS = dict(MagFace.DEFAULTS)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_magface_matches_naive_float64(seed, scale):
    embeddings, labels, weight = float64_problem(seed)
    fast = head_step(make_head([MagFace()], 9, 12, scale), embeddings, labels, weight)
    naive = naive_grads(lambda x, w: naive_loss(x, labels, w, scale, magface=OPTIONS), embeddings, weight)
    assert_same_step(fast, naive)


@pytest.mark.parametrize("seed", [3, 4])
def test_magface_with_unpg_matches_naive_float64(seed):
    embeddings, labels, weight = float64_problem(seed, batch=14)
    fast = head_step(make_head([MagFace(), UNPG(wisk=0.5)], 9, 12, 16.0), embeddings, labels, weight)
    naive = naive_grads(lambda x, w: naive_loss(x, labels, w, 16.0, magface=OPTIONS, unpg_wisk=0.5), embeddings, weight)
    assert_same_step(fast, naive)


def test_reference_batches_cover_both_branches():
    """The naive comparison means something only if the batches hit the clamp and the easy-margin rule."""
    embeddings, labels, weight = float64_problem(0)
    norms = embeddings.norm(dim=1)
    assert (norms < 10).any() and (norms > 110).any() and ((norms > 10) & (norms < 110)).any()
    cos_y = torch.nn.functional.cosine_similarity(embeddings, weight[labels])
    assert (cos_y > 0).any() and (cos_y <= 0).any()


def test_margin_list_does_not_apply_and_other_options_change_the_loss():
    embeddings, labels, weight = float64_problem(5)
    arcface = head_step(make_head([MagFace()], 9, 12, 16.0), embeddings, labels, weight)[0]
    cosface = head_step(make_head([MagFace()], 9, 12, 16.0, margins=COSFACE), embeddings, labels, weight)[0]
    no_regulariser = head_step(make_head([MagFace(lambda_g=0.0)], 9, 12, 16.0), embeddings, labels, weight)[0]
    assert torch.equal(arcface, cosface)
    assert no_regulariser < arcface


def test_gradient_of_the_magnitude_is_zero_outside_the_clamp():
    embeddings, labels, weight = float64_problem(6)
    _, grad, _, _ = head_step(make_head([MagFace(lambda_g=35.0)], 9, 12, 16.0), embeddings, labels, weight)
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    radial = (grad * unit).sum(dim=1)  # the cosines do not depend on |x|: only a_i moves it
    norms = embeddings.norm(dim=1)
    outside = (norms < 10) | (norms > 110)
    assert torch.all(radial[outside].abs() <= 1e-12 * grad.abs().max())
    assert torch.all(radial[~outside].abs() > 0)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"l_a": 110.0, "u_a": 10.0}, "0 < l_a < u_a"),
        ({"l_m": 0.9, "u_m": 0.8}, "0 <= l_m <= u_m"),
        ({"lambda_g": -1.0}, "lambda_g=-1.0 must be >= 0"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        MagFace(**options)
