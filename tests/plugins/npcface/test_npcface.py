"""NPCFace on the partial-FC head against the naive float64 full-FC reference (loss and gradients to ~1e-10)."""

import pytest
import torch

from plugins.npcface import NPCFace
from plugins.unpg import UNPG
from tests.support.naive_partial_fc_losses import naive_loss
from tests.support.partial_fc_runs import (
    assert_same_step,
    float64_problem,
    head_step,
    make_head,
    naive_grads,
)

OPTIONS = dict(NPCFace.DEFAULTS)


def close_problem(seed, batch=10):
    """Embeddings near their class centres' neighbours, so that many rows have hard negatives."""
    embeddings, labels, weight = float64_problem(seed, batch=batch, norm_range=(1.0, 2.0))
    g = torch.Generator().manual_seed(seed + 100)
    mixed = weight[labels] + 0.8 * weight[torch.randint(0, 9, (batch,), generator=g)]
    return mixed + 0.3 * embeddings, labels, weight


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_npcface_matches_naive_float64(seed, scale):
    embeddings, labels, weight = close_problem(seed)
    fast = head_step(make_head([NPCFace()], 9, 12, scale), embeddings, labels, weight)
    naive = naive_grads(lambda x, w: naive_loss(x, labels, w, scale, npcface=OPTIONS), embeddings, weight)
    assert_same_step(fast, naive)


@pytest.mark.parametrize("seed", [4, 5])
def test_npcface_with_unpg_matches_naive_float64(seed):
    embeddings, labels, weight = close_problem(seed, batch=14)
    fast = head_step(make_head([NPCFace(), UNPG(wisk=1.5)], 9, 12, 16.0), embeddings, labels, weight)
    naive = naive_grads(lambda x, w: naive_loss(x, labels, w, 16.0, npcface=OPTIONS, unpg_wisk=1.5), embeddings, weight)
    assert_same_step(fast, naive)


def test_reference_batches_have_hard_negatives_and_both_target_signs():
    embeddings, labels, weight = close_problem(0)
    head = make_head([NPCFace()], 9, 12, 16.0)
    head.collect_diagnostics = True
    head_step(head, embeddings, labels, weight)
    per_row = float(head.last_diagnostics["npcface/hard_negatives_per_row"])
    assert 0 < per_row < 8
    cos_y = torch.nn.functional.cosine_similarity(embeddings, weight[labels])
    assert (cos_y > 0).any()
    flipped = float64_problem(7)  # random directions: some targets have c_y <= 0
    cos_flipped = torch.nn.functional.cosine_similarity(flipped[0], flipped[2][flipped[1]])
    assert (cos_flipped <= 0).any()
    fast = head_step(make_head([NPCFace()], 9, 12, 16.0), *flipped)
    naive = naive_grads(lambda x, w: naive_loss(x, flipped[1], w, 16.0, npcface=OPTIONS), flipped[0], flipped[2])
    assert_same_step(fast, naive)


def test_reweighting_changes_the_loss():
    embeddings, labels, weight = close_problem(1)
    npc = head_step(make_head([NPCFace()], 9, 12, 16.0), embeddings, labels, weight)[0]
    plain_weights = head_step(
        make_head([NPCFace(t=1.0, a=0.0, m1=0.0, m0=0.5)], 9, 12, 16.0), embeddings, labels, weight
    )[0]
    arcface = head_step(make_head([], 9, 12, 16.0), embeddings, labels, weight)[0]
    assert torch.allclose(plain_weights, arcface, rtol=1e-12)  # t=1, a=0, m_i = 0.5: ArcFace with easy margin here
    assert npc > arcface


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="t=0.0 must be > 0"):
        NPCFace(t=0.0)
