"""Sharded UNPG term vs the replicated term (whole B x B in one process) and the naive float64 column append.

The sharded share enters a stand-in head: a plain softmax whose classes are split across ranks and whose
denominator is an all-reduced sum of exps, to which each rank adds e^{share_r}. Every rank back-propagates
loss / W through autograd all-reduces (whose backward sums the W identical gradients), so each rank's
class shard gets the one-process gradient and, through the gather (sum over ranks, x W), each rank's local
embeddings get W x the one-process gradient.
"""

import math

import pytest
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F

from plugins.partial_fc.collectives import all_gather_no_grad, all_gather_with_grad
from plugins.unpg.sharded_pairs import combine_shares, sharded_pair_share
from plugins.unpg.unpg import UNPG
from tests.support.distributed_harness import run_on_ranks
from tests.support.naive_reference import naive_unpg_loss
from tests.support.unpg_cases import BATCH, CASES, CLASSES, SCALE, case_data


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce(tensor: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    return dist_nn.all_reduce(tensor, op=op) if _initialized() else tensor


def stand_in_loss(gathered, gathered_labels, weight_shard, class_start, share):
    """Mean softmax cross-entropy over classes split across ranks plus the shared term sum_r e^{share_r}."""
    logits = SCALE * F.normalize(gathered, dim=1) @ F.normalize(weight_shard, dim=1).t()  # (B, C_r)
    peak = logits.detach().max(dim=1).values
    if share is not None:
        peak = torch.maximum(peak, share.detach())
    if _initialized():
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    local_sum = (logits - peak[:, None]).exp().sum(dim=1)
    if share is not None:
        local_sum = local_sum + (share - peak).exp()
    on_shard = (gathered_labels >= class_start) & (gathered_labels < class_start + weight_shard.shape[0])
    column = (gathered_labels - class_start).clamp(0, weight_shard.shape[0] - 1)
    target = torch.where(on_shard, logits.gather(1, column[:, None])[:, 0], torch.zeros_like(peak))
    return (_all_reduce(local_sum).log() + peak - _all_reduce(target)).mean()


def sharded_step(rank, world_size, name):
    embeddings, labels, weight, wisk = case_data(name)
    b, c = BATCH // world_size, CLASSES // world_size
    local = embeddings[rank * b : (rank + 1) * b].clone().requires_grad_(True)
    shard = weight[rank * c : (rank + 1) * c].clone().requires_grad_(True)
    local_labels = labels[rank * b : (rank + 1) * b]
    gathered = all_gather_with_grad(local)
    gathered_labels = all_gather_no_grad(local_labels)
    result = sharded_pair_share(
        local,
        gathered,
        local_labels,
        gathered_labels,
        SCALE,
        wisk=wisk if wisk is not None else 1.5,
        filter=wisk is not None,
    )
    loss = stand_in_loss(gathered, gathered_labels, shard, rank * c, result.share)
    (loss / world_size).backward()
    out = {
        "loss": loss.detach(),
        "x_grad": local.grad.clone(),
        "w_grad": shard.grad.clone(),
        "stats": result.stats,
        "term": None,
    }
    if result.share is not None:  # the term itself and its gradient, through combine_shares
        local.grad = None
        result = sharded_pair_share(
            local,
            all_gather_with_grad(local),
            local_labels,
            gathered_labels,
            SCALE,
            wisk=wisk if wisk is not None else 1.5,
            filter=wisk is not None,
        )
        term = combine_shares(result.share)
        term.backward()
        out.update(term=term.detach(), term_x_grad=local.grad.clone())
    return out


def sharded_worker(rank, world_size):
    return {name: sharded_step(rank, world_size, name) for name in CASES}


def replicated(name):
    """Loss and gradients with UNPG's replicated term on the whole batch in one process (and the term alone)."""
    embeddings, labels, weight, wisk = case_data(name)
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    unpg = UNPG(wisk=wisk if wisk is not None else 1.5, filter=wisk is not None)
    term = unpg(x, labels, SCALE)
    logits = SCALE * F.normalize(x, dim=1) @ F.normalize(w, dim=1).t()
    if term.log_sum_exp is not None:
        logits = torch.cat([logits, term.log_sum_exp.expand(BATCH, 1)], dim=1)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    out = {"loss": loss.detach(), "x_grad": x.grad.clone(), "w_grad": w.grad.clone(), "stats": term.stats, "term": None}
    if term.log_sum_exp is not None:
        x2 = embeddings.clone().requires_grad_(True)
        lse = unpg(x2, labels, SCALE).log_sum_exp
        lse.backward()
        out.update(term=lse.detach(), term_x_grad=x2.grad.clone())
    return out


def naive(name):
    embeddings, labels, weight, wisk = case_data(name)
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = naive_unpg_loss(x, labels, w, SCALE, (1.0, 0.0, 0.0), wisk)
    loss.backward()
    return {"loss": loss.detach(), "x_grad": x.grad, "w_grad": w.grad}


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12, floor: float = 1e-300) -> bool:
    """Equal to rtol relative to the larger tensor's scale, or to `floor` when both are rounding noise
    around 0 (float64 rounding is ~1e-16)."""
    return float((a - b).abs().max()) <= rtol * max(float(b.abs().max()), float(a.abs().max()), floor)


