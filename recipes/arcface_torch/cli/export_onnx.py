"""Export a trained backbone (model.pt or a training output folder) to one self-contained ONNX file.

    python tools/export_onnx.py work_dirs/synthetic_mbf_unpg --output mbf_unpg.onnx
    python tools/export_onnx.py model.pt --network r50 --embedding-size 512 --output r50.onnx --force
    python tools/export_onnx.py work_dirs/synthetic_mbf_unpg -o mbf_unpg.onnx --package packages/mbf_unpg

The network and embedding size come from the folder's config.json unless --network /
--embedding-size are given. The model has a dynamic batch axis, fp32 weights, input `input.1`
(N, 3, 112, 112) RGB normalised as (pixel - 127.5) / 127.5, one output (N, embedding_size), and
its network/loss/preprocessing in the metadata. It is published only after its onnxruntime
embeddings of real faces match PyTorch's (cosine >= 0.9999 per face). Exporter choice and file
handling: see recipes/arcface_torch/export/onnx_export.py. Opsets 11-17 (older runtimes) are written by
the TorchScript exporter, 18+ by the dynamo exporter. Progress goes to stderr (--quiet: none).
Check the result with tools/verify_onnx.py; convert it (fp16, int8, opset) with tools/convert_onnx.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail
from recipes.arcface_torch.export.options import DEFAULT_OPSET, MIN_OPSET


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="model.pt, or a training output folder holding model.pt and config.json")
    parser.add_argument("-o", "--output", help="ONNX file to write (default: model.onnx beside model.pt)")
    parser.add_argument("--network", help="backbone name, e.g. r50 or mbf (default: from config.json)")
    parser.add_argument("--embedding-size", type=int, help="embedding size (default: from config.json, else 512)")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET} or newer (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file / package")
    parser.add_argument("--package", help="also write an insightface 2.x model package (manifest V2) to this folder")
    parser.add_argument("--model-id", help="model_id for --package (default: the config name or output file name)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from recipes.arcface_torch.export.backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
    from recipes.arcface_torch.export.insightface_package import PackageError, model_id_from, write_package
    from recipes.arcface_torch.export.onnx_export import ExportError, check_output_path, export_backbone
    from recipes.arcface_torch.export.progress import stderr_progress

    try:
        source = resolve_checkpoint(args.source)
        output = Path(args.output) if args.output else source.model_path.with_suffix(".onnx")
        check_output_path(output, args.force)  # fail before the slow part
        if args.embedding_size is not None and args.embedding_size <= 0:
            raise CheckpointError(f"--embedding-size {args.embedding_size} is not positive; pass e.g. 512")
        network = source.network(args.network)
        embedding_size = source.embedding_size(args.embedding_size)
        if args.package:
            model_id = args.model_id or model_id_from(source.config.get("config_name") or output.stem)
            package_dir = Path(args.package)
            if package_dir.exists() and not args.force:
                raise PackageError(f"package folder {package_dir} already exists; pass --force to replace it")
        backbone = build_backbone(network, embedding_size, source.state_dict())
        config = source.config
        margins = config.get("margin_list")
        metadata = {
            "network": network,
            "embedding_size": embedding_size,
            "loss": config.get("loss"),
            "config_name": config.get("config_name"),
            "margin_list": json.dumps(margins) if margins is not None else None,
        }
        report = export_backbone(
            backbone,
            output,
            metadata=metadata,
            opset=args.opset,
            simplify=args.simplify,
            force=args.force,
            progress=stderr_progress(args.quiet),
        )
        print(
            f"parity with PyTorch on {report.faces} real faces at batch sizes "
            f"{', '.join(map(str, report.batch_sizes))}: min cosine {report.parity.min_cosine:.7f}, "
            f"max abs diff {report.parity.max_abs_diff:.3g} (relative {report.parity.relative_diff:.2g})"
        )
        for path in report.removed_stale:
            print(f"removed stale external-data file {path}")
        wrote = (
            f"wrote {report.path} ({report.size_bytes / 2**20:.1f} MiB, opset {report.opset}, "
            f"{network}, {embedding_size}-d{', simplified' if report.simplified else ''})"
        )
        if args.package:
            package = write_package(
                report.path, Path(args.package), model_id=model_id, embedding_size=embedding_size, force=args.force
            )
            wrote += f" and the insightface model package {package.folder} (model_id {package.model_id})"
        print(wrote)
    except (CheckpointError, ExportError, PackageError) as error:
        return fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
