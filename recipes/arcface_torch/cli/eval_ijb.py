"""IJB-B / IJB-C 1:1 verification (TAR at FAR 1e-6 .. 1e-1) of a backbone checkpoint or an ONNX model.

Usage (from the repository root):

    python tools/eval_ijb.py r50_unpg.onnx --root /data/IJBC --target ijbc --output ijbc_results
    python tools/eval_ijb.py work_dirs/ms1mv3_r50_unpg/model.pt --network r50 --root /data/IJBB --target ijbb

The folder must follow insightface's layout: loose_crop/ and meta/<target>_name_5pts_score.txt,
meta/<target>_face_tid_mid.txt, meta/<target>_template_pair_label.txt. Writes
<name>_<target>_roc.png and <name>_<target>_scores.npy into --output and prints a TAR@FAR table
(--json prints the numbers as JSON instead).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail


def load_torch_model(path: Path, network: str | None, embedding_size: int | None, device: str):
    """The backbone (torch.nn.Module) in checkpoint `path` (a model.pt or a training folder), in eval mode on
    `device`; network and embedding size default to the training config.json beside it."""
    from recipes.arcface_torch.export.backbone_checkpoint import build_backbone, resolve_checkpoint

    source = resolve_checkpoint(path)
    backbone = build_backbone(source.network(network), source.embedding_size(embedding_size), source.state_dict())
    return backbone.to(device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="IJB-B/C 1:1 verification: TAR at FAR 1e-6 .. 1e-1.")
    parser.add_argument("model", type=Path, help="an .onnx model, or a backbone model.pt (then --network is needed)")
    parser.add_argument("--root", type=Path, required=True, help="IJB folder holding loose_crop/ and meta/")
    parser.add_argument("--target", default="ijbc", help="list-file prefix: ijbc or ijbb (default ijbc)")
    parser.add_argument(
        "--network",
        default=None,
        help="backbone name for a .pt checkpoint, e.g. r50 (default: from config.json beside it)",
    )
    parser.add_argument(
        "--embedding-size",
        type=int,
        default=None,
        help="embedding size of the .pt backbone (default: from config.json beside it, else 512)",
    )
    parser.add_argument("--device", default="cpu", help="torch device for a .pt checkpoint (default cpu)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="threads that read and align images")
    parser.add_argument("--output", type=Path, default=Path("ijb_results"), help="folder for the ROC PNG and scores")
    parser.add_argument("--name", default=None, help="method name in the table and file names (default: model stem)")
    parser.add_argument("--no-flip", action="store_true", help="embed without the flipped image")
    parser.add_argument("--no-faceness", action="store_true", help="do not weight images by their faceness score")
    parser.add_argument("--keep-norm", action="store_true", help="do not L2-normalise image features before pooling")
    parser.add_argument("--json", action="store_true", help="print the results as JSON (no progress bar)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="replace results of the same name in --output")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from recipes.arcface_torch.evaluation.ijb import evaluate_ijb, format_tar_table
    from recipes.arcface_torch.export.onnx_embedder import OnnxEmbedder

    name = args.name or args.model.stem
    existing = [
        p
        for p in (args.output / f"{name}_{args.target}_scores.npy", args.output / f"{name}_{args.target}_roc.png")
        if p.exists()
    ]
    if existing and not args.force:
        return fail(f"{existing[0]} already exists; pass --force to replace it, or --name / --output to keep it")
    try:
        if not args.model.exists():
            raise FileNotFoundError(f"model file {args.model} does not exist; pass an .onnx file or a model.pt")
        if args.model.suffix.lower() == ".onnx":
            model = OnnxEmbedder(args.model)
        else:
            model = load_torch_model(args.model, args.network, args.embedding_size, args.device)
        results = evaluate_ijb(
            model,
            args.root,
            prefix=args.target,
            batch_size=args.batch_size,
            flip=not args.no_flip,
            use_faceness=not args.no_faceness,
            normalize_images=not args.keep_norm,
            output_dir=args.output,
            name=name,
            num_workers=args.workers,
            progress=not (args.quiet or args.json),
        )
    except (OSError, ValueError, KeyError, ImportError) as error:
        return fail(error)
    tars = results["tar_at_far"]
    if args.json:
        payload = {
            "name": name,
            "target": results["prefix"],
            "num_images": results["num_images"],
            "num_templates": results["num_templates"],
            "num_pairs": results["num_pairs"],
            "tar_at_far": {f"{far:g}": (None if math.isnan(tar) else tar) for far, tar in tars.items()},
            "notes": {f"{far:g}": note for far, note in results["tar_at_far_notes"].items() if note},
            "files": results["files"],
        }
        print(json.dumps(payload, indent=2))
    else:
        print(
            f"{results['prefix']}: {results['num_images']} images, {results['num_templates']} templates, "
            f"{results['num_pairs']} pairs"
        )
        print(format_tar_table([(name, tars)]))
        for far, note in results["tar_at_far_notes"].items():
            if note:
                print(f"TAR@FAR={far:g} is nan: {note}")
        print(f"wrote {' and '.join(str(path) for path in results['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
