"""An insightface RecordIO folder read without torch: `property`, the image keys and their labelled records.

The folder holds `train.rec`, `train.idx` and `property` ("num_classes,112,112"). If record 0 has a header with
flag > 0, its label[0] ends the image keys: images are keys [1, label[0]) and the identity records after them are
ignored, as insightface's MXFaceDataset does. Otherwise every key of the .idx is an image, in .idx order.

    folder = RecordIOFolder("/data/ms1m-retinaface-t1")
    data, label, where = folder.record(0); folder.num_classes, len(folder)
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from .recordio import IndexedRecordReader, RecordIOError, unpack_record


def read_property(root: Path) -> tuple[int, int, int]:
    """(num_classes, height, width) from `root/property`."""
    path = root / "property"
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} has no `property` file; create it with one line 'num_classes,112,112' "
            f"(tools/pack_rec.py writes it) so the number of identities is known"
        )
    text = path.read_text().strip()
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3 or not all(f.isdigit() for f in fields) or int(fields[0]) < 1:
        raise ValueError(f"{path} holds {text!r}, expected one line 'num_classes,height,width' such as '93431,112,112'")
    num_classes, height, width = (int(f) for f in fields)
    return num_classes, height, width


class RecordIOFolder:
    """The images of an insightface train.rec/train.idx folder as (encoded bytes, label) records."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"dataset folder {self.root} does not exist; set config.rec to a folder holding train.rec, train.idx and property"
            )
        self.num_classes, height, width = read_property(self.root)
        self.image_size = (height, width)
        self.reader = IndexedRecordReader(self.root / "train.idx", self.root / "train.rec")
        self.has_header = False
        self.keys = self._image_keys()
        if self.keys.size == 0:
            raise ValueError(f"{self.reader.idx_path} lists no image records; pack some images with tools/pack_rec.py")

    def _image_keys(self) -> np.ndarray:
        if 0 not in self.reader:
            return self.reader.keys.copy()
        header, _ = unpack_record(self.reader.read(0), where=f"{self.reader.rec_path} key 0")
        if header.flag == 0:
            return self.reader.keys.copy()
        self.has_header = True
        end = int(header.label[0])
        keys = np.arange(1, end, dtype=np.int64)
        missing = self.reader.missing_keys(keys)
        if missing.size:
            raise RecordIOError(
                f"{self.reader.idx_path}: the header record says images are keys [1, {end}) but key {int(missing[0])} is "
                f"not in the index; the .idx is incomplete or belongs to another .rec, rebuild it"
            )
        return keys

    def __len__(self) -> int:
        return int(self.keys.size)

    def record(self, index: int) -> tuple[bytes, int, str]:
        """(encoded image bytes, label, where) of image `index`; a label outside [0, num_classes) raises."""
        key = int(self.keys[index])
        where = f"{self.reader.rec_path} key {key}"
        header, body = unpack_record(self.reader.read(key), where=where)
        label = header.label if isinstance(header.label, numbers.Number) else header.label[0]
        label = int(label)
        if not 0 <= label < self.num_classes:
            raise ValueError(
                f"{where}: label {label} is outside [0, {self.num_classes}) given by {self.root / 'property'}; "
                f"fix num_classes in the property file"
            )
        return body, label, where
