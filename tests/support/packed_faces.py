"""Small insightface-style RecordIO folders of random faces for the data-path tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from recipes.arcface_torch.datasets.recordio import IndexedRecordWriter, pack_record


def pack_random_faces(root: Path, images: int, classes: int, seed: int = 0, header: bool = False) -> Path:
    """`images` textured 112x112 JPEGs labelled key % classes in root/train.rec, .idx and property; with
    `header`, the MS1M layout: record 0 says images are keys 1..images, identity records follow them."""
    rng = np.random.default_rng(seed)
    first = 1 if header else 0
    with IndexedRecordWriter(root / "train.idx", root / "train.rec") as writer:
        if header:
            writer.write(0, pack_record([images + 1, images + 1 + classes], b"", id=0))
        for key in range(first, first + images):
            coarse = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
            image = cv2.resize(coarse, (112, 112), interpolation=cv2.INTER_CUBIC)
            jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            writer.write(key, pack_record(float(key % classes), jpeg, id=key))
        if header:
            for label in range(classes):
                writer.write(images + 1 + label, pack_record([0.0, 1.0], b"", id=label))
    (root / "property").write_text(f"{classes},112,112")
    return root
