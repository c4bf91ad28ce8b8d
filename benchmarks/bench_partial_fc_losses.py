"""Step time of each partial-FC loss relative to the plain margin softmax: one forward + backward of the head,
CPU float32, one process.

Every variant is a PartialFC head with CombinedMarginLoss(64, 1.0, 0.5, 0.0) (CosFace (1.0, 0.0, 0.4) for
USS, as its paper) and the same class centres (C_local, D=512), embeddings (B, D) and labels; only the
list of losses differs. USS is timed with its term active (epoch >= start_epoch, bank written by the warm-up
step). Per (B, C_local) the variants run interleaved (the order rotates every repetition) after one untimed
warm-up step each; the table shows each variant's median step time and its ratio to the margin softmax
measured in the same run, so machine load hits every variant alike. One intra-op thread by default
(--threads): on a shared CPU multi-threaded ops wait on descheduled threads.

    python benchmarks/bench_partial_fc_losses.py --quick      # B 256, C_local 10k, ~1 minute
    python benchmarks/bench_partial_fc_losses.py              # B 256 512, C_local 10k 100k
    python benchmarks/bench_partial_fc_losses.py --batch-sizes 1024 --classes 10000 --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from plugins.magface import MagFace
from plugins.npcface import NPCFace
from plugins.partial_fc import PartialFC
from plugins.unpg import UNPG
from plugins.uss import USS
from recipes.arcface_torch.margin_loss import CombinedMarginLoss

ARCFACE, COSFACE = (1.0, 0.5, 0.0), (1.0, 0.0, 0.4)
VARIANTS = {  # name: (margin_list, losses)
    "margin_softmax": (ARCFACE, lambda: []),
    "unpg": (ARCFACE, lambda: [UNPG()]),
    "magface": (ARCFACE, lambda: [MagFace()]),
    "npcface": (ARCFACE, lambda: [NPCFace()]),
    "uss": (COSFACE, lambda: [USS(start_epoch=0)]),
    "magface+unpg": (ARCFACE, lambda: [MagFace(), UNPG()]),
    "npcface+unpg": (ARCFACE, lambda: [NPCFace(), UNPG()]),
}


def build_heads(batch: int, classes: int, dim: int, seed: int = 0):
    torch.manual_seed(seed)
    weight = torch.nn.Parameter(torch.normal(0, 0.01, (classes, dim)))
    heads = {}
    for name, (margins, losses) in VARIANTS.items():
        head = PartialFC(CombinedMarginLoss(64.0, *margins), dim, classes, losses=losses())
        head.weight = weight  # the very same class centres
        heads[name] = head
    # MagFace's magnitude range is [10, 110]: embeddings with norms around 30
    embeddings = (torch.randn(batch, dim) * (30.0 / dim**0.5)).requires_grad_(True)
    labels = torch.randint(0, classes, (batch,))
    return heads, weight, embeddings, labels


def step(head, weight, embeddings, labels) -> float:
    embeddings.grad = None
    weight.grad = None
    for p in head.losses.parameters():
        p.grad = None
    started = time.perf_counter()
    loss = head(embeddings, labels)
    loss.backward()
    elapsed = time.perf_counter() - started
    if not torch.isfinite(loss):
        raise RuntimeError(f"non-finite loss {float(loss)} in the benchmark; check the set-up")
    return elapsed


def measure(batch: int, classes: int, dim: int, repeats: int) -> dict[str, list[float]]:
    heads, weight, embeddings, labels = build_heads(batch, classes, dim)
    names = list(heads)
    for name in names:  # warm-up; also writes USS's memory bank
        step(heads[name], weight, embeddings, labels)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            times[name].append(step(heads[name], weight, embeddings, labels))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000], help="C_local values")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="B 256, C_local 10k, 5 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.classes, args.repeats = [256], [10_000], 5
    if min(args.batch_sizes + args.classes + [args.dim, args.repeats, args.threads]) < 1:
        print("error: --batch-sizes, --classes, --dim, --repeats and --threads must be >= 1", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    names = list(VARIANTS)
    print(
        f"partial-FC head, forward + backward, float32, {args.threads} thread(s), D={args.dim}, "
        f"median of {args.repeats} interleaved repetitions; ratio = variant / margin_softmax\n"
    )
    header = "| B | C_local | " + " | ".join(names) + " |"
    print(header)
    print("|" + "---|" * (len(names) + 2))
    for batch in args.batch_sizes:
        for classes in args.classes:
            times = measure(batch, classes, args.dim, args.repeats)
            base = statistics.median(times["margin_softmax"])
            cells = [f"{base * 1000:.0f} ms"] + [f"{statistics.median(times[n]) / base:.2f}" for n in names[1:]]
            print(f"| {batch} | {classes} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
