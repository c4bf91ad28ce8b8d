"""The chunked partial-FC head (head_chunk) against today's dense head and the naive float64 reference.

Loss and gradients (embeddings, centres, loss parameters) equal the dense head's to 1e-12 in float64 and to
float32 rounding in float32, for every loss that runs chunked (margin softmax, MagFace, UNPG replicated and
sharded, USS), sampled (sample_rate < 1) or not, chunk widths that do not divide K, a chunk with no target, every
target in one chunk, exps all kept, partly kept or all recomputed, the online shift, the clamp's gradient rule,
K = 0 shards, at 1, 2 and 4 gloo ranks. Losses that rewrite the (B, K) logits are refused in one line.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import plugins.partial_fc.chunked_softmax as chunked_softmax
from plugins.magface import MagFace
from plugins.npcface import NPCFace
from plugins.partial_fc import PartialFC, PartialFCLoss, Term
from plugins.partial_fc.chunked_softmax import chunk_width, exps_fit_unshifted
from plugins.unpg import UNPG, PartialFC_V2_UNPG
from plugins.uss import USS
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.losses import build_head
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support import DEMO
from tests.support.distributed_harness import run_on_ranks
from tests.support.naive_partial_fc_losses import naive_loss
from tests.support.partial_fc_runs import ARCFACE, COSFACE, assert_same_step, head_step, naive_grads

BATCH, CLASSES, DIM, SCALE, STEPS = 12, 11, 8, 16.0, 3  # 11 classes: chunks of 3 leave a short last one

LOSSES = {
    "arcface": lambda: [],
    "cosface": lambda: [],
    "arcface straight-through": lambda: [],
    "magface": lambda: [MagFace()],
    "unpg": lambda: [UNPG(wisk=0.5)],
    "unpg sharded": lambda: [UNPG(wisk=0.5, sharded=True)],
    "magface+unpg": lambda: [MagFace(), UNPG(wisk=1.0)],
    "uss+unpg": lambda: [USS(start_epoch=0), UNPG()],
}


def margin_of(name: str, scale: float = SCALE) -> CombinedMarginLoss:
    margins = COSFACE if name.startswith(("cosface", "uss")) else ARCFACE
    gradient = "straight_through" if "straight-through" in name else "exact"
    return CombinedMarginLoss(scale, *margins, gradient=gradient)


def make(name: str, chunk, sample_rate: float = 1.0, budget: float = 4.0, dtype=torch.float64, scale=SCALE):
    head = PartialFC(
        margin_of(name, scale),
        DIM,
        CLASSES,
        sample_rate,
        losses=LOSSES[name](),
        head_chunk=chunk,
        head_chunk_budget=budget,
    )
    return head.to(dtype)


def problem(step: int, dtype=torch.float64, labels=None):
    """(embeddings (B, D) with norms 5..130, labels (B,) with repeats, centres (C, D))."""
    g = torch.Generator().manual_seed(100 + step)
    directions = F.normalize(torch.randn(BATCH, DIM, generator=g, dtype=torch.float64), dim=1)
    norms = torch.linspace(5.0, 130.0, BATCH, dtype=torch.float64)[torch.randperm(BATCH, generator=g)]
    if labels is None:
        labels = torch.randint(0, CLASSES, (BATCH,), generator=g)
        labels[1] = labels[0]
    weight = torch.randn(CLASSES, DIM, generator=g, dtype=torch.float64)
    return (directions * norms[:, None]).to(dtype), torch.as_tensor(labels), weight.to(dtype)


def run(head, steps=STEPS, rank=0, world_size=1, labels=None, dtype=torch.float64):
    """Per step: (loss, this rank's embedding grad, centre grad, {loss parameter: grad}); the sampling RNG is
    reset per step so that two heads sample the same centres."""
    rows = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
    results = []
    for step in range(steps):
        embeddings, step_labels, weight = problem(step, dtype, labels)
        torch.manual_seed(1000 + step)
        shard = weight[head.class_start : head.class_start + head.num_local]
        results.append(head_step(head, embeddings[rows], step_labels[rows], shard))
    return results


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = max(float(expected.abs().max()), float(actual.abs().max()), 1e-300)
    return float((actual - expected).abs().max()) / scale


def assert_same(chunked, dense, rtol: float, where: str) -> None:
    for step, (mine, ref) in enumerate(zip(chunked, dense, strict=True)):
        for what, a, b in zip(("loss", "embedding grad", "centre grad"), mine[:3], ref[:3], strict=True):
            error = relative_error(a, b)
            assert error <= rtol, f"{where}, step {step}: {what} differs by {error:.2e} (relative)"
        assert mine[3].keys() == ref[3].keys()
        for key in ref[3]:
            error = relative_error(mine[3][key], ref[3][key])
            assert error <= rtol, f"{where}, step {step}: grad of {key} differs by {error:.2e}"


def budget_for(chunks: int, width: int, dtype=torch.float64) -> float:
    """head_chunk_budget (GiB) that keeps exactly `chunks` chunks of `width` columns."""
    return chunks * BATCH * width * torch.empty((), dtype=dtype).element_size() / 2**30


CHUNKINGS = {  # name -> (head_chunk, budget in GiB)
    "width 1": (1, 4.0),
    "width 3, short last chunk": (3, 4.0),
    "width 4, two of three chunks kept": (4, budget_for(2, 4)),
    "width 3, all recomputed": (3, 0.0),
    "one chunk": (CLASSES, 4.0),
    "wider than K": (64, 4.0),
    "auto": ("auto", 4.0),
}


@pytest.mark.parametrize("sample_rate", [1.0, 0.6])
@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float64_equals_dense_head(name, chunking, sample_rate):
    chunk, budget = CHUNKINGS[chunking]
    dense = run(make(name, 0, sample_rate))
    chunked_head = make(name, chunk, sample_rate, budget)
    chunked = run(chunked_head)
    assert_same(chunked, dense, 1e-12, f"{name}, {chunking}, sample_rate {sample_rate}")
    chunking_used = chunked_head.last_chunking
    assert chunking_used["online"] == 0  # s = 16 in float64: exps unshifted
    if sample_rate == 1.0 and chunk != "auto":
        chunks = math.ceil(CLASSES / min(chunk, CLASSES))
        kept = {4.0: chunks, 0.0: 0}.get(budget, 2)
        assert (chunking_used["chunks"], chunking_used["kept"]) == (chunks, kept)


@pytest.mark.parametrize("name", ["arcface", "magface+unpg", "uss+unpg"])
def test_chunked_head_matches_the_naive_reference(name):
    """The chunked head against the independent float64 reference built scalar by scalar (USS: from the
    second step on, against the bank the first steps wrote and the bias the step used)."""
    head = make(name, 3)
    uss = head.losses[0] if name.startswith("uss") else None
    bank = {}
    for step in range(STEPS):
        embeddings, labels, weight = problem(step)
        fast = head_step(head, embeddings, labels, weight)
        used_bias = (uss.bias.detach().clone(),) if uss is not None else ()  # initialised on the first bank

        def reference(x, w, *bias, labels=labels, bank=bank):
            uss_options = {"weight": 1.0, "m": 0.1, "bank": bank, "b": bias[0]} if bias and bank else None
            return naive_loss(
                x,
                labels,
                w,
                SCALE,
                COSFACE if uss is not None else ARCFACE,
                magface=MagFace.DEFAULTS if "magface" in name else None,
                unpg_wisk=1.0 if name == "magface+unpg" else 1.5 if "unpg" in name else "off",
                uss=uss_options,
            )

        assert_same_step(fast, naive_grads(reference, embeddings, weight, used_bias))
        if uss is not None:
            bank = {j: uss.bank[j].clone() for j in range(CLASSES) if bool(uss.written[j])}


def test_a_chunk_without_target_and_every_target_in_one_chunk():
    # width 3 over 11 columns: chunks [0,3) [3,6) [6,9) [9,11); every label in [3, 6): one chunk holds all
    # targets, three hold none
    labels = torch.tensor([3, 3, 4, 5, 4, 3, 5, 5, 4, 3, 4, 5])
    for name in ("arcface", "magface+unpg"):
        dense = run(make(name, 0), labels=labels)
        assert_same(run(make(name, 3), labels=labels), dense, 1e-12, f"{name}, targets in one chunk")
        assert_same(run(make(name, 3, budget=0.0), labels=labels), dense, 1e-12, f"{name}, recomputed")
    # every label in the short last chunk [9, 11)
    labels = torch.tensor([9, 10] * 6)
    assert_same(run(make("unpg", 3), labels=labels), run(make("unpg", 0), labels=labels), 1e-12, "last chunk")


def test_online_shift_equals_the_unshifted_exps(monkeypatch):
    """Where e^{+-s} would not fit the dtype the head keeps a running row maximum per chunk; forced here."""
    dense = run(make("magface+unpg", 0, 0.6))
    monkeypatch.setattr(chunked_softmax, "exps_fit_unshifted", lambda *args: False)
    for chunk, budget in ((3, 4.0), (3, 0.0), (4, budget_for(1, 4))):
        head = make("magface+unpg", chunk, 0.6, budget)
        chunked = run(head)
        assert head.last_chunking["online"] == 1
        assert_same(chunked, dense, 1e-12, f"online, chunk {chunk}, budget {budget}")


def test_when_the_exps_need_a_shift():
    assert exps_fit_unshifted(64.0, 2_000_000, torch.float32)  # arcface_torch's s on a WebFace42M head
    assert not exps_fit_unshifted(100.0, 1000, torch.float32)  # e^100 overflows float32
    assert exps_fit_unshifted(100.0, 10**9, torch.float64)


def test_float32_large_scale_takes_the_online_path_and_agrees():
    """s = 100 in float32 (e^100 overflows): the running maximum keeps the exps finite."""
    dense = run(make("unpg", 0, dtype=torch.float32, scale=100.0), dtype=torch.float32)
    head = make("unpg", 3, dtype=torch.float32, scale=100.0)
    chunked = run(head, dtype=torch.float32)
    assert head.last_chunking["online"] == 1 and all(torch.isfinite(r[0]) for r in chunked)
    assert_same(chunked, dense, 2e-5, "float32, s = 100")


def test_float32_agrees_to_rounding():
    """B = 64, C = 2000, D = 32, s = 64: chunked float32 vs dense float32, and both against float64."""
    g = torch.Generator().manual_seed(5)
    embeddings = torch.randn(64, 32, generator=g, dtype=torch.float64) * 20
    labels = torch.randint(0, 2000, (64,), generator=g)
    weight = torch.randn(2000, 32, generator=g, dtype=torch.float64) * 0.01

    def step(chunk, dtype):
        head = PartialFC(CombinedMarginLoss(64.0, *ARCFACE), 32, 2000, losses=[UNPG()], head_chunk=chunk).to(dtype)
        return head_step(head, embeddings.to(dtype), labels, weight.to(dtype))

    truth = step(0, torch.float64)
    dense, chunked = step(0, torch.float32), step(300, torch.float32)
    for what, c, d, t in zip(("loss", "embedding grad", "centre grad"), chunked, dense, truth, strict=False):
        assert relative_error(c, d.to(c.dtype)) <= 2e-5, f"{what}: chunked vs dense float32"
        # as close to the float64 truth as the dense float32 head is, within a few roundings
        assert relative_error(c.double(), t) <= 4 * relative_error(d.double(), t) + 1e-6, f"{what}: vs float64"


def test_centres_parallel_to_an_embedding_where_rounding_takes_cos_past_one():
    """A centre parallel and one anti-parallel to an embedding, chosen (by seed) so that the dense head's cosines
    round past +1 and -1 and its clamp acts: loss and gradients still agree."""
    found = {}
    for seed in range(400):
        g = torch.Generator().manual_seed(seed)
        embeddings, labels, weight = problem(0)
        embeddings[0] = torch.randn(DIM, generator=g, dtype=torch.float64) * 7
        weight[5], weight[6] = 2.5 * embeddings[0], -2.5 * embeddings[0]
        cos = F.normalize(embeddings[:1]) @ F.normalize(weight).t()
        if float(cos[0, 5]) > 1:
            found.setdefault("parallel", (embeddings, labels, weight))
        if float(cos[0, 6]) < -1:
            found.setdefault("anti-parallel", (embeddings, labels, weight))
        if len(found) == 2:
            break
    assert len(found) == 2, "no seed took a cosine past +-1"
    for kind, (embeddings, labels, weight) in found.items():
        for target in (2, 5):  # the parallel centre as a negative, then as the target
            labels = labels.clone()
            labels[0] = target
            dense = head_step(make("magface+unpg", 0), embeddings, labels, weight)
            for chunk in (3, CLASSES):
                chunked = head_step(make("magface+unpg", chunk), embeddings, labels, weight)
                assert_same([chunked], [dense], 1e-12, f"{kind}, target {target}, chunk {chunk}")


def test_consecutive_steps_reuse_the_buffer_and_two_forwards_before_backward():
    head, dense = make("unpg", 3), make("unpg", 0)
    first = run(head, steps=1)
    memory = head._workspace.data_ptr()
    both = first + run(head, steps=2)[1:]
    assert head._workspace.data_ptr() == memory  # the second step kept its exps in the first one's buffer
    assert_same(both, run(dense, steps=2), 1e-12, "reused buffer")
    # two forwards, then one backward of their sum: the second must not reuse the first's live buffer
    totals = []
    for model in (head, dense):
        model.zero_grad(set_to_none=True)
        x0, y0, w = problem(0)
        x1, y1, _ = problem(1)
        with torch.no_grad():
            model.weight.copy_(w)
        a, b = x0.clone().requires_grad_(True), x1.clone().requires_grad_(True)
        (model(a, y0) + model(b, y1)).backward()
        totals.append((a.grad, b.grad, model.weight.grad.clone()))
    for mine, ref in zip(totals[0], totals[1], strict=True):
        assert relative_error(mine, ref) <= 1e-12


def test_backward_twice_and_no_grad():
    head = make("arcface", 3)
    x, labels, weight = problem(0)
    with torch.no_grad():
        head.weight.copy_(weight)
        loss_no_grad = head(x, labels)
    assert head.last_chunking["kept"] == 0  # nothing kept without a graph
    x = x.clone().requires_grad_(True)
    loss = head(x, labels)
    assert relative_error(loss.detach(), loss_no_grad) <= 1e-14
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran twice for one forward.*head_chunk = 0"):
        loss.backward()


def test_under_autocast_the_products_are_half_and_agree_to_half_rounding():
    """fp16=True: the dense head computes its cosine matmul under autocast (bfloat16 on CPU); so does the chunked."""
    embeddings, labels, weight = problem(0, torch.float32)
    results = []
    for chunk in (0, 3):
        head = PartialFC(margin_of("arcface"), DIM, CLASSES, fp16=True, losses=[UNPG()], head_chunk=chunk)
        results.append(head_step(head, embeddings, labels, weight))
    for what, chunked, dense in zip(("loss", "embedding grad", "centre grad"), results[1], results[0], strict=False):
        assert relative_error(chunked, dense) <= 3e-2, what


class ReadsLogits(PartialFCLoss):
    name = "reads_logits"

    def denominator_terms(self, ctx):
        return [Term(torch.logsumexp(ctx.logits * ctx.scale, dim=1), "partial")]


class TargetPenalty(PartialFCLoss):
    """A partial auxiliary loss on the target cosines alone: lambda/B sum_i (1 - c_{i,y_i})^2."""

    name = "target_penalty"

    def auxiliary_losses(self, ctx):
        return [Term(0.5 * ((1 - ctx.shard_target_cos) ** 2).sum() / ctx.labels.numel(), "partial")]


def test_refusals_are_one_line_naming_the_loss_and_the_fix():
    with pytest.raises(ValueError, match="loss 'npcface' rewrites logits beyond the target.*head_chunk = 0"):
        PartialFC(margin_of("arcface"), DIM, CLASSES, losses=[NPCFace()], head_chunk=4)
    with pytest.raises(ValueError, match="interclass_filtering_threshold=0.2.*head_chunk = 0"):
        PartialFC(CombinedMarginLoss(SCALE, *ARCFACE, 0.2), DIM, CLASSES, head_chunk="auto")

    class NoPsi(torch.nn.Module):
        s = SCALE

        def forward(self, logits, labels):
            return logits * self.s

    with pytest.raises(TypeError, match="needs a margin with psi.*NoPsi lacks"):
        PartialFC(NoPsi(), DIM, CLASSES, head_chunk=4)
    for bad in (-1, 1.5, True, "big"):
        with pytest.raises(ValueError, match=f"head_chunk={bad!r} must be 0"):
            PartialFC(margin_of("arcface"), DIM, CLASSES, head_chunk=bad)
    with pytest.raises(ValueError, match="head_chunk_budget=-1 must be a number of GiB >= 0"):
        PartialFC(margin_of("arcface"), DIM, CLASSES, head_chunk=4, head_chunk_budget=-1)
    head = PartialFC(margin_of("arcface"), DIM, CLASSES, losses=[ReadsLogits()], head_chunk=4).double()
    x, labels, weight = problem(0)
    with pytest.raises(
        RuntimeError, match="loss 'reads_logits' reads ctx.logits.*ctx.shard_target_cos.*head_chunk = 0"
    ):
        head_step(head, x, labels, weight)


def test_a_loss_on_the_target_cosines_runs_chunked():
    dense = run(PartialFC(margin_of("arcface"), DIM, CLASSES, losses=[TargetPenalty()]).double())
    chunked = run(PartialFC(margin_of("arcface"), DIM, CLASSES, losses=[TargetPenalty()], head_chunk=3).double())
    assert_same(chunked, dense, 1e-12, "target penalty")


def test_auto_width():
    assert chunk_width("auto", 512, 100_000, 4) == 2048  # a 4 MiB (B, N) block
    assert chunk_width("auto", 24_576, 31_250, 4) == chunked_softmax.AUTO_CHUNK_MIN
    assert chunk_width("auto", 8, 100_000, 4) == chunked_softmax.AUTO_CHUNK_MAX
    assert chunk_width("auto", 512, 300, 4) == 300 and chunk_width(7, 512, 5, 4) == 5


def test_config_key_default_validation_and_build_head():
    cfg = get_config(DEMO)
    assert cfg.head_chunk == 0 and cfg.head_chunk_budget == 4.0  # today's head unless asked
    assert build_head(cfg, num_classes=10).head_chunk == 0
    head = build_head(get_config(DEMO, head_chunk="auto", head_chunk_budget=0.5), num_classes=10)
    assert (head.head_chunk, head.head_chunk_budget) == ("auto", 0.5)
    for bad in (-2, 1.5, "all"):
        with pytest.raises(ConfigError, match=f"head_chunk={bad!r} must be 0 .*'auto'"):
            get_config(DEMO, head_chunk=bad)
    with pytest.raises(ConfigError, match="head_chunk_budget=-1 must be a number of GiB >= 0"):
        get_config(DEMO, head_chunk_budget=-1)
    with pytest.raises(ConfigError, match="head_chunk=512: loss 'npcface' rewrites logits.*head_chunk = 0"):
        get_config(DEMO, head_chunk=512, loss="npcface")
    with pytest.raises(ConfigError, match="interclass_filtering_threshold=0.3.*set one of them to 0"):
        get_config(DEMO, head_chunk=512, interclass_filtering_threshold=0.3)
    assert PartialFC_V2_UNPG(margin_of("arcface"), DIM, CLASSES, head_chunk=64).head_chunk == 64


# ----------------------------------------------------------------------------- gloo ranks
RANK_CASES = {  # name -> (loss, sample_rate, head_chunk, budget)
    "arcface": ("arcface", 1.0, 3, 4.0),
    "arcface sampled": ("arcface", 0.6, 2, 4.0),
    "unpg replicated, recomputed": ("unpg", 1.0, 3, 0.0),
    "unpg sharded": ("unpg sharded", 1.0, "auto", 4.0),
    "unpg sharded sampled": ("unpg sharded", 0.6, 3, budget_for(1, 3)),
    "magface+unpg sharded": ("magface+unpg", 1.0, 4, 4.0),
    "uss+unpg": ("uss+unpg", 0.6, 3, 4.0),
}


def rank_steps(rank: int, world_size: int) -> dict:
    results = {}
    for case, (name, sample_rate, chunk, budget) in RANK_CASES.items():
        dense = run(make(name, 0, sample_rate), rank=rank, world_size=world_size)
        head = make(name, chunk, sample_rate, budget)
        results[case] = (dense, run(head, rank=rank, world_size=world_size), head.class_start)
    # positives only (sample_rate 0) with every label on rank 0's classes: the other ranks hold K = 0 centres
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
    dense = run(make("unpg sharded", 0, 0.0), rank=rank, world_size=world_size, labels=labels)
    head = make("unpg sharded", 3, 0.0)
    chunked = run(head, rank=rank, world_size=world_size, labels=labels)
    results["K = 0 shards"] = (dense, chunked, head.class_start, head.weight_index.numel())
    return results


@pytest.fixture(scope="module", params=[2, 4])
def rank_results(request):
    return request.param, run_on_ranks(rank_steps, request.param)


@pytest.mark.slow
def test_ranks_chunked_equals_dense_and_one_process(rank_results):
    world_size, per_rank = rank_results
    single = rank_steps(0, 1)
    b = BATCH // world_size
    for rank, results in enumerate(per_rank):
        for case, (dense, chunked, start, *_) in results.items():
            where = f"{case}, rank {rank} of {world_size}"
            assert_same(chunked, dense, 1e-12, f"{where}: chunked vs dense")
            if case.endswith("sampled") or case == "uss+unpg":
                continue  # each rank samples its own centres: no one-process counterpart
            one = single[case][1]
            for step, (mine, ref) in enumerate(zip(chunked, one, strict=True)):
                assert relative_error(mine[0], ref[0]) <= 1e-12, f"{where}, step {step}: loss vs one process"
                # the head's convention: this rank's rows get world_size x the one-process gradient
                local = world_size * ref[1][rank * b : (rank + 1) * b]
                assert relative_error(mine[1], local) <= 1e-12, f"{where}, step {step}: embedding grad"
                centres = ref[2][start : start + mine[2].shape[0]]
                assert relative_error(mine[2], centres) <= 1e-12, f"{where}, step {step}: centre grad"
        assert (results["K = 0 shards"][3] == 0) == (rank > 0), "only rank 0 holds the batch's classes"


@pytest.mark.slow
def test_torchrun_training_with_the_chunked_head_tracks_the_dense_head(tmp_path):
    """The recipe end to end: 2 gloo ranks, the embedded UNPG config, head_chunk "auto" vs 0, same seed."""
    import re

    from tests.support.torchrun import torchrun_train

    losses = {}
    for chunk in (0, "auto"):
        settings = {"output": str(tmp_path / f"run_{chunk}"), "max_steps": 4, "frequent": 1, "num_workers": 0}
        settings.update(batch_size=8, val_targets=[], lr=0.001, head_chunk=chunk)
        settings["synthetic"] = {"num_identities": 40, "images_per_identity": 8}
        result = torchrun_train(2, settings)
        assert result.returncode == 0, result.stderr[-2000:]
        found = re.findall(r"Loss (\S+) .*Global Step: (\d+)", result.stdout + result.stderr)
        losses[chunk] = {int(step): float(value) for value, step in found}
    assert sorted(losses[0]) == sorted(losses["auto"]) == [1, 2, 3, 4]
    for step, value in losses[0].items():  # float32 head, another summation order: the logged 4 decimals
        assert abs(losses["auto"][step] - value) <= 1e-4 * abs(value), (step, losses)
