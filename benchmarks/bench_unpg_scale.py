"""UNPG at scale: the negative-pair term alone, and the whole partial-FC head step around it, per rank.

Part 1 -- the term: replicated (every rank builds B x B) vs sharded (rank r builds b x B).

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

Part 2 -- the head step (--head): one rank's forward + backward of plugins.partial_fc.PartialFC with the
margin softmax alone ("plain"), with replicated UNPG and with sharded UNPG (config.unpg.sharded), b = 384
per rank, D = 512, C_local = --head-classes / W centres on the rank, CPU fp32, ArcFace margin, s = 64.
Simulated: the world around rank 0. The stand-in all-gather copies this rank's rows and fixed rows of the
other W - 1 ranks into the gathered batch (a real copy of B x D); the reduce-scatter of the gathered
gradient copies this rank's rows; all-reduces leave their tensors as they are (so the softmax denominator
sums this shard only, and the quartiles are this block's). Network time is not counted: on a real cluster
each collective adds its latency, the same for the three variants except UNPG's few KB of selection
histograms. Time: median (min-max) of interleaved repeats (plain, replicated, sharded, ...), ratios to
plain of each repeat's pair, median; memory: allocator peak above the inputs as in part 1 ("UNPG extra":
peak minus the plain step's peak). The replicated step runs only where its estimate fits --memory-budget.

    python benchmarks/bench_unpg_scale.py                              # W = 8 16 32 64, 5 repeats
    python benchmarks/bench_unpg_scale.py --worlds 8 16 --repeats 7
    python benchmarks/bench_unpg_scale.py --head --head-classes 2000000 --worlds 8 16 32 64 --repeats 7
    python benchmarks/bench_unpg_scale.py --head --device cuda --amp fp16 --worlds 8 16 32 64 --repeats 7
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import statistics
import sys
import time
from unittest import mock

import torch
import torch.distributed as dist
from torch.profiler import ProfilerActivity, profile

from plugins.partial_fc import PartialFC
from plugins.unpg.sharded_pairs import sharded_pair_share
from plugins.unpg.unpg import UNPG
from recipes.arcface_torch.margin_loss import CombinedMarginLoss

PER_RANK, DIM, SCALE, WISK = 384, 512, 64.0, 1.5
SMALL_DIM = 32  # second embedding width, to split the sharded peak into per-block-entry and per-(B x D) bytes
REPLICATED_BYTES_PER_ENTRY = 20  # peak / B^2 of the replicated step, measured at W = 8 and 16


@contextlib.contextmanager
def emulated_rank(world_size: int):
    """torch.distributed as seen by one rank of `world_size`, with every collective a no-op."""
    with (
        mock.patch.object(dist, "is_initialized", lambda: True),
        mock.patch.object(dist, "get_world_size", lambda group=None: world_size),
        mock.patch.object(dist, "all_reduce", lambda tensor, op=None, group=None, async_op=False: None),
    ):
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
            share = sharded_pair_share(
                self.local, self.gathered, self.labels[:PER_RANK], self.labels, SCALE, wisk=WISK
            ).share
            share.backward()

    def clear(self) -> None:
        self.gathered.grad = self.local.grad = None


def peak_bytes(fn, device: torch.device | None = None) -> int:
    """Peak of live PyTorch allocator bytes above the start while fn runs (the CUDA allocator's own peak
    statistics on a GPU, else the CPU allocator's records)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    records.sort(key=lambda event: event.start_ns())
    return max(itertools.accumulate((event.nbytes() for event in records), initial=0))


def seconds(fn, device: torch.device | None = None) -> float:
    synchronize = torch.cuda.synchronize if device is not None and device.type == "cuda" else lambda *_: None
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def fmt_bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.2f} {unit}"
    return f"{value:.0f} B"


