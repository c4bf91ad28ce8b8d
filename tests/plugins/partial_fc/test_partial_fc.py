"""The partial-FC head's loss protocol: 2 gloo ranks equal one process for every loss and composition
(loss, embedding, centre and learnable-parameter gradients, sharded buffers), "partial" terms, sampling,
upstream's label shapes and margin contract, and every registered loss built from a config."""

import pytest
import torch
import torch.nn.functional as F

from plugins.magface import MagFace
from plugins.npcface import NPCFace
from plugins.partial_fc import PartialFC, PartialFCLoss, Term
from plugins.unpg import UNPG, PartialFC_V2_UNPG
from plugins.uss import USS
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support.distributed_harness import run_on_ranks
from tests.support.naive_partial_fc_losses import naive_loss
from tests.support.partial_fc_runs import (
    ARCFACE,
    COSFACE,
    assert_close,
    assert_same_step,
    float64_problem,
    head_step,
    make_head,
    naive_grads,
)

NUM_CLASSES, BATCH, DIM, STEPS = 11, 8, 12, 3  # 11 classes: an uneven 6 / 5 split over 2 ranks


class HalfScaleShadowClasses(PartialFCLoss):
    """A test loss with a "partial" denominator term: every row's denominator also holds
    sum_j e^{s c_ij / 2} over all classes j, each rank contributing its own shard's classes."""

    name = "shadow"

    def denominator_terms(self, ctx):
        return [Term(torch.logsumexp(ctx.logits * (ctx.scale / 2), dim=1), "partial")]


def naive_shadow_loss(x, labels, w, s):
    """The margin softmax with C more columns s c_ij / 2 per row, by hand."""
    rows = []
    for i in range(x.shape[0]):
        unit = x[i] / x[i].norm()
        cos = torch.stack([torch.dot(unit, w[j] / w[j].norm()) for j in range(w.shape[0])])
        y = int(labels[i])
        target = torch.cos(torch.arccos(cos[y]) + 0.5)
        rows.append(torch.cat([(s * target)[None], s * cos[torch.arange(w.shape[0]) != y], s * cos / 2]))
    return F.cross_entropy(torch.stack(rows), torch.zeros(len(rows), dtype=torch.long))


class CentreNormPenalty(PartialFCLoss):
    """docs/losses.md's "Write your own loss" example: lambda * 1/B sum_i (1 - c_{i,y_i})^2, a partial auxiliary loss."""

    name = "centre_penalty"
    DEFAULTS = {"weight": 0.1}

    def __init__(self, weight: float = 0.1):
        super().__init__()
        self.weight = weight

    def auxiliary_losses(self, ctx):
        cos_y = ctx.shard_target_cos  # c_{i,y_i} of the rows whose class lives on this rank (both heads)
        part = ((1 - cos_y) ** 2).sum() / ctx.labels.numel()
        return [Term(self.weight * part, "partial")]


CASES = {
    "magface": lambda: [MagFace()],
    "npcface": lambda: [NPCFace()],
    "uss": lambda: [USS(start_epoch=0)],
    "magface+unpg": lambda: [MagFace(), UNPG(wisk=0.5)],
    "npcface+unpg": lambda: [NPCFace(), UNPG(wisk=0.5)],
    "uss+unpg": lambda: [USS(start_epoch=0), UNPG()],
    "shadow (partial term)": lambda: [HalfScaleShadowClasses()],
    "readme example + unpg": lambda: [CentreNormPenalty(0.5), UNPG()],
}


def problem(step):
    embeddings, labels, _ = float64_problem(50 + step, batch=BATCH, classes=NUM_CLASSES, dim=DIM, norm_range=(5, 130))
    g = torch.Generator().manual_seed(7)
    weight = torch.randn(NUM_CLASSES, DIM, generator=g, dtype=torch.float64)
    if step == 0:
        labels = torch.tensor([0, 0, 3, 10, 5, 5, 6, 2])
    return embeddings, labels, weight


def run_case(name, rank=0, world_size=1):
    """STEPS steps of the head (fresh per case); per step: loss, embedding grad of this rank's rows, centre grad,
    loss-parameter grads and values, sharded buffers."""
    margins = COSFACE if name.startswith("uss") else ARCFACE
    head = make_head(CASES[name](), NUM_CLASSES, DIM, 16.0, margins=margins)
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    results = []
    for step in range(STEPS):
        embeddings, labels, weight = problem(step)
        shard = weight[head.class_start : head.class_start + head.num_local]
        loss, x_grad, w_grad, param_grads = head_step(head, embeddings[rows], labels[rows], shard)
        values = {name: p.detach().clone() for name, p in head.losses.named_parameters()}
        buffers = {name: b.clone() for name, b in head.losses.named_buffers()}
        results.append((loss, x_grad, w_grad, param_grads, values, buffers, head.class_start))
    return results


