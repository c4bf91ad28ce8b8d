"""Check an insightface RecordIO folder (train.rec, train.idx, property) and say what it holds.

Prints the identities, the images and their size, and anything odd, in plain words; checks that every .idx offset
lands on the start of a record and decodes a few evenly spaced images. --full decodes every image, counts the
identities that have images, and shows the raw layout (records, keys, header and identity records). Exits 1 if
anything makes the folder unusable.

    python tools/inspect_rec.py /data/faces_emore
    python tools/inspect_rec.py /data/my_faces_rec --full --json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail


def summary_lines(report: dict, full: bool) -> list[str]:
    """The report in plain words; the raw RecordIO layout only with `full`."""
    rows = [("folder", report["folder"])]
    if "num_classes" in report:
        rows.append(("identities", f"{report['num_classes']:,}"))
    if "images" in report:
        height, width = report["image_size"]
        checked = "all decoded" if full else f"{report.get('decoded', 0)} spread samples decoded"
        rows.append(("images", f"{report['images']:,} faces of {width}x{height} pixels ({checked})"))
    if "classes_used" in report:
        rows.append(("with images", f"{report['classes_used']:,} identities"))
    if full and "records" in report:
        layout = f"{report['records']:,} records in train.idx, {report['rec_bytes']:,} bytes in train.rec"
        if "images" in report:
            first, last = report["first_image_key"], report["last_image_key"]
            kind = (
                "a header record at key 0 names the image keys"
                if report["header_record"]
                else "no header record: every key is an image"
            )
            layout += f"; {kind}: {first}..{last}; {report['other_records']:,} other records"
        rows.append(("layout", layout))
        rows.append(
            ("offsets", f"{report['records'] - report['bad_offsets']:,}/{report['records']:,} land on a record start")
        )
    for note in report["odd"]:
        rows.append(("note", note))
    for problem in report["problems"]:
        rows.append(("PROBLEM", problem))
    rows.append(("status", "OK" if not report["problems"] else f"{len(report['problems'])} problem(s)"))
    return [f"{name:<12} {value}" for name, value in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with train.rec, train.idx and property")
    parser.add_argument("--samples", type=int, default=8, help="images to decode without --full (default 8)")
    parser.add_argument("--full", action="store_true", help="read and decode every image and count the labels used")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (no progress bars)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.samples < 1:
        return fail(
            f"--samples {args.samples} must be a positive number of images to decode, e.g. --samples 8 "
            f"(or --full to decode every image)"
        )
    if not args.root.is_dir():
        return fail(f"{args.root} is not a folder; pass the folder that holds train.rec, train.idx and property")
    from recipes.arcface_torch.datasets.recordio_inspection import inspect

    report = inspect(args.root, args.samples, args.full, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("\n".join(summary_lines(report, args.full)))
    if report["problems"]:
        return fail(f"{args.root} has {len(report['problems'])} problem(s); the first: {report['problems'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