def spread(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def measure(world_size: int, repeats: int, budget: int) -> dict:
    problem = Problem(world_size)
    run_replicated = REPLICATED_BYTES_PER_ENTRY * problem.batch**2 <= budget
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


class EmulatedWorld:
    """torch.distributed as rank 0 of `world_size` sees it: gathers return this rank's rows followed by fixed
    rows of the other ranks (`others`: {dtype: (B - b, ...) tensor}), reduce-scatters keep this rank's chunk,
    all-reduces leave their tensor as it is."""

    def __init__(self, world_size: int, others: dict):
        self.world_size, self.others = world_size, others

    def all_gather(self, parts, tensor, group=None, async_op=False):
        parts[0].copy_(tensor)
        rest = self.others[tensor.dtype].split(tensor.size(0), dim=0)
        for part, source in zip(parts[1:], rest, strict=True):
            part.copy_(source)

    def reduce_scatter(self, output, inputs, op=None, group=None, async_op=False):
        output.copy_(inputs[0])

    @contextlib.contextmanager
    def active(self):
        with (
            mock.patch.object(dist, "is_initialized", lambda: True),
            mock.patch.object(dist, "get_world_size", lambda group=None: self.world_size),
            mock.patch.object(dist, "get_rank", lambda group=None: 0),
            mock.patch.object(dist, "all_reduce", lambda tensor, op=None, group=None, async_op=False: None),
            mock.patch.object(dist, "all_gather", self.all_gather),
            mock.patch.object(dist, "reduce_scatter", self.reduce_scatter),
        ):
            yield


class HeadProblem:
    """Rank 0 of W: local embeddings (b, D) and labels, the other ranks' rows, a head per variant."""

    VARIANTS = ("plain", "replicated", "sharded")

    def __init__(
        self,
        world_size: int,
        classes: int,
        seed: int = 0,
        device: torch.device | None = None,
        amp: torch.dtype | None = None,
    ):
        device = device if device is not None else torch.device("cpu")
        g = torch.Generator().manual_seed(seed)
        batch = world_size * PER_RANK
        self.world_size, self.batch, self.device, self.amp = world_size, batch, device, amp
        labels = torch.randint(0, classes, (batch,), generator=g).to(device)
        labels[1::2] = labels[0::2]  # two images per identity in the batch, as a sampled face batch
        self.local = torch.randn(PER_RANK, DIM, generator=g).to(device).requires_grad_(True)
        self.local_labels = labels[:PER_RANK]
        others = torch.randn(batch - PER_RANK, DIM, generator=g).to(device)
        self.world = EmulatedWorld(world_size, {torch.float32: others, torch.int64: labels[PER_RANK:]})
        with self.world.active():
            self.heads = {
                name: PartialFC(
                    CombinedMarginLoss(SCALE, 1.0, 0.5, 0.0),
                    DIM,
                    classes,
                    losses=[] if name == "plain" else [UNPG(wisk=WISK, sharded=name == "sharded")],
                )
                for name in self.VARIANTS
            }
        for head in self.heads.values():
            head.to(device)
        self.num_local = self.heads["plain"].num_local
        weight = torch.normal(0, 0.01, (self.num_local, DIM), generator=g).to(device)
        for head in self.heads.values():
            with torch.no_grad():
                head.weight.copy_(weight)

    def step(self, name: str) -> None:
        with self.world.active():
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                loss = self.heads[name](self.local, self.local_labels)
            loss.backward()

    def clear(self) -> None:
        self.local.grad = None
        for head in self.heads.values():
            head.weight.grad = None


def measure_head(
    world_size: int, classes: int, repeats: int, budget: int, device: torch.device, amp: torch.dtype | None
) -> dict:
    problem = HeadProblem(world_size, classes, device=device, amp=amp)
    variants = list(HeadProblem.VARIANTS)
    if REPLICATED_BYTES_PER_ENTRY * problem.batch**2 > budget:
        variants.remove("replicated")
    row = {
        "W": world_size,
        "B": problem.batch,
        "C": problem.num_local,
        "variants": variants,
        "time": {name: [] for name in variants},
        "peak": {},
    }
    for name in variants:  # warm-up and memory, one step each
        problem.clear()
        row["peak"][name] = peak_bytes(functools.partial(problem.step, name), device)
    for _ in range(repeats):
        for name in variants:
            problem.clear()
            row["time"][name].append(seconds(functools.partial(problem.step, name), device))
    problem.clear()
    return row


def print_head_table(rows: list[dict], repeats: int, threads: int, classes: int, where: str = "CPU fp32") -> None:
    print(
        f"\nHead step per rank (forward + backward), b = {PER_RANK} per rank, D = {DIM}, C_local = {classes:,} / W, "
        f"{where}, {threads} CPU thread(s); time: median (min-max) of {repeats} interleaved repeats; ratio: median over "
        f"repeats of UNPG / plain"
    )
    header = (
        f"{'W':>3} | {'B':>6} | {'C_local':>9} | {'plain s':>20} | {'replicated s':>20} | {'rep/plain':>9} | "
        f"{'sharded s':>20} | {'shd/plain':>9} | {'plain peak':>10} | {'rep extra':>10} | {'shd extra':>10} | "
        f"{'extra/(bB)':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        plain = row["time"]["plain"]
        cells = {}
        for name in ("replicated", "sharded"):
            if name in row["variants"]:
                ratio = statistics.median(v / p for v, p in zip(row["time"][name], plain, strict=True))
                cells[name] = (
                    spread(row["time"][name], 2),
                    f"{ratio:.3f}",
                    fmt_bytes(row["peak"][name] - row["peak"]["plain"]),
                )
            else:
                cells[name] = ("not run", "-", f"~{fmt_bytes(REPLICATED_BYTES_PER_ENTRY * row['B'] ** 2)} est.")
        sharded_extra = (row["peak"]["sharded"] - row["peak"]["plain"]) / (PER_RANK * row["B"])
        print(
            f"{row['W']:>3} | {row['B']:>6} | {row['C']:>9,} | {spread(plain, 2):>20} | {cells['replicated'][0]:>20} | "
            f"{cells['replicated'][1]:>9} | {cells['sharded'][0]:>20} | {cells['sharded'][1]:>9} | "
            f"{fmt_bytes(row['peak']['plain']):>10} | {cells['replicated'][2]:>10} | {cells['sharded'][2]:>10} | "
            f"{sharded_extra:>10.1f}"
        )
    print(
        "extra: allocator peak of the step minus the plain step's peak; extra/(bB): the sharded extra in bytes per "
        "block entry (target <= 16 + O(B D)/(b B))"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--worlds", type=int, nargs="+", default=[8, 16, 32, 64], help="world sizes W (default 8 16 32 64)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per variant, interleaved (default 5)")
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=4.0,
        help="GiB the replicated step may take by its estimate; larger W print the estimate (default 4)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--head", action="store_true", help="measure the whole head step (part 2) instead of the term")
    parser.add_argument("--device", default="cpu", help="head step (--head) on this device, e.g. cuda (default cpu)")
    parser.add_argument(
        "--amp",
        choices=["none", "fp16", "bf16"],
        default="none",
        help="head step (--head) under autocast with this dtype (default none: fp32)",
    )
    parser.add_argument(
        "--head-classes",
        type=int,
        default=2_000_000,
        help="total classes of the head step, C_local = this / W (default 2,000,000)",
    )
    args = parser.parse_args(argv)
    if args.head_classes < max(args.worlds):
        print(
            f"error: --head-classes {args.head_classes} is smaller than W; every rank needs a class centre",
            file=sys.stderr,
        )
        return 1
    if min(args.worlds) < 1 or args.repeats < 1 or args.threads < 1:
        print("error: --worlds, --repeats and --threads must be >= 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {args.device} but this torch sees no CUDA device; use --device cpu", file=sys.stderr)
        return 1
    amp = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.amp]
    if args.head:
        head_rows = []
        for world_size in args.worlds:
            print(f"head, W = {world_size} ...", file=sys.stderr, flush=True)
            head_rows.append(
                measure_head(world_size, args.head_classes, args.repeats, int(args.memory_budget * 2**30), device, amp)
            )
        where = f"{device.type.upper()} {'fp32' if amp is None else args.amp + ' autocast'}"
        print_head_table(head_rows, args.repeats, args.threads, args.head_classes, where)
        return 0
    rows = []
    for world_size in args.worlds:
        print(f"W = {world_size} ...", file=sys.stderr, flush=True)
        rows.append(measure(world_size, args.repeats, int(args.memory_budget * 2**30)))
    print(
        f"\nUNPG term per rank, one step (forward + backward), b = {PER_RANK} per rank, D = {DIM}, CPU fp32, "
        f"{args.threads} thread(s); time: median (min-max) of {args.repeats} interleaved repeats"
    )
    header = (
        f"{'W':>3} | {'B':>6} | {'replicated s':>22} | {'sharded s':>22} | {'time s/r':>8} | "
        f"{'replicated peak':>15} | {'sharded peak':>12} | {'mem s/r':>7} | {'bytes/(b B)':>11} | {'bytes/(B D)':>11}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        sharded_time, sharded_peak = row["time"]["sharded"], row["peak"]["sharded"]
        if row["replicated"]:
            replicated_time, replicated_peak = row["time"]["replicated"], row["peak"]["replicated"]
            ratio = statistics.median(s / r for s, r in zip(sharded_time, replicated_time, strict=False))
            cells = (
                spread(replicated_time),
                f"{ratio:.4f}",
                fmt_bytes(replicated_peak),
                f"{sharded_peak / replicated_peak:.4f}",
            )
        else:
            estimate = REPLICATED_BYTES_PER_ENTRY * row["B"] ** 2
            cells = ("not run", "-", f"~{fmt_bytes(estimate)} est.", "-")
        print(
            f"{row['W']:>3} | {row['B']:>6} | {cells[0]:>22} | {spread(sharded_time):>22} | {cells[1]:>8} | "
            f"{cells[2]:>15} | {fmt_bytes(sharded_peak):>12} | {cells[3]:>7} | {row['alpha']:>11.1f} | "
            f"{row['beta']:>11.1f}"
        )
    print(
        f"bytes/(b B): sharded peak at D = {SMALL_DIM} per block entry (an upper bound on the block's own cost; "
        f"target <= 16); bytes/(B D): (peak at D = {DIM} - peak at D = {SMALL_DIM}) / (B ({DIM} - {SMALL_DIM})), "
        f"the O(B D) part"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
