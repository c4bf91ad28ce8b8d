"""UNPG's negative-pair term at scale: replicated (every rank builds B x B) vs sharded (rank r builds b x B).

Emulates one rank of a world of W ranks at b = 384 images per rank (upstream's largest configs: 64 GPUs x
384), so the gathered batch is B = W b, embeddings D = 512, CPU fp32, one thread. One step = forward and
backward of the term alone (the head step around it comes later):

  replicated  plugins/unpg/unpg.py on the whole gathered batch: similarities B x B, quartiles over all
              |N| ~ B^2 / 2 negative pairs, log-sum-exp, backward into the B gathered embeddings;
  sharded     plugins/unpg/sharded_pairs.py: block b x B, quartiles by the distributed radix selection,
              this rank's log-sum-exp share, backward into the b local and B gathered embeddings.

What is simulated: a world of W ranks inside one process. torch.distributed is replaced by a stand-in
whose all-reduce leaves each tensor as it is, so the sharded step pays its full local work, but its
collectives (one for the batch sizes, 4 rounds of 1-2 x 256 int64 histogram counts; a few KB in all) are
free and the selected quartiles are those of the local block rather than of the world. Both steps see the
same gathered embeddings; the gather itself (the same for both) is not part of the step.

Time: median of interleaved repeats (replicated, sharded, replicated, ...) with min-max. Memory: peak of
live bytes in PyTorch's CPU allocator during one step (torch.profiler, profile_memory), inputs excluded;
BLAS scratch and Python objects are not counted. The sharded peak is also measured at D = 32, where it is
the block's cost (bytes per b B entry), and the growth from D = 32 to 512 gives the bytes per B D element.
The replicated step runs only where its estimated peak (20 bytes per B^2 entry; 15.7 measured at W = 8)
fits in --memory-budget; other rows print the estimate.

    python benchmarks/bench_unpg_scale.py                              # W = 8 16 32 64, 5 repeats
    python benchmarks/bench_unpg_scale.py --worlds 8 16 --repeats 7
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import time
from unittest import mock

import torch
import torch.distributed as dist
from torch.profiler import ProfilerActivity, profile

from plugins.unpg.sharded_pairs import sharded_pair_share
from plugins.unpg.unpg import UNPG

PER_RANK, DIM, SCALE, WISK = 384, 512, 64.0, 1.5
SMALL_DIM = 32  # second embedding width, to split the sharded peak into per-block-entry and per-(B x D) bytes
REPLICATED_BYTES_PER_ENTRY = 20  # peak / B^2 of the replicated step, measured at W = 8 and 16


@contextlib.contextmanager
def emulated_rank(world_size: int):
    """torch.distributed as seen by one rank of `world_size`, with every collective a no-op."""
    with mock.patch.object(dist, "is_initialized", lambda: True), \
            mock.patch.object(dist, "get_world_size", lambda group=None: world_size), \
            mock.patch.object(dist, "all_reduce", lambda tensor, op=None, group=None, async_op=False: None):
        yield


class Problem:
    """Gathered embeddings (B, D) and labels of one step, and rank 0's local rows as their own leaf."""

    def __init__(self, world_size: int, dim: int = DIM, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.world_size, self.batch = world_size, world_size * PER_RANK
        self.gathered = torch.randn(self.batch, dim, generator=g).requires_grad_(True)
        # WebFace-like: ~2 images per identity in a batch, so almost every pair is negative
        self.labels = torch.randint(0, self.batch // 2, (self.batch,), generator=g)
        self.local = self.gathered.detach()[:PER_RANK].clone().requires_grad_(True)
        self.unpg = UNPG(wisk=WISK)

    def replicated(self) -> None:
        self.unpg(self.gathered, self.labels, SCALE).log_sum_exp.backward()

    def sharded(self) -> None:
        with emulated_rank(self.world_size):
            share = sharded_pair_share(self.local, self.gathered, self.labels[:PER_RANK], self.labels, SCALE,
                                       wisk=WISK).share
            share.backward()

    def clear(self) -> None:
        self.gathered.grad = self.local.grad = None


def peak_bytes(fn) -> int:
    """Peak of live PyTorch CPU allocator bytes above the start while fn runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    records.sort(key=lambda event: event.start_ns())
    return max(itertools.accumulate((event.nbytes() for event in records), initial=0))


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def measure(world_size: int, repeats: int, budget: int) -> dict:
    problem = Problem(world_size)
    run_replicated = REPLICATED_BYTES_PER_ENTRY * problem.batch ** 2 <= budget
    row = {"W": world_size, "B": problem.batch, "replicated": run_replicated, "time": {"replicated": [], "sharded": []}}
    variants = ["replicated", "sharded"] if run_replicated else ["sharded"]
    row["peak"] = {}
    for variant in variants:  # warm-up and memory, one step each
        row["peak"][variant] = peak_bytes(getattr(problem, variant))
        problem.clear()
    # the block's cost per entry: the sharded peak at D = 32, where (B, D) tensors are a few % of b x B
    narrow_peak = peak_bytes(Problem(world_size, dim=SMALL_DIM).sharded)
    row["alpha"] = narrow_peak / (PER_RANK * problem.batch)
    row["beta"] = (row["peak"]["sharded"] - narrow_peak) / (problem.batch * (DIM - SMALL_DIM))
    for _ in range(repeats):
        for variant in variants:
            row["time"][variant].append(seconds(getattr(problem, variant)))
            problem.clear()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[8, 16, 32, 64], help="world sizes W (default 8 16 32 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per variant, interleaved (default 5)")
    parser.add_argument("--memory-budget", type=float, default=4.0,
                        help="GiB the replicated step may take by its estimate; larger W print the estimate (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if min(args.worlds) < 1 or args.repeats < 1 or args.threads < 1:
        print("error: --worlds, --repeats and --threads must be >= 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    rows = []
    for world_size in args.worlds:
        print(f"W = {world_size} ...", file=sys.stderr, flush=True)
        rows.append(measure(world_size, args.repeats, int(args.memory_budget * 2 ** 30)))
    print(f"\nUNPG term per rank, one step (forward + backward), b = {PER_RANK} per rank, D = {DIM}, CPU fp32, "
          f"{args.threads} thread(s); time: median (min-max) of {args.repeats} interleaved repeats")
    header = (f"{'W':>3} | {'B':>6} | {'replicated s':>22} | {'sharded s':>22} | {'time s/r':>8} | "
              f"{'replicated peak':>15} | {'sharded peak':>12} | {'mem s/r':>7} | {'bytes/(b B)':>11} | {'bytes/(B D)':>11}")
    print(header)
    print("-" * len(header))
    for row in rows:
        sharded_time, sharded_peak = row["time"]["sharded"], row["peak"]["sharded"]
        if row["replicated"]:
            replicated_time, replicated_peak = row["time"]["replicated"], row["peak"]["replicated"]
            ratio = statistics.median(s / r for s, r in zip(sharded_time, replicated_time, strict=False))
            cells = (spread(replicated_time), f"{ratio:.4f}", fmt_bytes(replicated_peak),
                     f"{sharded_peak / replicated_peak:.4f}")
        else:
            estimate = REPLICATED_BYTES_PER_ENTRY * row["B"] ** 2
            cells = ("not run", "-", f"~{fmt_bytes(estimate)} est.", "-")
        print(f"{row['W']:>3} | {row['B']:>6} | {cells[0]:>22} | {spread(sharded_time):>22} | {cells[1]:>8} | "
              f"{cells[2]:>15} | {fmt_bytes(sharded_peak):>12} | {cells[3]:>7} | {row['alpha']:>11.1f} | "
              f"{row['beta']:>11.1f}")
    print(f"bytes/(b B): sharded peak at D = {SMALL_DIM} per block entry (an upper bound on the block's own cost; "
          f"target <= 16); bytes/(B D): (peak at D = {DIM} - peak at D = {SMALL_DIM}) / (B ({DIM} - {SMALL_DIM})), "
          f"the O(B D) part")
    return 0


if __name__ == "__main__":
    sys.exit(main())
