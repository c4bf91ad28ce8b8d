"""Detect and align the faces in a folder of photos (one sub-folder per identity) onto the arcface 112x112 template.

Writes OUTPUT/<identity>/<photo>.jpg (one face per photo), OUTPUT/align_report.csv (per photo: status, detector
score, faces found, the chosen box and 5 landmarks, or why it was skipped), OUTPUT/landmarks.txt (the file
pack_rec and make_bin read with --landmarks) and a summary line. Detectors are ONNX files you have on disk, never
downloaded: --yunet (OpenCV's YuNet, face_detection_yunet_2023mar.onnx from the OpenCV model zoo) or --scrfd
(insightface's det_*.onnx or a model folder such as buffalo_l). A photo with several faces keeps the one --choose
picks (default central-score: detector score weighted towards the image centre, right for one-subject photos);
a photo with no face is listed in the report, or kept as a centre crop with --fallback center-crop. Runs on
--workers processes and resumes: photos finished by an earlier run with the same settings are kept unless --force.

    unpg-align-faces /data/photos /data/aligned --yunet face_detection_yunet_2023mar.onnx
    unpg-pack-rec /data/aligned /data/aligned_rec
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("photos", type=Path, help="folder with one sub-folder of photos per identity")
    parser.add_argument("output", type=Path, help="folder for the aligned tree, the report and the landmarks file")
    detector = parser.add_mutually_exclusive_group()
    detector.add_argument(
        "--yunet", type=Path, metavar="ONNX", help="OpenCV YuNet model (face_detection_yunet_2023mar.onnx)"
    )
    detector.add_argument("--scrfd", type=Path, metavar="ONNX|DIR", help="insightface SCRFD det_*.onnx or model folder")
    parser.add_argument(
        "--choose",
        default="central-score",
        choices=("central-score", "score", "largest", "central", "only"),
        help="face to keep when a photo has several (only: skip such photos as several_faces)",
    )
    parser.add_argument("--min-score", type=float, default=0.5, help="detector score below which a face is ignored")
    parser.add_argument(
        "--min-size", type=float, default=0.0, help="ignore faces whose box's shorter side is smaller (pixels)"
    )
    parser.add_argument(
        "--fallback",
        default="none",
        choices=("none", "center-crop"),
        help="photos without a face: list them only (none) or keep their centre crop (roughly aligned sets)",
    )
    parser.add_argument("--size", type=int, default=112, help="side of the aligned face (a multiple of 112)")
    parser.add_argument("--format", default="jpg", choices=("jpg", "png"), help="file format of the aligned faces")
    parser.add_argument(
        "--detection-size", type=int, default=640, help="longest side photos are scaled down to for detection"
    )
    parser.add_argument(
        "--workers", type=int, default=_default_workers(), help="processes (default: the CPUs available)"
    )
    parser.add_argument("--report", type=Path, help="report file, .csv or .json (default OUTPUT/align_report.csv)")
    parser.add_argument("--landmarks", type=Path, help="landmarks file to write (default OUTPUT/landmarks.txt)")
    parser.add_argument("--force", action="store_true", help="redo every photo, replacing earlier outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of a line (no progress bar)"
    )
    return parser


def summary_line(summary: dict) -> str:
    counts = summary["counts"]
    line = (
        f"wrote {summary['output']}: aligned {counts['aligned']} of {summary['photos']} photos "
        f"({summary['chosen_among_several']} chosen among several faces)"
    )
    line += f"; fallback {counts['fallback']}; no face {counts['no_face']}; several faces {counts['several_faces']}"
    line += f"; unreadable {counts['unreadable']}"
    if counts["failed"]:
        line += f"; detector failed {counts['failed']}"
    if summary["kept"]:
        line += f"; {summary['kept']} kept from an earlier run"
    if summary["images_per_second"]:
        line += f"; {summary['images_per_second']:g} photos/s on {summary['workers']} process(es)"
    return line + f"; report {summary['report']}"


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.yunet is None and args.scrfd is None:
        return fail(
            "no face detector given; pass --yunet face_detection_yunet_2023mar.onnx (from "
            "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) or --scrfd with insightface's "
            "det_10g.onnx or a buffalo_l folder"
        )

    from tqdm import tqdm

    from recipes.arcface_torch.atomic_file import DiskFullError
    from recipes.arcface_torch.face_detection import DetectorError, DetectorSpec
    from recipes.arcface_torch.photo_alignment import AlignSettings, align_folder

    kind, path = ("yunet", args.yunet) if args.yunet is not None else ("scrfd", args.scrfd)
    spec = DetectorSpec(kind, str(path), min_score=args.min_score, detection_side=args.detection_size)
    settings = AlignSettings(
        size=args.size, choose=args.choose, min_size=args.min_size, fallback=args.fallback, image_format=args.format
    )

    def progress(total: int):
        return tqdm(total=total, desc="aligning", unit="photo", file=sys.stderr, disable=args.quiet or args.json)

    try:
        summary = align_folder(
            args.photos, args.output, spec, settings, args.workers, args.force, progress, args.report, args.landmarks
        )
    except KeyboardInterrupt:
        print("interrupted; the photos finished so far are kept: run the same command to resume", file=sys.stderr)
        return 130
    except (DetectorError, DiskFullError, OSError, ValueError) as error:
        return fail(error)
    print(json.dumps(summary) if args.json else summary_line(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
