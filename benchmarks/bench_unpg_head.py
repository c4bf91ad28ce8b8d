"""Cost of UNPG in the partial-FC head: time and memory of one forward + backward, CPU float32, one process.

Variants, all on the same embeddings (B, D=512), labels and class centres (C_local, 512), with
CombinedMarginLoss(64, 1.0, 0.5, 0.0):
    a  margin softmax alone            PartialFC(negative_pairs=None)
    b  our UNPG                        PartialFC(negative_pairs=UNPG()): one extra logit per row
    c  column-append UNPG              the formulation of the paper's official code, written here from the
                                       math: the kept negatives N' (computed as UNPG does) scaled by s are
                                       appended as |N'| extra columns to EVERY row -> a (B, C + |N'|) logit
                                       matrix and a plain softmax cross-entropy; O(B * |N'|) = O(B^3) memory.
The losses of b and c are printed side by side as a correctness check (they must agree).

Time: per (B, C_local) the variants run interleaved (the order rotates every repetition) after one
untimed warm-up step each; the table shows the median and the ratios b/a, c/a, so machine load hits
every variant alike. Repetitions ("n a/b/c"): at least --repeats, more for short cases (until variant a
has run ~--min-seconds, at most --max-repeats); c gets fewer when one of its steps is slow (its ratio is
large anyway). One intra-op thread by default (--threads): on a shared, oversubscribed CPU every
multi-threaded op waits on descheduled OpenMP threads (~20 ms per small op here), which buries the
comparison under scheduling noise.

Memory: torch.profiler with profile_memory=True records every allocation and free of PyTorch's CPU
allocator during the warm-up step; the running sum of those records gives each variant's peak of live
tensor bytes above what existed before the step (gradients are cleared first, so every variant allocates
its own). "extra" is peak(b) - peak(a) and peak(c) - peak(a). Memory that bypasses the allocator (BLAS /
oneDNN scratch buffers, Python objects) is not counted; `--rss` additionally runs every variant once in
a fresh subprocess and reports the difference of its peak RSS to variant a's (the same set-up, so the
difference is the variant's own cost, noisy by a few MiB). The peak RSS is VmHWM from /proc/self/status:
ru_maxrss is not usable here because Linux carries the parent's high-water mark across fork + exec.
Target for b: extra memory within 16 * B^2 bytes (O(B^2)), printed beside it.

Before running c its memory is estimated (12 bytes per element of the appended B x |N'| block: the
concatenated logits, their log-softmax and its gradient, plus variant a's peak); where that exceeds
--max-gib (default: 80% of MemAvailable) the table says "does not fit (needs ~X GiB)" instead.

Also: the box-and-whisker filter alone (plugins.unpg.whisker_bounds) on 33,550,336 values (the pair count
of a global batch of 8192; a full sort of the same values is shown for reference), the full UNPG term
(forward + backward) at B=8192, and a phase breakdown of UNPG's forward + backward at each B
(similarity matmul, mask, gather N, kthvalue, gather N', logsumexp, backward; the phases replay the steps of
UNPG.forward with the plugin's own functions).

Targets (printed PASS/FAIL): b/a <= 1.05 at B=512, C_local=100k; b/a <= 1.15 at B=1024, C_local=10k.

    python benchmarks/bench_unpg_head.py --quick          # B 256 512, C_local 10k, ~1 minute
    python benchmarks/bench_unpg_head.py                  # B 256..2048, C_local 10k and 100k
    python benchmarks/bench_unpg_head.py --batch-sizes 512 1024 --classes 10000 --repeats 7 --rss
    python benchmarks/bench_unpg_head.py --skip-large-batch --no-column-append
    python benchmarks/bench_unpg_head.py --profile --batch-sizes 512 --classes 100000   # ops, plain vs UNPG
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG, cosine_similarity_matrix, negative_pair_mask, whisker_bounds
from recipes.arcface_torch.margin_loss import CombinedMarginLoss

GIB = 1024**3
MIB = 1024**2
VARIANTS = ("a", "b", "c")
TARGETS = ((512, 100_000, 1.05), (1024, 10_000, 1.15))  # (B, C_local, max b/a)
COLUMN_APPEND_BYTES_PER_ELEMENT = 12  # concatenated logits + log-softmax + its gradient, float32


# ----------------------------------------------------------------------------- the compared variants
def column_append_loss(head: PartialFC, unpg: UNPG, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """UNPG as |N'| appended columns on every row (single process, labels = column indices)."""
    scale = float(head.margin_softmax.s)
    cos = F.linear(F.normalize(embeddings), F.normalize(head.weight)).clamp(-1.0, 1.0)
    logits = head.margin_softmax(cos, labels)  # (B, C)
    similarities = cosine_similarity_matrix(embeddings)  # (B, B)
    values = similarities[negative_pair_mask(labels)]  # N, (|N|,) differentiable
    if unpg.filter and values.numel() > 0:
        bounds = whisker_bounds(values, unpg.wisk)
        detached = values.detach()
        values = values[(detached >= bounds.lower) & (detached <= bounds.upper)]  # N'
    appended = (values * scale).unsqueeze(0).expand(logits.size(0), -1)  # (B, |N'|), the same on every row
    return F.cross_entropy(torch.cat([logits, appended], dim=1), labels)


