"""Check an insightface RecordIO folder (train.rec, train.idx, property) and print what it holds.

Checks that every .idx offset lands on the start of a record (magic word, start flag, chunk inside the
file), reads the header record, and decodes a few evenly spaced images through RecordIOFaces; --full
reads and decodes every image and counts the labels actually used. Exits 1 if anything is wrong.

    python tools/inspect_rec.py /data/faces_emore
    python tools/inspect_rec.py /data/my_faces_rec --full --json
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recipes.arcface_torch.datasets.recordio import (
    CFLAG_START,
    CFLAG_WHOLE,
    LENGTH_BITS,
    LENGTH_MASK,
    MAGIC,
    IndexedRecordReader,
    unpack_record,
)
from recipes.arcface_torch.datasets.recordio_faces import RecordIOFaces, read_property

MAX_LISTED = 10


def check_offsets(reader: IndexedRecordReader, progress: bool = True) -> list[str]:
    """Problems with the .idx offsets: each must point at a magic word opening a whole or first chunk."""
    problems = []
    fd = os.open(reader.rec_path, os.O_RDONLY)
    try:
        for key, offset in tqdm(
            zip(reader.keys.tolist(), reader.offsets.tolist(), strict=False),
            total=len(reader),
            desc="offsets",
            unit="rec",
            disable=not progress,
        ):
            head = os.pread(fd, 8, offset)
            problem = None
            if len(head) < 8:
                problem = f"key {key}: offset {offset} leaves less than a record head before the end of the file"
            else:
                magic, lrec = struct.unpack("<II", head)
                length = lrec & LENGTH_MASK
                if magic != MAGIC:
                    problem = f"key {key}: offset {offset} does not hold the magic word (found 0x{magic:08X})"
                elif lrec >> LENGTH_BITS not in (CFLAG_WHOLE, CFLAG_START):
                    problem = f"key {key}: offset {offset} points into the middle of a split record"
                elif offset + 8 + length > reader.file_size:
                    problem = (
                        f"key {key}: record at offset {offset} needs {length} bytes but the file ends first (truncated)"
                    )
            if problem:
                problems.append(problem)
    finally:
        os.close(fd)
    return problems


def inspect(root: Path, samples: int = 8, full: bool = False, progress: bool = True) -> dict:
    """Everything the report prints, plus a list of problems (empty when the folder is sound)."""
    report = {"folder": str(root), "problems": []}
    problems = report["problems"]
    try:
        report["num_classes"], height, width = read_property(root)
        report["image_size"] = [height, width]
    except (OSError, ValueError) as err:
        problems.append(str(err))
    try:
        reader = IndexedRecordReader(root / "train.idx", root / "train.rec")
    except (OSError, ValueError) as err:
        problems.append(str(err))
        return report
    report["records"] = len(reader)
    report["rec_bytes"] = reader.file_size
    bad = check_offsets(reader, progress)
    report["bad_offsets"] = len(bad)
    problems.extend(bad[:MAX_LISTED])
    if len(bad) > MAX_LISTED:
        problems.append(f"... and {len(bad) - MAX_LISTED} more bad offsets")
    if bad or "num_classes" not in report:
        return report
    try:
        header, _ = unpack_record(reader.read(0), f"{reader.rec_path} key 0") if 0 in reader else (None, b"")
        dataset = RecordIOFaces(root, flip=False)
    except (OSError, ValueError) as err:
        problems.append(str(err))
        return report
    report["header_record"] = bool(header is not None and header.flag > 0)
    report["images"] = len(dataset)
    report["other_records"] = len(reader) - len(dataset)
    indices = (
        range(len(dataset))
        if full
        else np.unique(np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int))
    )
    labels = []
    for index in tqdm(indices, desc="decoding", unit="img", disable=not (progress and full)):
        try:
            image, label = dataset[int(index)]
        except (OSError, ValueError) as err:
            problems.append(str(err))
            if len(problems) >= MAX_LISTED:
                break
            continue
        labels.append(int(label))
        report["sample_shape"] = list(image.shape)
    report["decoded"] = len(labels)
    if full:
        report["classes_used"] = len(set(labels))
    else:
        report["sample_labels"] = labels
    return report


def _print_report(report: dict) -> None:
    rows = [("folder", report["folder"])]
    if "records" in report:
        rows.append(("records", f"{report['records']} in train.idx, {report['rec_bytes']} bytes in train.rec"))
        rows.append(
            ("offsets", f"{report['records'] - report['bad_offsets']}/{report['records']} land on a record start")
        )
    if "images" in report:
        how = (
            "header record gives keys [1, N+1)"
            if report["header_record"]
            else "no header record, every key is an image"
        )
        rows.append(("images", f"{report['images']} ({how}); {report['other_records']} other records"))
    if "num_classes" in report:
        height, width = report["image_size"]
        rows.append(("classes", f"{report['num_classes']} (property), image size {height}x{width}"))
    if "classes_used" in report:
        rows.append(
            ("labels used", f"{report['classes_used']} distinct labels over {report['decoded']} decoded images")
        )
    elif "decoded" in report:
        shape, labels = report.get("sample_shape"), report["sample_labels"]
        rows.append(("samples", f"{report['decoded']} decoded, shape {shape}, labels {labels}"))
    for problem in report["problems"]:
        rows.append(("PROBLEM", problem))
    rows.append(("status", "OK" if not report["problems"] else f"{len(report['problems'])} problem(s)"))
    for name, value in rows:
        print(f"{name:<12} {value}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with train.rec, train.idx and property")
    parser.add_argument("--samples", type=int, default=8, help="images to decode without --full (default 8)")
    parser.add_argument("--full", action="store_true", help="read and decode every image and count the labels used")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.samples < 1:
        print(
            f"error: --samples {args.samples} must be a positive number of images to decode, e.g. --samples 8 "
            f"(or --full to decode every image)",
            file=sys.stderr,
        )
        return 1
    if not args.root.is_dir():
        print(
            f"error: {args.root} is not a folder; pass the folder that holds train.rec, train.idx and property",
            file=sys.stderr,
        )
        return 1
    report = inspect(args.root, args.samples, args.full, progress=not args.quiet)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print_report(report)
    if report["problems"]:
        print(
            f"error: {args.root} has {len(report['problems'])} problem(s); the first: {report['problems'][0]}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