def check(per_rank: list[dict]) -> None:
    world_size = len(per_rank)
    b, c = BATCH // world_size, CLASSES // world_size
    for name in CASES:
        reference, slow = replicated(name), naive(name)
        assert close(reference["loss"], slow["loss"]) and close(reference["x_grad"], slow["x_grad"]), name
        for rank, result in enumerate(r[name] for r in per_rank):
            where = f"{name}, rank {rank} of {world_size}"
            for expected in (reference, slow):
                assert close(result["loss"], expected["loss"]), f"{where}: loss"
                # the project's convention: local rows get world_size x the one-process gradient
                assert close(result["x_grad"], world_size * expected["x_grad"][rank * b : (rank + 1) * b]), (
                    f"{where}: embedding gradient"
                )
                assert close(result["w_grad"], expected["w_grad"][rank * c : (rank + 1) * c]), f"{where}: class grad"
            assert int(result["stats"]["pairs_total"]) == int(reference["stats"]["pairs_total"]), where
            if reference["term"] is None:
                assert result["term"] is None, where
                continue
            assert close(result["term"], reference["term"]), f"{where}: term"
            # all equal: every pair's cosine is flat in both embeddings, so the exact term gradient is 0 and
            # both sides hold rounding noise; compare on the scale s / |x| of a single pair's gradient
            floor = SCALE / float(case_data(name)[0].norm(dim=1).min()) if name == "all equal" else 1e-300
            assert close(
                result["term_x_grad"], world_size * reference["term_x_grad"][rank * b : (rank + 1) * b], floor=floor
            ), f"{where}: term gradient"
            for quartile in ("q1", "q3"):
                if quartile in reference["stats"]:
                    # S[a, c] and S[c, a] come from different matrix products and may differ in the last bit,
                    # so quartiles are equal to rounding; exactly equal where the cosines are exact
                    got, want = result["stats"][quartile], reference["stats"][quartile]
                    assert got == want if name.startswith(("lattice", "all equal")) else close(got, want), (
                        f"{where}: {quartile}"
                    )


def test_one_process_without_a_process_group():
    check([sharded_worker(0, 1)])


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_equal_replicated_and_naive(world_size):
    check(run_on_ranks(sharded_worker, world_size))


def test_cases_cover_the_edges():
    """Lattice cases: negative pairs exactly at a whisker bound (kept), and, with wisk 0, pairs outside
    (dropped); all equal: IQR = 0 and every pair kept. So the equality tests above exercise the edges."""
    for name, outside in (("lattice", False), ("lattice wisk 0", True)):
        embeddings, labels, _, wisk = case_data(name)
        stats = UNPG(wisk=wisk)(embeddings, labels, SCALE).stats
        unit = F.normalize(embeddings, dim=1)
        negatives = (unit @ unit.t())[torch.triu(labels[:, None] != labels[None, :], diagonal=1)]
        iqr = stats["q3"] - stats["q1"]
        lower, upper = stats["q1"] - wisk * iqr, stats["q3"] + wisk * iqr
        assert (negatives == upper).any(), name
        assert ((negatives < lower) | (negatives > upper)).any() == outside, name
        assert (int(stats["pairs_kept"]) < int(stats["pairs_total"])) == outside, name
    embeddings, labels, _, _ = case_data("all equal")
    stats = UNPG()(embeddings, labels, SCALE).stats
    assert stats["q1"] == stats["q3"] and int(stats["pairs_kept"]) == int(stats["pairs_total"]) > 0


def test_doubled_multiset_has_the_same_floor_quartiles():
    """floor(floor(2 q n) / 2) = floor(q n): the quartiles of N doubled are those of N, for every n."""
    g = torch.Generator().manual_seed(5)
    for n in range(1, 200):
        values = torch.randint(0, 7, (n,), generator=g).double() + torch.rand(n, generator=g, dtype=torch.float64)
        single, doubled = torch.sort(values).values, torch.sort(torch.cat([values, values])).values
        for num in (1, 3):
            assert (2 * n * num // 4) // 2 == n * num // 4
            assert doubled[(2 * n * num) // 4] == single[(n * num) // 4]
        assert math.isclose(
            torch.logsumexp(torch.cat([values, values]), 0).item(),
            torch.logsumexp(values, 0).item() + math.log(2),
            rel_tol=1e-14,
        )


def unequal_worker(rank, world_size):
    embeddings, labels, _, _ = case_data("random")
    rows = [slice(0, 5), slice(5, 8)][rank]  # 5 rows on rank 0, 3 on rank 1
    try:
        sharded_pair_share(embeddings[rows], embeddings, labels[rows], labels, SCALE)
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.slow
def test_unequal_batches_are_a_clear_error_on_every_rank():
    messages = run_on_ranks(unequal_worker, 2)
    assert all(m is not None and "equal per-rank batches" in m and "from 3 to 5" in m for m in messages), messages


def test_bad_arguments_are_clear_errors():
    embeddings, labels, _, _ = case_data("random")
    with pytest.raises(ValueError, match="wisk=-1"):
        sharded_pair_share(embeddings, embeddings, labels, labels, SCALE, wisk=-1)
    with pytest.raises(ValueError, match="one label per embedding row"):
        sharded_pair_share(embeddings, embeddings, labels[:3], labels, SCALE)
    with pytest.raises(ValueError, match="gathered batch of 7"):
        sharded_pair_share(embeddings, embeddings[:7], labels, labels[:7], SCALE)