class HeadCase:
    """One (B, C_local) problem: shared class centres, embeddings and labels for the three variants."""

    def __init__(self, batch: int, classes: int, dim: int, seed: int = 0):
        torch.manual_seed(seed)
        margin = CombinedMarginLoss(64.0, 1.0, 0.5, 0.0)
        self.head_a = PartialFC(margin, dim, classes, negative_pairs=None)
        self.unpg = UNPG()
        self.head_b = PartialFC(margin, dim, classes, negative_pairs=self.unpg)
        self.head_b.weight = self.head_a.weight  # the very same parameter
        self.embeddings = torch.randn(batch, dim).requires_grad_(True)
        self.labels = torch.randint(0, classes, (batch,))
        self.batch, self.classes = batch, classes

    def clear(self) -> None:
        self.embeddings.grad = None
        self.head_a.weight.grad = None

    def loss(self, variant: str) -> torch.Tensor:
        if variant == "a":
            return self.head_a(self.embeddings, self.labels)
        if variant == "b":
            return self.head_b(self.embeddings, self.labels)
        return column_append_loss(self.head_a, self.unpg, self.embeddings, self.labels)

    def step(self, variant: str) -> float:
        self.clear()
        loss = self.loss(variant)
        loss.backward()
        return float(loss.detach())

    @torch.no_grad()
    def kept_pairs(self) -> int:
        """|N'| for these embeddings and labels (what c appends to every row)."""
        similarities = cosine_similarity_matrix(self.embeddings)
        negatives = negative_pair_mask(self.labels)
        values = similarities[negatives]
        if values.numel() == 0:
            return 0
        bounds = whisker_bounds(values, self.unpg.wisk)
        return int(((values >= bounds.lower) & (values <= bounds.upper)).sum())


