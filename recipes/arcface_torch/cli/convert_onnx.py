"""Convert a face-recognition model for deployment: fp16, int8, another opset, a repaired batch axis.

    python tools/convert_onnx.py model.onnx --output model_fp16.onnx --fp16
    python tools/convert_onnx.py model.onnx --output model_int8.onnx --int8 --calibration work_dirs/synthetic_rec
    python tools/convert_onnx.py work_dirs/synthetic_unpg --output model_op11.onnx --opset 11
    python tools/convert_onnx.py upstream_r50.onnx --output r50_fixed.onnx --fix-batch
    python tools/convert_onnx.py model.onnx --output model_int8.onnx --int8 --bin work_dirs/synthetic_rec/synthetic.bin

MODEL is an .onnx file or a checkpoint (model.pt or a training output folder, exported first at --opset;
the way to reach opsets 11-17, which the TorchScript exporter still writes). Options combine and run
in this order: --fix-batch (Reshape constants that froze the traced batch of an upstream torch2onnx.py
export become dynamic), --opset N (11 or newer), --simplify (onnxslim), then --fp16 (fp16 weights and
compute, fp32 input/output, normalisations and reductions fp32) or --int8 (onnxruntime static
quantization, per-channel int8 weights, activations calibrated on the faces that ship with insightface
plus --calibration: a folder of aligned crops (flat or one sub-folder per identity), a RecordIO folder / .rec,
or a .bin). The result is re-verified like tools/verify_onnx.py --compare MODEL does and written only if every
check passes: with --bin the verdict is the accuracy change (at most --max-accuracy-drop points lost) and the
per-face cosine is reported beside it; without, the cosine bound of the precision decides (fp16 0.999, int8 0.98;
--min-cosine sets it and then always gates). --force writes it anyway (and overwrites an existing output), saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail
from recipes.arcface_torch.export.options import DEFAULT_MAX_ACCURACY_DROP, MIN_OPSET, comparison_argument_error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="an .onnx file, or model.pt / a training output folder")
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--fp16", action="store_true", help="fp16 weights and compute, fp32 input and output")
    parser.add_argument("--int8", action="store_true", help="static int8 quantization calibrated on faces")
    parser.add_argument(
        "--calibration",
        help="extra int8 calibration faces: a folder of aligned crops (flat or one sub-folder per identity), "
        "a RecordIO folder or .rec, or a .bin",
    )
    parser.add_argument(
        "--calibration-count",
        type=int,
        default=128,
        help="faces taken from --calibration (default 128; 32 built-in faces are always used)",
    )
    parser.add_argument("--per-tensor", action="store_true", help="int8 weights per tensor instead of per channel")
    parser.add_argument("--opset", type=int, help=f"target opset ({MIN_OPSET} or newer)")
    parser.add_argument(
        "--fix-batch",
        action="store_true",
        help="repair Reshape constants that froze the traced batch (upstream torch2onnx exports)",
    )
    parser.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim (optional package)")
    parser.add_argument("--network", help="backbone of a checkpoint MODEL, e.g. r50 (default: config.json)")
    parser.add_argument(
        "--embedding-size", type=int, help="embedding size of a checkpoint MODEL (default: config.json)"
    )
    parser.add_argument("--bin", help="verification .bin: also check the accuracy drop against MODEL")
    parser.add_argument(
        "--min-cosine",
        type=float,
        help="per-face cosine bound (default by precision: fp16 0.999, int8 0.98); with --bin the accuracy decides "
        "and the cosine is only reported unless this is given",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=DEFAULT_MAX_ACCURACY_DROP,
        help=f"accuracy points the conversion may lose on --bin (default {DEFAULT_MAX_ACCURACY_DROP})",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite --output, and write it even if a verification check fails"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per latency measurement (default 3)")
    parser.add_argument("--json", action="store_true", help="print the verification report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _argument_error(args) -> str | None:
    if args.opset is not None and args.opset < MIN_OPSET:
        return f"--opset {args.opset} is older than {MIN_OPSET}; pass --opset {MIN_OPSET} or newer"
    if args.int8 and args.opset is not None and args.opset < 13:
        return f"--int8 needs opset 13 or newer (per-channel weights), not --opset {args.opset}; pass --opset 13 or drop --opset"
    if args.calibration and not args.int8:
        return "--calibration only applies to --int8; add --int8 or drop --calibration"
    if args.runs < 1:
        return f"--runs {args.runs} must be at least 1; pass e.g. --runs 3"
    if args.calibration_count < 1:
        return f"--calibration-count {args.calibration_count} must be at least 1; pass e.g. 128"
    if not (args.fp16 or args.int8 or args.opset or args.fix_batch or args.simplify):
        return "nothing to convert; pass --fp16, --int8, --opset N, --fix-batch or --simplify"
    return comparison_argument_error(args.bin, args.min_cosine, args.max_accuracy_drop)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    problem = _argument_error(args)
    if problem:
        return fail(problem)
    from recipes.arcface_torch.export.onnx_conversion import ConversionError, ConversionOptions, convert_model
    from recipes.arcface_torch.export.progress import stderr_progress

    options = ConversionOptions(
        fix_batch=args.fix_batch,
        opset=args.opset,
        simplify=args.simplify,
        fp16=args.fp16,
        int8=args.int8,
        calibration=Path(args.calibration) if args.calibration else None,
        calibration_count=args.calibration_count,
        per_channel=not args.per_tensor,
        min_cosine=args.min_cosine,
        max_accuracy_drop=args.max_accuracy_drop,
        bin_path=Path(args.bin) if args.bin else None,
        force=args.force,
        runs=args.runs,
    )
    try:
        report = convert_model(
            Path(args.model),
            Path(args.output),
            options,
            network=args.network,
            embedding_size=args.embedding_size,
            progress=stderr_progress(args.quiet or args.json),
        )
    except ConversionError as error:
        return fail(error)
    if args.json:
        print(
            json.dumps(
                {
                    "steps": report.steps,
                    "written": report.written,
                    "forced": report.forced,
                    "quantized_ops": dict(report.quantized_ops or {}),
                    "verification": report.verification.as_dict(),
                },
                indent=2,
            )
        )
    else:
        for step in report.steps:
            print(step)
        print(report.verification.text())
    if report.forced:
        print(
            f"warning: wrote {report.output} although verification failed, because --force was given", file=sys.stderr
        )
    elif report.written:
        print(
            f"wrote {report.output} ({report.output.stat().st_size / 2**20:.2f} MiB)",
            file=sys.stderr if args.json else sys.stdout,
        )
    else:
        failed = [c.name for c in report.verification.checks if c.failed]
        print(
            f"error: the converted model fails verification ({', '.join(failed)}), so {report.output} was not "
            f"written; see the report above, or pass --force to write it anyway",
            file=sys.stderr,
        )
    return 0 if report.verification.passed else 1


if __name__ == "__main__":
    sys.exit(main())
