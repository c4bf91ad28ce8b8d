"""The embedded synthetic identities written as an insightface dataset folder, so the real-data path (RecordIO
reader, .bin verification) runs on data anyone can make without a download.

OUTPUT/train.rec, train.idx, property: the training identities (noisy labels included, JPEG q95);
OUTPUT/synthetic.bin: held-out verification pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..evaluation.bin_file import encode_image, save_bin
from .build import SYNTHETIC_VAL_OFFSET
from .recordio_packing import OUTPUT_NAMES, write_face_records
from .synthetic_faces import SyntheticFaces, synthetic_verification_set

BIN_NAME = "synthetic.bin"


def write_synthetic_dataset(output: Path, synthetic, force: bool = False, progress: bool = True) -> dict:
    """Write train.rec/.idx/property (training identities) and synthetic.bin (held-out pairs) from the `synthetic`
    settings of a config; an existing file is replaced only with `force`. Returns counts."""
    output = Path(output)
    existing = [name for name in (*OUTPUT_NAMES, BIN_NAME) if (output / name).exists()]
    if existing and not force:
        raise FileExistsError(
            f"{output / existing[0]} already exists; pass --force to replace it or choose another folder"
        )
    output.mkdir(parents=True, exist_ok=True)
    faces = SyntheticFaces(
        synthetic.num_identities,
        synthetic.images_per_identity,
        seed=synthetic.seed,
        label_noise=synthetic.label_noise,
        identity_offset=synthetic.identity_offset,
        flip=False,
        preset=synthetic.preset,
        max_yaw=synthetic.max_yaw,
    )
    order = np.argsort(faces.labels, kind="stable")  # records grouped by (possibly noisy) training label

    def items():
        for index in order:
            identity, sample = divmod(int(index), synthetic.images_per_identity)
            yield int(faces.labels[index]), encode_image(faces.render(faces.identity_offset + identity, sample))

    counts = write_face_records(output, items(), len(faces), faces.num_classes, progress=progress)
    pairs = synthetic_verification_set(
        synthetic.val_identities,
        synthetic.val_pairs,
        seed=synthetic.seed,
        identity_offset=SYNTHETIC_VAL_OFFSET,
        preset=synthetic.preset,
        max_yaw=synthetic.max_yaw,
    )
    save_bin(output / BIN_NAME, [encode_image(image) for image in pairs.images], pairs.issame.tolist())
    return {**counts, "pairs": pairs.num_pairs}
