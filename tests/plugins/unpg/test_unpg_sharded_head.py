"""Sharded UNPG inside the real partial-FC head (a "partial" denominator term) vs the replicated term vs the
naive float64 column append, at 1, 2 and 4 gloo ranks: loss, embedding and class-centre gradients."""

import pytest
import torch

from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG, PartialFC_V2_UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss
from tests.support.distributed_harness import run_on_ranks
from tests.support.naive_reference import naive_unpg_loss
from tests.support.unpg_cases import BATCH, CASES, CLASSES, case_data

SCALE = 8.0
MARGINS = (1.0, 0.5, 0.0)  # ArcFace; the head uses the exact margin gradient, as the naive reference does


def head_step(name: str, sharded, rank: int = 0, world_size: int = 1):
    """One forward/backward of the real head on this rank's rows -> (loss, local embedding grad, centre grad,
    {diagnostic: value})."""
    embeddings, labels, weight, wisk = case_data(name)
    unpg = UNPG(wisk=1.5 if wisk is None else wisk, filter=wisk is not None, sharded=sharded)
    head = PartialFC(
        CombinedMarginLoss(SCALE, *MARGINS, gradient="exact"), embeddings.shape[1], CLASSES, losses=[unpg]
    ).double()
    with torch.no_grad():
        head.weight.copy_(weight[head.class_start : head.class_start + head.num_local])
    b = BATCH // world_size
    x = embeddings[rank * b : (rank + 1) * b].clone().requires_grad_(True)
    head.collect_diagnostics = True
    loss = head(x, labels[rank * b : (rank + 1) * b])
    loss.backward()
    stats = {key: value.clone() for key, value in head.last_diagnostics.items()}
    return loss.detach(), x.grad.clone(), head.weight.grad.clone(), head.class_start, stats


def worker(rank, world_size):
    return {(name, sharded): head_step(name, sharded, rank, world_size) for name in CASES for sharded in (True, False)}


def naive(name):
    embeddings, labels, weight, wisk = case_data(name)
    x = embeddings.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = naive_unpg_loss(x, labels, w, SCALE, MARGINS, wisk)
    loss.backward()
    return loss.detach(), x.grad, w.grad


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-12) -> bool:
    """Equal to rtol relative to the larger tensor's scale (float64 rounding is ~1e-16)."""
    return float((a - b).abs().max()) <= rtol * max(float(b.abs().max()), float(a.abs().max()), 1e-300)


def check(per_rank: list[dict]) -> None:
    world_size = len(per_rank)
    b = BATCH // world_size
    for name in CASES:
        # one process, replicated term: the reference every distributed run must reproduce
        loss, x_grad, w_grad, _, stats = head_step(name, sharded=False)
        slow = naive(name)
        assert close(loss, slow[0]) and close(x_grad, slow[1]) and close(w_grad, slow[2]), f"{name}: head vs naive"
        for rank, results in enumerate(per_rank):
            for sharded in (True, False):
                d_loss, d_x_grad, d_w_grad, start, d_stats = results[(name, sharded)]
                where = f"{name}, sharded={sharded}, rank {rank} of {world_size}"
                assert close(d_loss, loss), f"{where}: loss"
                # the head's convention: local rows get world_size x the one-process gradient
                assert close(d_x_grad, world_size * x_grad[rank * b : (rank + 1) * b]), f"{where}: embedding grad"
                assert close(d_w_grad, w_grad[start : start + d_w_grad.shape[0]]), f"{where}: centre grad"
                for key in ("unpg/pairs_total", "unpg/pairs_kept"):
                    assert int(d_stats[key]) == int(stats[key]), f"{where}: {key}"


def test_one_process_sharded_equals_replicated_and_naive():
    check([worker(0, 1)])


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_sharded_equals_replicated_and_naive(world_size):
    check(run_on_ranks(worker, world_size))


def test_auto_shards_only_with_more_than_one_rank():
    assert UNPG().sharded == "auto" and UNPG.DEFAULTS["sharded"] == "auto"
    assert [UNPG(sharded=mode).uses_sharding(world) for mode in ("auto", True, False) for world in (1, 4)] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert PartialFC_V2_UNPG(CombinedMarginLoss(64, 1.0, 0.5, 0.0), 16, 20, sharded=True).unpg.sharded is True


@pytest.mark.parametrize("bad", ["on", "true", 1, None])
def test_bad_sharded_value_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=f"sharded={bad!r} is not one of 'auto', True, False"):
        UNPG(sharded=bad)


def test_config_default_and_override():
    from recipes.arcface_torch.config import get_config
    from recipes.arcface_torch.losses import build_losses

    cfg = get_config("recipes/arcface_torch/configs/synthetic_unpg")
    assert cfg.unpg.sharded == "auto" and build_losses(cfg)[0].sharded == "auto"
    cfg = get_config("recipes/arcface_torch/configs/synthetic_unpg", unpg={"sharded": False})
    assert build_losses(cfg)[0].sharded is False


def unequal_worker(rank, world_size, sharded):
    embeddings, labels, weight, _ = case_data("random")
    rows = [slice(0, 5), slice(5, 8)][rank]  # 5 rows on rank 0, 3 on rank 1
    head = PartialFC(
        CombinedMarginLoss(SCALE, *MARGINS), embeddings.shape[1], CLASSES, losses=[UNPG(sharded=sharded)]
    ).double()
    try:
        head(embeddings[rows], labels[rows])
    except ValueError as error:
        return str(error)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sharded", [True, False])
def test_unequal_batches_are_a_clear_error_on_every_rank(sharded):
    messages = run_on_ranks(unequal_worker, 2, sharded)
    assert all(m is not None and "equal per-rank batches" in m and "from 3 to 5" in m for m in messages), messages


@pytest.mark.slow
def test_torchrun_four_ranks_sharded_tracks_replicated(tmp_path):
    """Real multi-process training: 4 gloo ranks, same seed, sharded vs replicated UNPG, loss step for step."""
    import json
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    out = tmp_path / "losses.json"
    # lr 0.001: a smooth run (at larger rates this tiny network amplifies fp32 rounding ~10x per step, see
    # benchmarks/results/sharded_unpg_torchrun.md)
    result = subprocess.run(
        [sys.executable, "benchmarks/compare_sharded_training.py", "--steps", "5", "--lr", "0.001", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    losses = json.loads(out.read_text())
    assert sorted(losses["sharded"]) == sorted(losses["replicated"]) == ["1", "2", "3", "4", "5"]
    assert losses["replicated"]["5"] < losses["replicated"]["1"]  # it trains
    for step, value in losses["replicated"].items():
        # fp32 head, different summation order: equal to the logged 4 decimals here; 1e-4 relative allowed
        assert abs(losses["sharded"][step] - value) <= 1e-4 * abs(value), (step, losses)
