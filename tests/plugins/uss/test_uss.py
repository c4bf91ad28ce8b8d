"""USS on the partial-FC head against the naive float64 full-FC reference, over several steps of the
memory bank (empty, filled, bias initialised once), with sampling and the start epoch."""

import pytest
import torch

from plugins.uss import USS
from tests.support.naive_partial_fc_losses import naive_bank_update, naive_loss, naive_uss_initial_bias
from tests.support.partial_fc_runs import COSFACE, assert_close, float64_problem, head_step, make_head, naive_grads

CLASSES, DIM = 9, 12


def batches(seed, steps=3, batch=10):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(CLASSES, DIM, generator=g, dtype=torch.float64)
    out = []
    for step in range(steps):
        embeddings, labels, _ = float64_problem(seed * 10 + step, batch=batch, classes=CLASSES, dim=DIM)
        out.append((embeddings, labels))
    return weight, out


def compare_steps(head, weight, steps, scale, weight_uss=1.0, m=0.1, set_bias=None):
    """Runs the head and the naive reference step by step; returns the biases seen after each step."""
    bank, biases = {}, []
    uss = head.losses[0]
    for index, (embeddings, labels) in enumerate(steps):
        if set_bias is not None and index in set_bias:
            with torch.no_grad():
                uss.bias.fill_(set_bias[index])
        expected_init = None
        if bank and not bool(uss.initialised) and float(uss.bias.detach()) <= 0:
            expected_init = naive_uss_initial_bias(embeddings, labels, scale, bank)
        fast = head_step(head, embeddings, labels, weight)
        if expected_init is not None:
            assert abs(float(uss.bias.detach()) - expected_init) <= 1e-10 * abs(expected_init)
        b = uss.bias.detach().clone()
        naive = naive_grads(
            lambda x, w, b, labels=labels, bank=bank: naive_loss(
                x, labels, w, scale, COSFACE, uss={"bank": bank, "b": b, "m": m, "weight": weight_uss}
            ),
            embeddings,
            weight,
            [b],
        )
        for name, a, e in zip(("loss", "embedding grad", "centre grad"), fast[:3], naive[:3], strict=True):
            assert_close(a, e, f"step {index}: {name}")
        assert_close(fast[3]["0.bias"], naive[3][0], f"step {index}: bias grad", rtol=1e-9)
        bank = naive_bank_update(bank, embeddings, labels)
        written = torch.tensor(sorted(bank))
        assert torch.equal(uss.written.nonzero().flatten(), written)
        assert_close(uss.bank[written], torch.stack([bank[int(j)] for j in written]), f"step {index}: bank")
        biases.append(float(uss.bias.detach()))
    return biases


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [16.0, 64.0])
def test_uss_matches_naive_over_steps(seed, scale):
    weight, steps = batches(seed, steps=4)
    head = make_head([USS(start_epoch=0)], CLASSES, DIM, scale, margins=COSFACE)
    biases = compare_steps(head, weight, steps, scale, set_bias={3: -0.5})
    assert biases[0] == 0.0 and biases[1] > 0  # empty bank, then the released initialisation
    assert biases[3] == -0.5  # initialised once: a negative bias later is kept
    assert bool(head.losses[0].initialised)


def test_empty_bank_leaves_the_margin_softmax_unchanged_and_positive_bias_is_kept():
    weight, steps = batches(2, steps=2)
    plain = head_step(make_head([], CLASSES, DIM, 16.0, margins=COSFACE), *steps[0], weight)
    head = make_head([USS(start_epoch=0)], CLASSES, DIM, 16.0, margins=COSFACE)
    with_uss = head_step(head, *steps[0], weight)
    for a, b in zip(plain[:3], with_uss[:3], strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        head.losses[0].bias.fill_(3.0)
    head_step(head, *steps[1], weight)
    assert float(head.losses[0].bias.detach()) == 3.0 and bool(head.losses[0].initialised)


def test_start_epoch_and_weight():
    weight, steps = batches(3, steps=2)
    head = make_head([USS(start_epoch=1, weight=0.5)], CLASSES, DIM, 16.0, margins=COSFACE)
    plain = make_head([], CLASSES, DIM, 16.0, margins=COSFACE)
    head_step(head, *steps[0], weight)  # epoch 0: the bank fills, no term
    epoch0 = head_step(head, *steps[1], weight)[0]
    assert torch.equal(epoch0, head_step(plain, *steps[1], weight)[0])
    assert not bool(head.losses[0].initialised)
    head.set_epoch(1)
    bank = naive_bank_update(naive_bank_update({}, *steps[0]), *steps[1])
    init = naive_uss_initial_bias(*steps[1], 16.0, bank)
    epoch1 = head_step(head, *steps[1], weight)
    b = torch.tensor(init, dtype=torch.float64)
    naive = naive_grads(
        lambda x, w, b: naive_loss(
            x, steps[1][1], w, 16.0, COSFACE, uss={"bank": bank, "b": b, "m": 0.1, "weight": 0.5}
        ),
        steps[1][0],
        weight,
        [b],
    )
    for name, a, e in zip(("loss", "embedding grad", "centre grad"), epoch1[:3], naive[:3], strict=True):
        assert_close(a, e, name)


def test_sampled_centres_only_take_part():
    torch.manual_seed(0)
    classes = 40
    g = torch.Generator().manual_seed(4)
    weight = torch.randn(classes, DIM, generator=g, dtype=torch.float64)
    head = make_head([USS(start_epoch=0)], classes, DIM, 16.0, margins=COSFACE, sample_rate=0.3)
    bank = {}
    for step in range(3):
        embeddings = torch.randn(8, DIM, generator=g, dtype=torch.float64)
        labels = torch.randint(0, classes, (8,), generator=g)
        fast = head_step(head, embeddings, labels, weight)
        sampled = head.weight_index.tolist()
        assert len(sampled) == 12 and set(labels.tolist()) <= set(sampled)
        b = head.losses[0].bias.detach().clone()
        naive = naive_grads(
            lambda x, w, b, labels=labels, bank=bank, sampled=sampled: naive_loss(
                x, labels, w, 16.0, COSFACE, classes=sampled, uss={"bank": bank, "b": b, "m": 0.1, "weight": 1.0}
            ),
            embeddings,
            weight,
            [b],
        )
        for name, a, e in zip(("loss", "embedding grad", "centre grad"), fast[:3], naive[:3], strict=True):
            assert_close(a, e, f"step {step}: {name}")
        untouched = sorted(set(range(classes)) - set(sampled))
        assert torch.all(fast[2][untouched] == 0)
        bank = naive_bank_update(bank, embeddings, labels)


def test_state_dict_holds_bank_and_flag_and_bad_options_are_rejected():
    head = make_head([USS()], CLASSES, DIM, 16.0)
    assert set(head.state_dict()) == {
        "weight",
        "losses.0.bias",
        "losses.0.initialised",
        "losses.0.bank",
        "losses.0.written",
    }
    assert head.parameter_groups()[1] == {"params": [head.losses[0].bias], "weight_decay": 0.0}
    with pytest.raises(ValueError, match="start_epoch=1.5 must be a whole number"):
        USS(start_epoch=1.5)
    with pytest.raises(ValueError, match="weight=-1.0 must be >= 0"):
        USS(weight=-1.0)
