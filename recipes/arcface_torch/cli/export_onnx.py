"""Export a trained backbone (model.pt or a training output folder) to one self-contained ONNX file.

    python tools/export_onnx.py work_dirs/synthetic_mbf_unpg --output mbf_unpg.onnx
    python tools/export_onnx.py model.pt --network r50 --embedding-size 512 --output r50.onnx --force
    python tools/export_onnx.py work_dirs/synthetic_mbf_unpg -o mbf_unpg.onnx --package packages/mbf_unpg
    python tools/export_onnx.py work_dirs/synthetic_ri --quality -o ri_quality.onnx

The network and embedding size come from the folder's config.json unless --network /
--embedding-size are given. The model has a dynamic batch axis, fp32 weights, input `input.1`
(N, 3, 112, 112) RGB normalised as (pixel - 127.5) / 127.5, one output (N, embedding_size), and
its network/loss/preprocessing in the metadata. It is published only after its onnxruntime
embeddings of real faces match PyTorch's (cosine >= 0.9999 per face). Exporter choice and file
handling: see recipes/arcface_torch/export/onnx_export.py. Opsets 11-17 (older runtimes) are written by
the TorchScript exporter, 18+ by the dynamo exporter. Progress goes to stderr (--quiet: none).
Check the result with tools/verify_onnx.py; convert it (fp16, int8, opset) with tools/convert_onnx.py.
--quality adds a second output `quality` (N, C): the face-quality scores of tools/face_quality.py (ri, ers, norm;
those the model has), computed from the recognisability.pt beside model.pt (or --centre); insightface's
get_model loads only one-output models, so ship the file without --quality to insightface pipelines.
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
    parser.add_argument(
        "--quality", action="store_true", help="add the second output `quality` (face-quality scores, see above)"
    )
    parser.add_argument("--centre", help="recognisability file for --quality (default: beside model.pt)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from recipes.arcface_torch.export.backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
    from recipes.arcface_torch.export.insightface_package import PackageError, model_id_from, write_package
    from recipes.arcface_torch.export.onnx_export import ExportError, check_output_path, export_backbone
    from recipes.arcface_torch.export.progress import stderr_progress
    from recipes.arcface_torch.face_quality import QualityModel, check_fp32
    from recipes.arcface_torch.recognisability_file import (
        RecognisabilityError,
        load_recognisability,
        recognisability_path,
    )

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
        if args.centre and not args.quality:
            raise CheckpointError("--centre is the centre file of --quality; add --quality or drop --centre")
        state = source.state_dict()
        if args.quality:
            check_fp32(state, source.model_path)
        backbone = build_backbone(network, embedding_size, state)
        quality_scores = ()
        if args.quality:
            centre = Path(args.centre) if args.centre else recognisability_path(source.model_path)
            backbone = QualityModel(backbone, load_recognisability(centre, embedding_size))
            quality_scores = backbone.scores
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
            quality_scores=quality_scores,
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
            f"{network}, {embedding_size}-d{', simplified' if report.simplified else ''}"
            f"{', quality output: ' + ','.join(quality_scores) if quality_scores else ''})"
        )
        if args.package:
            if quality_scores:
                print("note: the package's model has two outputs; insightface's get_model loads one-output models only")
            package = write_package(
                report.path, Path(args.package), model_id=model_id, embedding_size=embedding_size, force=args.force
            )
            wrote += f" and the insightface model package {package.folder} (model_id {package.model_id})"
        print(wrote)
    except (CheckpointError, ExportError, PackageError, RecognisabilityError) as error:
        return fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
