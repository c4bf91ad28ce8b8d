"""The partial-FC head against its matmul floor: today's head, the chunked head and the three products.

Per size (B, C_local), on the same embeddings (B, D), labels (two images per identity) and class centres
(C_local, D), CombinedMarginLoss(64, 1.0, 0.5, 0.0) (upstream's ArcFace), one process:

    dense      PartialFC(head_chunk=0): today's head, the whole (B, C_local) logit matrix
    chunk N    PartialFC(head_chunk=N, head_chunk_budget=--budget): classes in chunks of N (--chunk, several
               values allowed, "auto" among them); the kept exps are bounded by the budget, chunks beyond it are
               recomputed in backward
    floor      the three B x D x K products a head step cannot avoid (K = C_local, or the sampled centres with
               --sample-rate) -- the cosines X^ W^T, dX = G W and dW = G^T X^ -- with preallocated outputs, timed
               two ways in every round: whole (three torch.mm over (B, K)) and in the first chunked variant's
               chunks; the floor is the faster of the two

Time: one untimed warm-up step per variant (it doubles as the memory measurement), then --repeats rounds in which
every variant runs once, the order rotating each round; per round each variant's ratio to that round's floor
(and chunked / dense), medians over rounds. One intra-op thread by default (--threads): on a shared CPU, multi-
threaded ops wait on descheduled threads and the comparison drowns in scheduling noise. A chunked head keeps its
exps buffer from step to step, as in training; where those buffers and the dense step would not fit in memory
together (or with --fresh-buffers) every chunked step allocates its buffer afresh, which the table says.

Memory: the peak of live allocator bytes above the step's start (torch.profiler's memory records on CPU,
max_memory_allocated on CUDA), inputs and weights excluded, gradients cleared before; BLAS scratch is not
counted. --rss also runs every variant once in a fresh process and reports its peak RSS (VmHWM) and the
difference to a process that only builds the inputs. A size whose dense step would not fit in 80% of
MemAvailable (about 16.2 bytes per (B, C_local) entry, measured at W = 64) skips the dense head.

Targets (PASS / FAIL lines): chunked / floor <= 1.3 at B = 512, C_local = 100k; at B = 24576, C_local = 31250
(one rank of W = 64 on a WebFace42M-sized head, 2M classes, b = 384 per rank) the chunked peak <= 1/3 of the
dense one.

    python benchmarks/bench_head_floor.py --quick                      # B 512, C_local 10k, ~1 minute
    python benchmarks/bench_head_floor.py                              # B 512 x C_local 10k, 100k; B 4096 x 31250
    python benchmarks/bench_head_floor.py --sizes 512x100000 --chunk 512 1024 2048 auto --repeats 7
    python benchmarks/bench_head_floor.py --sizes 24576x31250 --repeats 1 --chunk auto --budget 4 1   # W = 64
    python benchmarks/bench_head_floor.py --device cuda --amp --sizes 512x100000 24576x31250
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

GIB, MIB = 2**30, 2**20
DIM, SCALE = 512, 64.0
DENSE_BYTES_PER_ENTRY = 16.2  # the dense step's allocator peak per (B, C_local) entry (11.60 GiB at W = 64)
TIME_TARGET = (512, 100_000, 1.3)  # (B, C_local, max chunked / floor)
MEMORY_TARGET = (24_576, 31_250, 1 / 3)  # (B, C_local, max chunked peak / dense peak)


def parse_size(text: str) -> tuple[int, int]:
    try:
        batch, classes = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not BxC_LOCAL, e.g. 512x100000") from None
    if batch < 1 or classes < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} needs B >= 1 and C_local >= 1")
    return batch, classes


def parse_chunk(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"chunk {text!r} is not a number of classes >= 1 nor 'auto'")
    return int(text)


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= GIB:
        return f"{value / GIB:.2f} GiB"
    return f"{value / MIB:.1f} MiB"


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Problem:
    """One size: inputs shared by every variant, a head per head variant, the floor's preallocated outputs."""

    def __init__(self, batch: int, classes: int, args, variants: list[str]):
        import torch

        from plugins.partial_fc import PartialFC
        from plugins.unpg import UNPG
        from recipes.arcface_torch.margin_loss import CombinedMarginLoss

        self.torch, self.device, self.batch, self.classes = torch, torch.device(args.device), batch, classes
        self.amp = torch.float16 if args.amp and self.device.type == "cuda" else torch.bfloat16 if args.amp else None
        g = torch.Generator().manual_seed(0)
        labels = torch.randint(0, classes, (batch,), generator=g)
        labels[1::2] = labels[0::2]  # two images per identity, as a sampled face batch
        self.labels = labels.to(self.device)
        self.embeddings = torch.randn(batch, DIM, generator=g).to(self.device).requires_grad_(True)
        weight = torch.normal(0, 0.01, (classes, DIM), generator=g).to(self.device)
        self.heads = {}
        for name in variants:
            if name == "floor":
                continue
            chunk = 0 if name == "dense" else parse_chunk(name.split()[1])
            budget = args.budget_of.get(name, args.budget[0])
            head = PartialFC(
                CombinedMarginLoss(SCALE, 1.0, 0.5, 0.0),
                DIM,
                classes,
                args.sample_rate,
                losses=[UNPG()] if args.unpg else [],
                head_chunk=chunk,
                head_chunk_budget=budget,
            ).to(self.device)
            head.weight = torch.nn.Parameter(weight)  # the very same centres for every head
            self.heads[name] = head
        self.weight = weight
        self.columns = classes  # K, the centres a step uses (fewer when sampled): the floor's width
        self.fresh_buffers = args.fresh_buffers

    def clear(self) -> None:
        """Free the last step's gradients (and, with fresh_buffers, every kept exps buffer): call it outside the
        measured region, so that no step is charged for freeing another's memory."""
        self.embeddings.grad = None
        for head in self.heads.values():
            head.weight.grad = None
            if self.fresh_buffers:
                head._workspace = None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def step(self, name: str) -> None:
        """One forward + backward of head `name` (clear() first)."""
        torch = self.torch
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            loss = self.heads[name](self.embeddings, self.labels)
        loss.backward()

    def floor_operands(self) -> tuple:
        """(unit embeddings, unit centres) in the product dtype (the autocast one under --amp)."""
        torch = self.torch
        dtype = self.amp or torch.float32
        unit = torch.nn.functional.normalize(self.embeddings.detach()).to(dtype)
        return unit, torch.nn.functional.normalize(self.weight[: self.columns]).to(dtype)

    def floor_whole(self) -> float:
        """Seconds of the three products over the whole (B, C_local), outputs allocated (and touched) first."""
        torch = self.torch
        unit, centres = self.floor_operands()
        logits = torch.zeros(self.batch, self.columns, dtype=unit.dtype, device=self.device)
        grad_unit, grad_centres = torch.zeros_like(unit), torch.zeros_like(centres)
        self.synchronize()
        start = time.perf_counter()
        torch.mm(unit, centres.t(), out=logits)  # cosines
        torch.mm(logits, centres, out=grad_unit)  # dX = G W (G: any (B, C_local) matrix)
        torch.mm(logits.t(), unit, out=grad_centres)  # dW = G^T X
        self.synchronize()
        return time.perf_counter() - start

    def floor_chunks(self, width: int) -> float:
        """Seconds of the same products in chunks of `width` classes, as the chunked head runs them."""
        torch = self.torch
        unit, centres = self.floor_operands()
        block = torch.zeros(self.batch, width, dtype=unit.dtype, device=self.device)
        grad_unit, grad_centres = torch.zeros_like(unit), torch.zeros_like(centres)
        self.synchronize()
        start = time.perf_counter()
        for first in range(0, self.columns, width):
            last = min(first + width, self.columns)
            part = block[:, : last - first] if last - first < width else block
            rows = centres[first:last]
            torch.mm(unit, rows.t(), out=part)
            grad_unit.addmm_(part, rows)
            torch.mm(part.t(), unit, out=grad_centres[first:last])
        self.synchronize()
        return time.perf_counter() - start

    def seconds(self, fn) -> float:
        self.synchronize()
        start = time.perf_counter()
        fn()
        self.synchronize()
        return time.perf_counter() - start

    def peak_bytes(self, fn) -> int:
        torch = self.torch
        if self.device.type == "cuda":
            self.synchronize()
            start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            self.synchronize()
            return torch.cuda.max_memory_allocated(self.device) - start
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        records = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
        records.sort(key=lambda event: event.start_ns())
        return max(itertools.accumulate((event.nbytes() for event in records), initial=0))


