"""Verify an insightface-style face-recognition ONNX model (ours or anyone's); exit 0 only if all checks pass.

    python tools/verify_onnx.py mbf_unpg.onnx --checkpoint work_dirs/synthetic_mbf_unpg
    python tools/verify_onnx.py r50.onnx --checkpoint model.pt --network r50 --json
    python tools/verify_onnx.py packages/mbf_unpg                  # an insightface 2.x model package
    python tools/verify_onnx.py w600k_r50.onnx --images my_aligned_faces/
    python tools/verify_onnx.py model_int8.onnx --compare model.onnx --bin work_dirs/synthetic_rec/synthetic.bin

One line per check, PASS / FAIL / SKIP with its numbers: file (size, external data), onnx.checker
(full_check), input (one float NCHW 3xSxS, S >= 112, S % 16 == 0), output (exactly one), weights
(fp32), batch (batch 1, 8 and 32 give the same rows), finite (no NaN/inf on real faces), parity
(per-face cosine >= 0.9999 against the PyTorch checkpoint, when given), insightface (model_zoo.get_model
loads it as recognition and its mean/std equal what the model really expects) and latency
(onnxruntime CPU median at batch 1 and 32). Real faces: aligned crops of images that ship with
insightface and scikit-image, or --images (a folder of aligned crops, flat or one sub-folder per identity, a
RecordIO folder or a .bin). fp16 and int8 models (fp32 input and output, as tools/convert_onnx.py writes them) are
checked with their precision's cosine bound: fp32 0.9999, fp16 0.999, int8 0.98 (--min-cosine sets it).

--compare REFERENCE (.onnx or model.pt / training folder, the model this one was converted from) adds
the per-face cosine to the reference (worst and mean) and a side-by-side table: size, latency per batch
size (TensorRT / CUDA providers when present, else CPU), and with --bin the 10-fold accuracy (with
flip) and TAR@FAR=1e-3 of both; the candidate may lose at most --max-accuracy-drop points (0.5).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail
from recipes.arcface_torch.export.options import DEFAULT_MAX_ACCURACY_DROP, comparison_argument_error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="an .onnx file or an insightface model package folder (manifest.json)")
    parser.add_argument("--checkpoint", help="model.pt or a training output folder to compare against")
    parser.add_argument("--network", help="backbone of --checkpoint, e.g. r50 (default: config.json / metadata)")
    parser.add_argument("--embedding-size", type=int, help="embedding size of --checkpoint (default: config.json)")
    parser.add_argument(
        "--images",
        help="faces to use instead of the built-in ones: a folder of aligned crops (flat or one sub-folder per "
        "identity), a RecordIO folder or a .bin",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs for the latency median (default 5)")
    parser.add_argument("--compare", help="reference .onnx or model.pt / training folder to compare against")
    parser.add_argument("--bin", help="verification .bin file for the accuracy comparison (needs --compare)")
    parser.add_argument(
        "--min-cosine",
        type=float,
        help="per-face cosine bound (default by precision: fp32 0.9999, fp16 0.999, int8 0.98); with --bin the "
        "accuracy decides and the cosine is only reported unless this is given",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=DEFAULT_MAX_ACCURACY_DROP,
        help=f"accuracy points the model may lose against --compare on --bin (default {DEFAULT_MAX_ACCURACY_DROP})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object instead of the text report")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _argument_error(args) -> str | None:
    if args.runs < 1:
        return f"--runs {args.runs} must be at least 1; pass e.g. --runs 5"
    if args.embedding_size is not None and args.embedding_size <= 0:
        return f"--embedding-size {args.embedding_size} is not positive; pass e.g. 512"
    if args.images and not Path(args.images).exists():
        return (
            f"--images {args.images} does not exist; pass a folder of aligned face crops (flat or one sub-folder "
            f"per identity), a RecordIO folder or a .bin"
        )
    if args.bin and not args.compare:
        return "--bin measures accuracy against a reference; pass --compare REFERENCE as well"
    return comparison_argument_error(args.bin, args.min_cosine, args.max_accuracy_drop)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    problem = _argument_error(args)
    if problem:
        return fail(problem)
    from recipes.arcface_torch.export.onnx_verification import verify
    from recipes.arcface_torch.export.progress import stderr_progress

    report = verify(
        Path(args.model),
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        network=args.network,
        embedding_size=args.embedding_size,
        images=Path(args.images) if args.images else None,
        runs=args.runs,
        compare=Path(args.compare) if args.compare else None,
        bin_path=Path(args.bin) if args.bin else None,
        min_cosine=args.min_cosine,
        max_accuracy_drop=args.max_accuracy_drop,
        progress=stderr_progress(args.quiet or args.json),
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
