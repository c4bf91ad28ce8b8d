"""`unpg-train CONFIG`: train (or resume) a run; the same as `python recipes/arcface_torch/train.py CONFIG`.

unpg-train recipes/arcface_torch/configs/synthetic_unpg
torchrun --nproc_per_node=8 -m recipes.arcface_torch.cli.train recipes/arcface_torch/configs/ms1mv3_r50_unpg
unpg-train recipes/arcface_torch/configs/synthetic_unpg --set loss=margin_softmax --set max_steps=50
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Partial-FC face recognition training (arcface_torch conventions).",
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="config file, e.g. recipes/arcface_torch/configs/synthetic_unpg")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    parser.add_argument("--force", action="store_true", help="train into an output folder that already holds a run")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume although run-defining keys (lr, batch_size, ...) changed since the checkpoint",
    )
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from recipes.arcface_torch.train import run_parsed  # torch is imported only now

    return run_parsed(args)


if __name__ == "__main__":
    sys.exit(main())