def chunked_variants(args) -> list[str]:
    names = [f"chunk {chunk}" for chunk in args.chunk]
    if len(args.budget) > 1:  # one variant per budget, of the first chunk width
        names = names + [f"chunk {args.chunk[0]} @{budget:g}" for budget in args.budget[1:]]
    return names


def measure_in_process(batch: int, classes: int, args) -> dict:
    variants = ["dense", *chunked_variants(args), "floor"]
    args.budget_of = {f"chunk {args.chunk[0]} @{budget:g}": budget for budget in args.budget[1:]}
    row: dict = {"B": batch, "C": classes, "skipped": {}}
    dense_need = DENSE_BYTES_PER_ENTRY * batch * classes
    available = 0.8 * mem_available_bytes()
    if args.device == "cpu" and dense_need > available:
        variants.remove("dense")
        row["skipped"]["dense"] = f"does not fit (needs ~{fmt_bytes(dense_need)})"
    kept_need = min(max(args.budget) * GIB, 4 * batch * classes) * (len(variants) - 2)
    if args.device == "cpu" and "dense" in variants and dense_need + kept_need > available and not args.fresh_buffers:
        args.fresh_buffers = True  # the chunked heads' kept buffers and the dense step would not fit together
        row["fresh_buffers"] = True
    problem = Problem(batch, classes, args, variants)
    heads = [name for name in variants if name != "floor"]
    row["peak"], row["chunking"] = {}, {}
    for name in heads:  # warm-up and memory, one step each
        problem.clear()
        row["peak"][name] = problem.peak_bytes(lambda name=name: problem.step(name))
        row["chunking"][name] = dict(problem.heads[name].last_chunking)
        print(f"    warm-up {name}: peak {fmt_bytes(row['peak'][name])}", file=sys.stderr, flush=True)
    first_chunked = next((name for name in heads if name != "dense"), None)
    width = row["chunking"][first_chunked]["width"] if first_chunked else None
    problem.columns = row["K"] = int(problem.heads[heads[0]].weight_index.numel())  # sampled: the floor's K
    problem.clear()
    problem.floor_whole()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    samples["floor whole"], samples["floor chunks"] = [], []
    timed = heads + ["floor"]
    for repetition in range(args.repeats):
        shift = repetition % len(timed)
        for name in timed[shift:] + timed[:shift]:
            if name == "floor":
                problem.clear()
                samples["floor whole"].append(problem.floor_whole())
                chunks = problem.floor_chunks(width) if width else float("inf")
                samples["floor chunks"].append(chunks)
                samples["floor"].append(min(samples["floor whole"][-1], chunks))
            else:
                problem.clear()
                samples[name].append(problem.seconds(lambda name=name: problem.step(name)))
        print(f"    round {repetition + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    row["samples"] = samples
    row["variants"] = heads
    row["entry_bytes"] = batch * row["K"] * 4
    return row


def measure(batch: int, classes: int, args) -> dict:
    row = measure_in_process(batch, classes, args)  # its problem (and memory) is gone when it returns
    if args.rss:
        names = ["inputs", *row["variants"]]
        row["rss"] = {name: rss_of_subprocess(name, batch, classes, args) for name in names}
    return row


def rss_of_subprocess(name: str, batch: int, classes: int, args) -> int | None:
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-worker", name, "--sizes", f"{batch}x{classes}"]
    command += ["--threads", str(args.threads), "--sample-rate", str(args.sample_rate), "--device", args.device]
    command += ["--chunk", *(str(chunk) for chunk in args.chunk), "--budget", *(str(b) for b in args.budget)]
    command += ["--unpg"] * args.unpg + ["--amp"] * args.amp
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  rss worker {name} failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return int(json.loads(done.stdout.strip().splitlines()[-1])["max_rss_bytes"])


def rss_worker(name: str, batch: int, classes: int, args) -> int:
    args.budget_of = {f"chunk {args.chunk[0]} @{budget:g}": budget for budget in args.budget[1:]}
    problem = Problem(batch, classes, args, [] if name == "inputs" else [name])
    if name != "inputs":
        problem.step(name)
    print(json.dumps({"max_rss_bytes": peak_rss_bytes()}))
    return 0


def median_ratio(values: list[float], reference: list[float]) -> float:
    return statistics.median(v / r for v, r in zip(values, reference, strict=True))


def print_table(rows: list[dict], args, torch) -> None:
    where = f"{args.device}" + (" fp16 autocast" if args.amp and args.device.startswith("cuda") else "")
    where += " bf16 autocast" if args.amp and not args.device.startswith("cuda") else ""
    print(
        f"\nHead step (forward + backward), D = {DIM}, s = {SCALE:g}, ArcFace margin{', UNPG' if args.unpg else ''}, "
        f"sample_rate {args.sample_rate:g}, {where}, {torch.get_num_threads()} thread(s); time: median of "
        f"{args.repeats} interleaved rounds; x/floor: median over rounds of the variant / that round's floor"
    )
    header = (
        f"{'B':>6} {'C_local':>8} | {'variant':<16} | {'width':>6} {'kept':>9} | {'median s':>9} | {'x/floor':>7} | "
        f"{'x/dense':>7} | {'alloc peak':>10} | {'peak/dense':>10} | {'rss extra':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        floor = row["samples"]["floor"]
        dense = row["samples"].get("dense")
        for name in row["variants"]:
            times = row["samples"][name]
            chunking = row["chunking"][name]
            width = str(chunking.get("width", "-"))
            kept = f"{chunking['kept']}/{chunking['chunks']}" if chunking else "-"
            over_dense = f"{median_ratio(times, dense):.3f}" if dense and name != "dense" else "-"
            peak = row["peak"][name]
            peak_ratio = f"{peak / row['peak']['dense']:.3f}" if "dense" in row["peak"] and name != "dense" else "-"
            rss = row.get("rss", {})
            rss_extra = fmt_bytes(rss[name] - rss["inputs"]) if rss.get(name) is not None and rss.get("inputs") else "-"
            print(
                f"{row['B']:>6} {row['C']:>8} | {name:<16} | {width:>6} {kept:>9} | {statistics.median(times):>9.3f} | "
                f"{median_ratio(times, floor):>7.3f} | {over_dense:>7} | {fmt_bytes(peak):>10} | {peak_ratio:>10} | "
                f"{rss_extra:>10}"
            )
        if row.get("fresh_buffers"):
            print(f"{row['B']:>6} {row['C']:>8} | (chunked heads allocated their exps buffer every step: memory)")
        for name, why in row["skipped"].items():
            print(f"{row['B']:>6} {row['C']:>8} | {name:<16} | {why}")
        whole, chunks = row["samples"]["floor whole"], row["samples"]["floor chunks"]
        chunk_text = f"{statistics.median(chunks):.3f}" if all(c != float("inf") for c in chunks) else "-"
        print(
            f"{row['B']:>6} {row['C']:>8} | {'floor':<16} | {'':>6} {'':>9} | {statistics.median(floor):>9.3f} | "
            f"{1.0:>7.3f} | {'':>7} | (whole {statistics.median(whole):.3f} s, in chunks {chunk_text} s; one fp32 "
            f"(B, K) copy = {fmt_bytes(row['entry_bytes'])}; K = {row['K']} centres used per step)"
        )
    print(
        "width: classes per chunk; kept: chunks whose exps stay in the buffer / chunks (the rest are recomputed); "
        "alloc peak: allocator peak above the step's start; rss extra: peak RSS of a fresh process running one "
        "step, minus that of one that only builds the inputs"
    )


def check_targets(rows: list[dict], args) -> list[tuple[str, bool | None]]:
    """The targets hold for the plain margin softmax over every centre (no --unpg, sample_rate 1): UNPG's own
    B x B term and the sampling gathers are not part of the three products."""
    if args.unpg or args.sample_rate != 1.0:
        return [("targets (defined for the plain head at sample_rate 1; this run adds UNPG or sampling)", None)]
    results = []
    batch, classes, limit = TIME_TARGET
    row = next((r for r in rows if (r["B"], r["C"]) == (batch, classes)), None)
    chunked = [n for n in row["variants"] if n != "dense"] if row else []
    if chunked:
        best = min(median_ratio(row["samples"][n], row["samples"]["floor"]) for n in chunked)
        results.append((f"chunked / floor = {best:.3f} <= {limit} at B={batch}, C_local={classes}", best <= limit))
    else:
        results.append((f"chunked / floor <= {limit} at B={batch}, C_local={classes}", None))
    batch, classes, limit = MEMORY_TARGET
    row = next((r for r in rows if (r["B"], r["C"]) == (batch, classes)), None)
    if row and "dense" in row["peak"]:
        for name in [n for n in row["variants"] if n != "dense"]:
            ratio = row["peak"][name] / row["peak"]["dense"]
            results.append(
                (f"{name} peak / dense peak = {ratio:.3f} <= 1/3 at B={batch}, C_local={classes}", ratio <= limit)
            )
    else:
        results.append((f"chunked peak <= 1/3 of dense at B={batch}, C_local={classes}", None))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: B 512 x C_local 10k, 2 rounds")
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=None,
        help="BxC_LOCAL sizes (default 512x10000 512x100000 4096x31250; 24576x31250 is one rank of W = 64)",
    )
    parser.add_argument(
        "--chunk", type=parse_chunk, nargs="+", default=["auto"], help="head_chunk values (default auto)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        nargs="+",
        default=[4.0],
        help="head_chunk_budget in GiB (default 4); more values add variants of the first --chunk at those budgets",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5; medians)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--sample-rate", type=float, default=1.0, help="partial FC sample_rate (default 1)")
    parser.add_argument("--unpg", action="store_true", help="both heads with UNPG (replicated) as a loss")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--amp", action="store_true", help="heads under autocast (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument(
        "--fresh-buffers",
        action="store_true",
        help="chunked heads allocate their exps buffer every step instead of keeping it (on by itself where the "
        "kept buffers and the dense step would not fit in memory together)",
    )
    parser.add_argument("--rss", action="store_true", help="also the peak RSS of each variant in a fresh process")
    parser.add_argument("--rss-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if any(b < 0 for b in args.budget):
        parser.error("--budget values must be >= 0 GiB")
    if args.quick:
        args.sizes = args.sizes or [(512, 10_000)]
        args.repeats = min(args.repeats, 2)
    args.sizes = args.sizes or [(512, 10_000), (512, 100_000), (4096, 31_250)]

    import torch

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but torch sees no CUDA device; run on a GPU machine or use cpu")
        return 1
    if args.rss_worker:
        return rss_worker(args.rss_worker, *args.sizes[0], args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}")
    rows = []
    started = time.perf_counter()
    fresh = args.fresh_buffers
    for batch, classes in args.sizes:
        print(f"  B={batch} C_local={classes} ...", file=sys.stderr, flush=True)
        args.fresh_buffers = fresh
        rows.append(measure(batch, classes, args))
    print_table(rows, args, torch)
    print()
    failed = False
    for name, passed in check_targets(rows, args):
        print(f"{'SKIP' if passed is None else 'PASS' if passed else 'FAIL'} {name}")
        failed |= passed is False
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