# ----------------------------------------------------------------------------- measurement tools
def tracked_peak_bytes(fn) -> tuple[int, object]:
    """Run fn once under the memory profiler -> (peak of live allocator bytes above the start, fn's result)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    records = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    records.sort(key=lambda event: event.start_ns())
    peak = max(itertools.accumulate((event.nbytes() for event in records), initial=0))
    return peak, result


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_of_subprocess(variant: str, batch: int, classes: int, dim: int, threads: int) -> int | None:
    """Peak RSS (bytes) of a fresh process that builds the case and runs one step of `variant`."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-worker",
        variant,
        "--batch-sizes",
        str(batch),
        "--classes",
        str(classes),
        "--dim",
        str(dim),
        "--threads",
        str(threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  rss worker {variant} B={batch} C={classes} failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return int(json.loads(done.stdout.strip().splitlines()[-1])["max_rss_bytes"])


def peak_rss_bytes() -> int:
    """This process's peak resident set size (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    # no /proc: ru_maxrss (KiB on Linux, bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def rss_worker(variant: str, batch: int, classes: int, dim: int) -> int:
    case = HeadCase(batch, classes, dim)
    case.step(variant)
    print(json.dumps({"max_rss_bytes": peak_rss_bytes()}))
    return 0


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= GIB:
        return f"{value / GIB:.2f} GiB"
    if abs(value) < MIB:
        return f"{value / 1024:.1f} KiB"
    return f"{value / MIB:.1f} MiB"


# ----------------------------------------------------------------------------- head table
def measure_case(batch: int, classes: int, args, budget_bytes: int) -> dict:
    case = HeadCase(batch, classes, args.dim)
    variants = ["a", "b"]
    row: dict = {"B": batch, "C": classes, "time": {}, "peak": {}, "loss": {}, "rss": {}}
    kept = case.kept_pairs()
    row["kept"] = kept
    # warm-up step of each variant, doubling as its memory measurement (and a rough step time)
    warm: dict[str, float] = {}
    for variant in variants:
        case.clear()  # free the previous gradients outside the measured region
        warm[variant], (row["peak"][variant], row["loss"][variant]) = timed(
            functools.partial(tracked_peak_bytes, functools.partial(case.step, variant))
        )
    if args.column_append:
        needed = row["peak"]["a"] + COLUMN_APPEND_BYTES_PER_ELEMENT * batch * kept
        row["c_needed"] = needed
        if needed > budget_bytes:
            row["c_skip"] = f"does not fit (needs ~{needed / GIB:.1f} GiB)"
        else:
            variants.append("c")
            case.clear()
            warm["c"], (row["peak"]["c"], row["loss"]["c"]) = timed(
                functools.partial(tracked_peak_bytes, functools.partial(case.step, "c"))
            )
    # short cases get more repetitions: at least --repeats, and enough for ~--min-seconds of each variant;
    # c, whose ratio is large anyway, gets fewer when one of its steps is slow
    if warm["a"] < 2.0:  # the profiler slows short steps down: time one plain step instead
        warm["a"] = timed(functools.partial(case.step, "a"))[0]
    runs = {
        variant: max(args.repeats, min(args.max_repeats, math.ceil(args.min_seconds / max(warm["a"], 1e-3))))
        for variant in ("a", "b")
    }
    if "c" in variants:
        runs["c"] = max(1, min(runs["a"], math.ceil(args.min_seconds / max(warm["c"], 1e-3))))
    row["repeats"] = runs
    samples = {variant: [] for variant in variants}
    for repetition in range(runs["a"]):
        shift = repetition % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            if len(samples[variant]) >= runs[variant]:
                continue
            seconds, _ = timed(functools.partial(case.step, variant))
            samples[variant].append(seconds)
    row["time"] = {variant: statistics.median(values) for variant, values in samples.items()}
    row["samples"] = samples
    del case
    if args.rss:
        for variant in variants:
            row["rss"][variant] = peak_rss_of_subprocess(variant, batch, classes, args.dim, args.threads)
    return row


def print_head_table(rows: list[dict], args) -> None:
    print()
    print(
        f"Partial-FC head, one forward+backward, D={args.dim}, float32, {torch.get_num_threads()} thread(s), "
        f"median of n interleaved runs per variant"
    )
    header = (
        f"{'B':>5} {'C_local':>8} {'|N_kept|':>9} {'a (s)':>8} {'b (s)':>8} {'c (s)':>8} {'b/a':>6} {'c/a':>7}"
        f" {'n a/b/c':>8} {'extra b':>10} {'16*B^2':>10} {'b<=16B^2':>8} {'extra c':>30}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        t, p = row["time"], row["peak"]
        extra_b = p["b"] - p["a"]
        target = 16 * row["B"] ** 2
        if "c" in t:
            c_time, c_ratio, c_extra = f"{t['c']:.3f}", f"{t['c'] / t['a']:.2f}", fmt_bytes(p["c"] - p["a"])
        else:
            c_time, c_ratio, c_extra = "-", "-", row.get("c_skip", "not run")
        print(
            f"{row['B']:>5} {row['C']:>8} {row['kept']:>9} {t['a']:>8.3f} {t['b']:>8.3f} {c_time:>8} "
            f"{t['b'] / t['a']:>6.3f} {c_ratio:>7} {'/'.join(str(row['repeats'].get(v, '-')) for v in VARIANTS):>8} {fmt_bytes(extra_b):>10} {fmt_bytes(target):>10} "
            f"{'yes' if extra_b <= target else 'NO':>8} {c_extra:>30}"
        )
    print()
    print("peak live tensor bytes per variant (torch.profiler) and losses (b and c must agree):")
    for row in rows:
        p, loss = row["peak"], row["loss"]
        peaks = "  ".join(f"{v}={fmt_bytes(p[v])}" for v in VARIANTS if v in p)
        losses = "  ".join(f"{v}={loss[v]:.6f}" for v in VARIANTS if v in loss)
        agree = ""
        if "c" in loss:
            agree = f"  |b-c|/|b|={abs(loss['b'] - loss['c']) / abs(loss['b']):.1e}"
        print(f"  B={row['B']:>5} C={row['C']:>7}: {peaks}   loss {losses}{agree}")
    if any(row["rss"] for row in rows):
        print()
        print("peak RSS (VmHWM) of a fresh process per variant, and its extra over a:")
        for row in rows:
            rss = row["rss"]
            if rss.get("a") is None:
                continue
            parts = [f"a={fmt_bytes(rss['a'])}"]
            for v in ("b", "c"):
                if rss.get(v) is not None:
                    parts.append(f"{v}-a={fmt_bytes(rss[v] - rss['a'])}")
            print(
                f"  B={row['B']:>5} C={row['C']:>7}: " + "  ".join(parts) + f"   16*B^2={fmt_bytes(16 * row['B'] ** 2)}"
            )


def check_targets(rows: list[dict]) -> list[tuple[str, bool | None]]:
    results = []
    for batch, classes, limit in TARGETS:
        name = f"b/a <= {limit:.2f} at B={batch}, C_local={classes // 1000}k"
        match = [row for row in rows if row["B"] == batch and row["C"] == classes]
        if not match:
            results.append((name, None))
            continue
        ratio = match[0]["time"]["b"] / match[0]["time"]["a"]
        results.append((f"{name}: {ratio:.3f}", ratio <= limit))
    return results


# ----------------------------------------------------------------------------- UNPG phases
def unpg_phases(embeddings: torch.Tensor, labels: torch.Tensor, scale: float, wisk: float) -> dict[str, float]:
    """Seconds per phase of UNPG.forward + backward (the same steps, timed one by one)."""
    times: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[name] = now - clock
        clock = now

    similarities = cosine_similarity_matrix(embeddings)
    lap("similarity matmul")
    negatives = negative_pair_mask(labels)
    lap("negative mask")
    values = similarities[negatives]
    detached = values.detach()
    lap("gather N")
    bounds = whisker_bounds(detached, wisk)
    lap("kthvalue x2")
    kept_values = values[(detached >= bounds.lower) & (detached <= bounds.upper)]
    lap("gather N'")
    term = torch.logsumexp(kept_values * scale, dim=0)
    lap("logsumexp")
    term.backward()
    lap("backward")
    return times


def print_phase_table(batches: list[int], args) -> dict[int, dict[str, float]]:
    print()
    print(f"UNPG term alone, forward+backward phases (median of {max(args.repeats, 5)} runs), D={args.dim}; seconds")
    table: dict[int, dict[str, float]] = {}
    names = None
    for batch in batches:
        torch.manual_seed(0)
        embeddings = torch.randn(batch, args.dim).requires_grad_(True)
        labels = torch.randint(0, 1_000_000, (batch,))
        unpg_phases(embeddings, labels, 64.0, 1.5)
        runs = []
        for _ in range(max(args.repeats, 5)):
            embeddings.grad = None
            runs.append(unpg_phases(embeddings, labels, 64.0, 1.5))
        names = list(runs[0])
        table[batch] = {name: statistics.median(run[name] for run in runs) for name in names}
        table[batch]["total"] = statistics.median(sum(run.values()) for run in runs)
    if names is None:
        return table
    header = f"{'B':>5} " + " ".join(f"{name:>18}" for name in names + ["total"])
    print(header)
    print("-" * len(header))
    for batch, phases in table.items():
        print(f"{batch:>5} " + " ".join(f"{phases[name]:>18.4f}" for name in names + ["total"]))
    return table


# ----------------------------------------------------------------------------- big batch
def large_batch_report(args) -> None:
    batch = args.large_batch
    pairs = batch * (batch - 1) // 2
    print()
    print(f"Global batch {batch}: {pairs:,} pairs (median of {args.repeats})")
    torch.manual_seed(0)
    values = torch.randn(pairs) * (1.0 / args.dim**0.5)  # cosines of random 512-d directions
    whisker_bounds(values, 1.5)
    filter_times = [timed(functools.partial(whisker_bounds, values, 1.5))[0] for _ in range(args.repeats)]
    sort_time = timed(functools.partial(torch.sort, values))[0]
    print(
        f"  whisker_bounds on {pairs:,} values: {statistics.median(filter_times):.3f} s "
        f"(one full torch.sort of them for reference: {sort_time:.3f} s)"
    )
    del values
    embeddings = torch.randn(batch, args.dim).requires_grad_(True)
    labels = torch.randint(0, 1_000_000, (batch,))
    unpg = UNPG()

    def term_step():
        embeddings.grad = None
        term = unpg(embeddings, labels, 64.0)
        term.log_sum_exp.backward()
        return float(term.log_sum_exp.detach())

    peak, _ = tracked_peak_bytes(term_step)
    term_times = [timed(term_step)[0] for _ in range(args.repeats)]
    print(
        f"  UNPG term forward+backward at B={batch}, D={args.dim}: {statistics.median(term_times):.3f} s, "
        f"peak live tensors {fmt_bytes(peak)} (16*B^2 = {fmt_bytes(16 * batch**2)}, "
        f"{'within' if peak <= 16 * batch**2 else 'ABOVE'})"
    )
    kept = 0.993 * pairs  # whisker keeps ~99.3% of normally distributed values
    print(
        f"  column-append formulation at B={batch} would need >= ~{COLUMN_APPEND_BYTES_PER_ELEMENT * batch * kept / GIB:,.0f} GiB "
        f"for the (B, |N'|) block alone: does not fit"
    )


# ----------------------------------------------------------------------------- main
def op_profile(case: HeadCase, variant: str, steps: int) -> tuple[dict[str, tuple[float, float]], float]:
    """(self CPU seconds, calls) per step of every op (by name) over `steps` profiled steps, and the wall
    seconds per step."""
    case.step(variant)  # warm-up outside the profile
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            case.step(variant)
        wall = (time.perf_counter() - start) / steps
    ops = {event.key: (event.self_cpu_time_total / 1e6 / steps, event.count / steps) for event in prof.key_averages()}
    large = case.batch * case.classes
    wide = [  # aten ops (no wrappers, no autograd nodes) reading or writing a (B, C_local)-sized tensor
        event
        for event in prof.key_averages(group_by_input_shape=True)
        if event.key.startswith("aten::") and any(math.prod(shape) >= large for shape in event.input_shapes if shape)
    ]
    ops["(B, C_local) aten calls"] = (0.0, sum(event.count for event in wide) / steps)
    return ops, wall


def print_profile(batch: int, classes: int, args, top: int = 14) -> None:
    """Where the time of a head step goes, plain (a) vs UNPG (b): self CPU per op and step, the ops whose time
    differs most first (a and b profiled alternately, --profile-steps each, twice, the two passes averaged).
    Calls per step tell UNPG's own ops from noise: an op called as often in a as in b does the same work."""
    case = HeadCase(batch, classes, args.dim)
    totals = {"a": {}, "b": {}}
    calls = {"a": {}, "b": {}}
    walls = {"a": [], "b": []}
    for _ in range(2):
        for variant in ("a", "b"):
            ops, wall = op_profile(case, variant, args.profile_steps)
            walls[variant].append(wall)
            for name, (seconds, count) in ops.items():
                totals[variant][name] = totals[variant].get(name, 0.0) + seconds / 2
                calls[variant][name] = count
    wide = {variant: calls[variant].pop("(B, C_local) aten calls") for variant in ("a", "b")}
    for variant in ("a", "b"):
        totals[variant].pop("(B, C_local) aten calls")
    names = sorted(
        set(totals["a"]) | set(totals["b"]),
        key=lambda n: -abs(totals["b"].get(n, 0.0) - totals["a"].get(n, 0.0)),
    )
    sum_a, sum_b = sum(totals["a"].values()), sum(totals["b"].values())
    print(
        f"\nprofile of one head step, B={batch}, C_local={classes}, D={args.dim} ({args.profile_steps} steps x 2 "
        f"passes each, self CPU ms per step; wall per step a {statistics.median(walls['a']):.3f} s, "
        f"b {statistics.median(walls['b']):.3f} s)"
    )
    print(f"{'op':<44} | {'a plain':>9} | {'b UNPG':>9} | {'b - a':>9} | {'calls a / b':>11}")
    print("-" * 94)
    for name in names[:top]:
        a_ms, b_ms = 1e3 * totals["a"].get(name, 0.0), 1e3 * totals["b"].get(name, 0.0)
        count = f"{calls['a'].get(name, 0):g} / {calls['b'].get(name, 0):g}"
        print(f"{name[:44]:<44} | {a_ms:>9.2f} | {b_ms:>9.2f} | {b_ms - a_ms:>+9.2f} | {count:>11}")
    rest_a = 1e3 * (sum_a - sum(totals["a"].get(n, 0.0) for n in names[:top]))
    rest_b = 1e3 * (sum_b - sum(totals["b"].get(n, 0.0) for n in names[:top]))
    print(f"{'(all other ops)':<44} | {rest_a:>9.2f} | {rest_b:>9.2f} | {rest_b - rest_a:>+9.2f}")
    print(f"{'total self CPU':<44} | {1e3 * sum_a:>9.2f} | {1e3 * sum_b:>9.2f} | {1e3 * (sum_b - sum_a):>+9.2f}")
    print(f"aten calls per step on a (B, C_local)-sized tensor: a {wide['a']:g}, b {wide['b']:g}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: B 256 512, C_local 10k, no B=8192 section")
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None, help="global batch sizes (default 256 512 1024 2048)"
    )
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="C_local values (default 10000 100000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size D (default 512)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="minimum timed repetitions per variant (default 3; median)"
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=6.0,
        help="repeat short cases until variant a has run ~this long (default 6; at most --max-repeats)",
    )
    parser.add_argument("--max-repeats", type=int, default=15, help="cap on repetitions of short cases (default 15)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared, oversubscribed CPU every multi-threaded op "
        "waits on descheduled OpenMP threads, ~20 ms per small op, which buries the comparison)",
    )
    parser.add_argument("--no-column-append", dest="column_append", action="store_false", help="skip variant c")
    parser.add_argument(
        "--max-gib", type=float, default=None, help="memory allowed for variant c (default 80%% of MemAvailable)"
    )
    parser.add_argument(
        "--rss", action="store_true", help="also measure peak RSS of each variant in a fresh subprocess"
    )
    parser.add_argument(
        "--large-batch", type=int, default=8192, help="batch of the whisker/UNPG-term section (default 8192)"
    )
    parser.add_argument("--skip-large-batch", action="store_true", help="skip the large-batch section")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile one head step of a and b per (B, C_local) by op (where UNPG's extra time goes)",
    )
    parser.add_argument("--profile-steps", type=int, default=3, help="profiled steps per variant and pass (default 3)")
    parser.add_argument("--rss-worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.quick:
        args.batch_sizes = args.batch_sizes or [256, 512]
        args.classes = args.classes or [10_000]
        args.skip_large_batch = True
    args.batch_sizes = args.batch_sizes or [256, 512, 1024, 2048]
    args.classes = args.classes or [10_000, 100_000]
    torch.set_num_threads(args.threads)
    if args.rss_worker:
        return rss_worker(args.rss_worker, args.batch_sizes[0], args.classes[0], args.dim)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    if args.profile:
        for classes, batch in itertools.product(args.classes, args.batch_sizes):
            print_profile(batch, classes, args)
        return 0
    budget = int(args.max_gib * GIB) if args.max_gib else int(0.8 * mem_available_bytes())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; variant c memory budget {fmt_bytes(budget)}")
    rows = []
    started = time.perf_counter()
    for classes, batch in itertools.product(args.classes, args.batch_sizes):
        row = measure_case(batch, classes, args, budget)
        rows.append(row)
        summary = "  ".join(f"{v}={row['time'][v]:.3f}s" for v in VARIANTS if v in row["time"])
        print(
            f"  done B={batch} C_local={classes}: {summary}  ({time.perf_counter() - started:.0f} s elapsed)",
            flush=True,
        )
    print_head_table(rows, args)
    print_phase_table(sorted(set(args.batch_sizes)), args)
    if not args.skip_large_batch:
        large_batch_report(args)

    print()
    failed = False
    for name, passed in check_targets(rows):
        if passed is None:
            print(f"SKIP {name} (size not in this run)")
            continue
        print(f"{'PASS' if passed else 'FAIL'} {name}")
        failed |= not passed
    for row in rows:
        if "c" in row["loss"] and abs(row["loss"]["b"] - row["loss"]["c"]) > 1e-3 * abs(row["loss"]["b"]):
            print(
                f"FAIL losses of b and c differ at B={row['B']} C_local={row['C']}: {row['loss']['b']} vs {row['loss']['c']}"
            )
            failed = True
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