def distributed_worker(rank, world_size):
    return {name: run_case(name, rank, world_size) for name in CASES}


@pytest.fixture(scope="module")
def two_rank_results():
    return run_on_ranks(distributed_worker, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_two_ranks_equal_one_process(name, two_rank_results):
    single = run_case(name)
    for rank, per_rank in enumerate(two_rank_results):
        for step, (mine, ref) in enumerate(zip(per_rank[name], single, strict=True)):
            loss, x_grad, w_grad, param_grads, values, buffers, start = mine
            r_loss, r_x_grad, r_w_grad, r_param_grads, r_values, r_buffers, _ = ref
            where = f"{name}, rank {rank}, step {step}"
            assert_close(loss, r_loss, f"{where}: loss", rtol=1e-12)
            # each rank's rows get world_size x the one-process gradient (DDP's averaging then gives it exactly)
            local = r_x_grad[rank * BATCH // 2 : (rank + 1) * BATCH // 2] * 2
            assert_close(x_grad, local, f"{where}: embedding grad")
            assert_close(w_grad, r_w_grad[start : start + w_grad.shape[0]], f"{where}: centre grad")
            for key in r_param_grads:  # replicated learnable scalars: the full one-process gradient on every rank
                assert_close(param_grads[key], r_param_grads[key], f"{where}: grad of {key}")
                assert_close(values[key], r_values[key], f"{where}: value of {key}")
            for key, value in r_buffers.items():
                if value.dim() == 0:
                    assert torch.equal(buffers[key], value), f"{where}: {key}"
                else:  # sharded like the centres
                    assert torch.equal(buffers[key], value[start : start + buffers[key].shape[0]]), f"{where}: {key}"
    if name.startswith("uss"):
        assert single[-1][4]["0.bias"] > 0 and single[-1][3]["0.bias"] != 0  # the bias was initialised and learns


def test_partial_term_matches_naive_and_differs_from_plain():
    embeddings, labels, weight = problem(1)
    fast = head_step(make_head([HalfScaleShadowClasses()], NUM_CLASSES, DIM, 16.0), embeddings, labels, weight)
    naive = naive_grads(lambda x, w: naive_shadow_loss(x, labels, w, 16.0), embeddings, weight)
    assert_same_step(fast, naive)
    plain = head_step(make_head([], NUM_CLASSES, DIM, 16.0), embeddings, labels, weight)[0]
    assert fast[0] > plain


def test_readme_example_matches_naive():
    embeddings, labels, weight = problem(2)
    fast = head_step(make_head([CentreNormPenalty(0.5)], NUM_CLASSES, DIM, 16.0), embeddings, labels, weight)

    def naive(x, w):
        penalty = sum(
            (1 - torch.dot(x[i] / x[i].norm(), w[y] / w[y].norm())) ** 2 for i, y in enumerate(labels.tolist())
        )
        return naive_loss(x, labels, w, 16.0) + 0.5 * penalty / len(labels)

    for what, a, b in zip(
        ("loss", "embedding grad", "centre grad"), fast[:3], naive_grads(naive, embeddings, weight)[:3], strict=True
    ):
        assert_close(a, b, what)


@pytest.mark.parametrize(
    "losses, options",
    [
        (lambda: [MagFace(), UNPG(wisk=0.5)], {"magface": dict(MagFace.DEFAULTS), "unpg_wisk": 0.5}),
        (lambda: [NPCFace(), UNPG()], {"npcface": dict(NPCFace.DEFAULTS), "unpg_wisk": 1.5}),
        (lambda: [], {}),
    ],
)
def test_sampled_centres_match_naive_over_those_centres(losses, options):
    torch.manual_seed(1)
    classes = 50
    embeddings, labels, weight = float64_problem(9, batch=12, classes=classes, dim=DIM)
    head = make_head(losses(), classes, DIM, 16.0, sample_rate=0.4)
    fast = head_step(head, embeddings, labels, weight)
    sampled = head.weight_index.tolist()
    assert len(sampled) == 20 and set(labels.tolist()) <= set(sampled)
    naive = naive_grads(lambda x, w: naive_loss(x, labels, w, 16.0, classes=sampled, **options), embeddings, weight)
    assert_same_step(fast, naive)
    assert torch.all(fast[2][sorted(set(range(classes)) - set(sampled))] == 0)


def test_sample_rate_zero_keeps_only_the_positive_centres():
    embeddings, labels, weight = float64_problem(10, batch=12, classes=50, dim=DIM)
    head = make_head([UNPG()], 50, DIM, 16.0, sample_rate=0.0)
    fast = head_step(head, embeddings, labels, weight)
    assert head.weight_index.tolist() == sorted(set(labels.tolist()))
    naive = naive_grads(
        lambda x, w: naive_loss(x, labels, w, 16.0, classes=head.weight_index.tolist(), unpg_wisk=1.5),
        embeddings,
        weight,
    )
    assert_close(fast[0], naive[0], "loss")


class UpstreamContractMargin(torch.nn.Module):
    """Written from upstream arcface_torch's documented CombinedMarginLoss contract: labels (B, 1), -1 off
    shard; interclass_filtering_threshold > 0 zeroes non-target cosines above it (a scatter over (n, 1)
    labels); ArcFace target cos(theta + m2) computed without gradient (straight-through); times s."""

    def __init__(self, s, m2, threshold):
        super().__init__()
        self.s, self.m2, self.threshold = s, m2, threshold

    def forward(self, logits, labels):
        assert labels.dim() == 2 and labels.size(1) == 1, "upstream passes labels shaped (B, 1)"
        positive = torch.where(labels != -1)[0]
        if self.threshold > 0:
            with torch.no_grad():
                keep = torch.ones(positive.numel(), logits.size(1), dtype=logits.dtype)
                keep.scatter_(1, labels[positive], 0)
                dirty = (logits > self.threshold).to(logits.dtype)
                dirty[positive] *= keep
            logits = logits * (1 - dirty)
        target = logits[positive, labels[positive].view(-1)]
        with torch.no_grad():
            moved = torch.cos(torch.arccos(target) + self.m2) - target
        logits = logits.index_put((positive, labels[positive].view(-1)), target + moved)
        return logits * self.s


def test_upstream_margin_contract_with_interclass_filtering_in_the_drop_in():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(16, 32), torch.randint(0, 100, (16,))
    upstream = PartialFC_V2_UNPG(UpstreamContractMargin(64.0, 0.5, 0.05), 32, 100, 1.0, False)
    ours = PartialFC_V2_UNPG(CombinedMarginLoss(64.0, 1.0, 0.5, 0.0, interclass_filtering_threshold=0.05), 32, 100)
    ours.load_state_dict(upstream.state_dict())
    unfiltered = PartialFC_V2_UNPG(CombinedMarginLoss(64.0, 1.0, 0.5, 0.0), 32, 100)
    unfiltered.load_state_dict(upstream.state_dict())
    loss = upstream(embeddings, labels.view(-1, 1))
    assert torch.isfinite(loss)
    assert torch.allclose(loss, ours(embeddings, labels), rtol=1e-5)  # same forward, labels (b,) or (b, 1)
    assert not torch.allclose(loss, unfiltered(embeddings, labels), rtol=1e-5)  # the filter did something


def test_margin_labels_shaped_n_by_1_give_the_same_logits():
    cos = torch.rand(6, 5) * 2 - 1
    labels = torch.tensor([0, -1, 4, 2, -1, 1])
    for margin in (CombinedMarginLoss(64, 1.0, 0.5, 0.0, 0.2), CombinedMarginLoss(64, 1.0, 0.0, 0.4)):
        assert torch.equal(margin(cos.clone(), labels), margin(cos.clone(), labels.view(-1, 1)))


def test_composition_rules():
    with pytest.raises(ValueError, match="magface, npcface each define the target logit"):
        PartialFC(CombinedMarginLoss(64, 1.0, 0.5, 0.0), 8, 10, losses=[MagFace(), NPCFace()])
    with pytest.raises(TypeError, match="is not a PartialFCLoss"):
        PartialFC(CombinedMarginLoss(64, 1.0, 0.5, 0.0), 8, 10, losses=[torch.nn.Linear(2, 2)])
    head = PartialFC(CombinedMarginLoss(64, 1.0, 0.5, 0.0), 8, 10, losses=[USS(), UNPG()])
    head.set_epoch(3)
    assert head.losses[0].epoch == 3
    groups = head.parameter_groups()
    assert groups[0]["params"] == [head.weight] and groups[1]["weight_decay"] == 0.0


def test_diagnostics_arrive_through_one_channel():
    embeddings, labels, weight = problem(0)
    head = make_head([MagFace(), UNPG()], NUM_CLASSES, DIM, 16.0)
    head.collect_diagnostics = True
    head_step(head, embeddings, labels, weight)
    keys = set(head.last_diagnostics)
    assert {"magface/magnitude_mean", "unpg/pairs_total", "unpg/pairs_kept", "unpg/neg_mean"} <= keys
    head.collect_diagnostics = False
    head_step(head, embeddings, labels, weight)
    assert "unpg/neg_mean" not in head.last_diagnostics and "unpg/pairs_kept" in head.last_diagnostics


# ---- every registered loss, built from a config the way train.py builds it, on 2 ranks ------------


def registered_losses():
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.losses import LOSSES, load_plugins

    load_plugins(get_config("recipes/arcface_torch/configs/synthetic_unpg").plugins)
    return LOSSES.names()


def registry_steps(name, rank, world_size):
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.losses import build_head

    cfg = get_config("recipes/arcface_torch/configs/synthetic_unpg", loss=name, embedding_size=DIM, scale=16.0)
    head = build_head(cfg, NUM_CLASSES).double()
    head.set_epoch(5)  # every loss active (USS starts at epoch 1)
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    out = []
    for step in range(2):  # the second step sees a filled memory bank
        embeddings, labels, weight = problem(step)
        out.append(
            head_step(
                head, embeddings[rows], labels[rows], weight[head.class_start : head.class_start + head.num_local]
            )
            + (head.class_start,)
        )
    return out


def registry_worker(rank, world_size, names):
    return {name: registry_steps(name, rank, world_size) for name in names}


@pytest.fixture(scope="module")
def registry_results():
    names = registered_losses()
    return run_on_ranks(registry_worker, 2, names)


@pytest.mark.slow
@pytest.mark.parametrize("name", registered_losses())
def test_every_registered_loss_is_finite_and_rank_invariant(name, registry_results):
    single = registry_steps(name, 0, 1)
    for rank, per_rank in enumerate(registry_results):
        for step, (mine, ref) in enumerate(zip(per_rank[name], single, strict=True)):
            loss, x_grad, w_grad, params, start = mine
            assert torch.isfinite(loss) and torch.isfinite(x_grad).all() and torch.isfinite(w_grad).all()
            assert all(torch.isfinite(g).all() for g in params.values())
            assert_close(loss, ref[0], f"{name} step {step}: loss", rtol=1e-12)
            assert_close(x_grad, ref[1][rank * BATCH // 2 : (rank + 1) * BATCH // 2] * 2, f"{name}: embedding grad")
            # centres of classes held by the other rank (labels -1 here) get exactly their one-process gradient
            assert_close(w_grad, ref[2][start : start + w_grad.shape[0]], f"{name}: centre grad")


# ---- sample_rate = 0 on 2 ranks: a rank whose shard holds no label of the batch samples no centre -----


def positives_only_steps(rank, world_size):
    head = make_head([USS(start_epoch=0), UNPG()], NUM_CLASSES, DIM, 16.0, margins=COSFACE, sample_rate=0.0)
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    out = []
    for step in range(2):
        embeddings, _, weight = problem(step)
        labels = torch.tensor([0, 1, 2, 3, 0, 1, 4, 5])  # all on rank 0's shard (classes 0..5)
        result = head_step(
            head, embeddings[rows], labels[rows], weight[head.class_start : head.class_start + head.num_local]
        )
        out.append(result + (head.class_start, head.weight_index.numel()))
    return out


def positives_only_worker(rank, world_size):
    return positives_only_steps(rank, world_size)


@pytest.mark.slow
def test_sample_rate_zero_with_an_empty_shard_equals_one_process():
    per_rank = run_on_ranks(positives_only_worker, 2)
    single = positives_only_steps(0, 1)
    assert [r[-1] for r in per_rank[1]] == [0, 0]  # rank 1 used no centre
    for rank, results in enumerate(per_rank):
        for step, (mine, ref) in enumerate(zip(results, single, strict=True)):
            loss, x_grad, w_grad, params, start, _ = mine
            assert_close(loss, ref[0], f"rank {rank} step {step}: loss", rtol=1e-12)
            assert_close(
                x_grad, ref[1][rank * BATCH // 2 : (rank + 1) * BATCH // 2] * 2, f"rank {rank}: embedding grad"
            )
            assert_close(w_grad, ref[2][start : start + w_grad.shape[0]], f"rank {rank}: centre grad")
            assert_close(params["0.bias"], ref[3]["0.bias"], f"rank {rank}: bias grad")
