"""CombinedMarginLoss: upstream's straight-through contract by default, the exact gradient on request,
upstream's inter-class filtering, and (n, 1) labels as upstream passes them."""

import math

import pytest
import torch

from recipes.arcface_torch.margin_loss import CombinedMarginLoss

S = 64.0


def cosines_and_labels(seed=0, rows=6, cols=9):
    g = torch.Generator().manual_seed(seed)
    cos = torch.rand(rows, cols, generator=g, dtype=torch.float64) * 2 - 1
    labels = torch.randint(0, cols, (rows,), generator=g)
    labels[-1] = -1  # a row whose class lives on another shard
    cos[0, labels[0]] = -0.95  # theta + 0.5 > pi: where the exact ArcFace margin turns back up
    return cos, labels


def upstream_forward(cos, labels, m1, m2, m3):
    """Upstream's forward values: ArcFace (m1 = 1, m3 = 0) cos(arccos(c) + m2) on the target, CosFace
    (m3 > 0) c - m3; every other logit c; all times s."""
    out = cos.clone()
    for i, y in enumerate(labels.tolist()):
        if y < 0:
            continue
        c = cos[i, y]
        out[i, y] = torch.cos(torch.arccos(c) + m2) if m3 == 0 else c - m3
    return out * S


@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4)])
def test_straight_through_forward_is_upstreams_and_gradient_is_identity(margins):
    cos, labels = cosines_and_labels()
    x = cos.clone().requires_grad_(True)
    out = CombinedMarginLoss(S, *margins)(x, labels)
    assert torch.allclose(out, upstream_forward(cos, labels, *margins), rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(cos)
    (out * weights).sum().backward()
    assert torch.allclose(x.grad, S * weights, rtol=1e-12, atol=0)  # d out / d cos = s everywhere, target included


def test_exact_gradient_is_the_derivative_of_the_margin():
    m1, m2 = 1.0, 0.5
    cos, labels = cosines_and_labels(1)
    cos[0, labels[0]] = 0.3  # every target in the ordinary range here
    x = cos.clone().requires_grad_(True)
    CombinedMarginLoss(S, m1, m2, 0.0, gradient="exact")(x, labels).sum().backward()
    for i, y in enumerate(labels.tolist()):
        for j in range(cos.shape[1]):
            expected = S
            if j == y:
                theta = math.acos(float(cos[i, j]))
                expected = S * m1 * math.sin(m1 * theta + m2) / math.sin(theta)
            assert math.isclose(float(x.grad[i, j]), expected, rel_tol=1e-6), (i, j)


def test_exact_margin_is_monotonic_past_theta_plus_m_equal_pi():
    margin = CombinedMarginLoss(S, 1.0, 0.5, 0.0, gradient="exact")
    c = torch.linspace(-1.0 + 1e-6, 1.0 - 1e-6, 4001, dtype=torch.float64, requires_grad=True)
    psi = margin.psi(c)
    assert (psi[1:] - psi[:-1] >= -1e-12).all()  # never decreasing: moving towards the centre always helps
    psi.sum().backward()
    assert (c.grad > 0).all()
    turn = math.cos(math.pi - 0.5)
    below = c.detach() < turn
    assert torch.allclose(c.grad[below], torch.ones_like(c.grad[below]))  # slope 1 past the turning point
    at = torch.tensor([turn - 1e-9, turn + 1e-9], dtype=torch.float64)
    left, right = margin.psi(at).tolist()
    assert abs(left - right) < 1e-6 and abs(right + 1.0) < 1e-6  # continuous, -1 at the turning point


def test_exact_and_straight_through_have_the_same_forward_where_the_margin_is_monotonic():
    cos, labels = cosines_and_labels(2)
    rows = torch.arange(len(labels) - 1)
    cos[rows, labels[rows]] = cos[rows, labels[rows]] * 0.5  # targets in [-0.5, 0.5]: theta + m2 < pi
    straight = CombinedMarginLoss(S, 1.0, 0.5, 0.0)(cos, labels)
    exact = CombinedMarginLoss(S, 1.0, 0.5, 0.0, gradient="exact")(cos, labels)
    assert torch.allclose(straight, exact, rtol=1e-9, atol=1e-9)


def test_combined_margin_keeps_the_full_formula_with_the_chosen_gradient():
    m1, m2, m3 = 1.0, 0.3, 0.2
    cos, labels = cosines_and_labels(3)
    cos[0, labels[0]] = 0.2
    for gradient in ("straight_through", "exact"):
        x = cos.clone().requires_grad_(True)
        out = CombinedMarginLoss(S, m1, m2, m3, gradient=gradient)(x, labels)
        i, y = 1, int(labels[1])
        assert math.isclose(
            float(out[i, y].detach()), S * (math.cos(m1 * math.acos(float(cos[i, y])) + m2) - m3), rel_tol=1e-9
        )
        out[i, y].backward()
        slope = float(x.grad[i, y]) / S
        theta = math.acos(float(cos[i, y]))
        assert math.isclose(
            slope,
            1.0 if gradient == "straight_through" else m1 * math.sin(m1 * theta + m2) / math.sin(theta),
            rel_tol=1e-6,
        )


def upstream_filtered(cos, labels, threshold):
    """Upstream's inter-class filtering, with its (n, 1) labels: a float mask of logits above the threshold,
    the target column of each row with a local label cleared by scatter, then logits * (1 - mask)."""
    index = torch.where(labels.view(-1) != -1)[0]
    dirty = (cos > threshold).double()
    keep_target = torch.ones(index.numel(), cos.shape[1], dtype=torch.float64)
    keep_target.scatter_(1, labels.view(-1, 1)[index], 0)
    dirty[index] *= keep_target
    return cos * (1 - dirty)


@pytest.mark.parametrize("margins", [(1.0, 0.5, 0.0), (1.0, 0.0, 0.4)])
def test_interclass_filtering_is_upstreams_and_n1_labels_match(margins):
    cos, labels = cosines_and_labels(4)
    cos[2, labels[2]] = 0.9  # a target above the threshold stays
    threshold = 0.4
    expected = upstream_forward(upstream_filtered(cos, labels, threshold), labels, *margins)
    margin = CombinedMarginLoss(S, *margins, interclass_filtering_threshold=threshold)
    flat = margin(cos, labels)
    column = margin(cos, labels.view(-1, 1))
    assert torch.allclose(flat, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(flat, column)
    assert (flat[-1] == 0).sum() == (cos[-1] > threshold).sum()  # the off-shard row is filtered too


def test_unknown_gradient_mode_is_refused():
    with pytest.raises(ValueError, match="margin_gradient='exactly' is not known; use 'straight_through'"):
        CombinedMarginLoss(S, 1.0, 0.5, 0.0, gradient="exactly")
