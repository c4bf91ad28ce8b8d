"""What an insightface RecordIO folder holds, and whether it is sound (inspect_rec); no torch.

Checks that every .idx offset lands on the start of a record (magic word, start flag, chunk inside the file), reads
the header record, and decodes a few evenly spaced images (or every image with `full`, counting the labels used).
`inspect` returns a report dict: counts, the layout, `problems` (anything that makes the folder unusable) and `odd`
(things that work but deserve a look).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..face_image import decode_face
from .recordio import CFLAG_START, CFLAG_WHOLE, LENGTH_BITS, LENGTH_MASK, MAGIC, IndexedRecordReader
from .recordio_folder import RecordIOFolder, read_property

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
    report = {"folder": str(root), "problems": [], "odd": []}
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
        dataset = RecordIOFolder(root)
    except (OSError, ValueError) as err:
        problems.append(str(err))
        return report
    report["header_record"] = dataset.has_header
    report["images"] = len(dataset)
    report["first_image_key"], report["last_image_key"] = int(dataset.keys[0]), int(dataset.keys[-1])
    report["other_records"] = len(reader) - len(dataset)
    expected_other = 1 + report["num_classes"] if dataset.has_header else 0
    if report["other_records"] != expected_other:
        report["odd"].append(
            f"{report['other_records']} records are not images, where the layout leads to expect {expected_other} "
            f"(the header record and one record per identity)"
        )
    indices = (
        range(len(dataset))
        if full
        else np.unique(np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int))
    )
    labels = []
    for index in tqdm(indices, desc="decoding", unit="img", disable=not (progress and full)):
        try:
            data, label, where = dataset.record(int(index))
            decode_face(data, where, tuple(report["image_size"]))  # as training decodes it: another size is an error
        except (OSError, ValueError) as err:
            problems.append(str(err))
            if len(problems) >= MAX_LISTED:
                break
            continue
        labels.append(int(label))
    report["decoded"] = len(labels)
    if full:
        report["classes_used"] = len(set(labels))
        if report["classes_used"] < report["num_classes"]:
            report["odd"].append(
                f"only {report['classes_used']} of the {report['num_classes']} identities in `property` have images"
            )
    else:
        report["sample_labels"] = labels
    return report
