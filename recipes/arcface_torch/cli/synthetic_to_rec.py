"""Write the embedded synthetic identities as an insightface dataset folder, so the real-data path
(RecordIO reader, .bin verification) runs on data anyone can make without a download.

Writes OUTPUT/train.rec, train.idx, property (training identities, noisy labels included, JPEG q95)
and OUTPUT/synthetic.bin (held-out verification pairs), from the `synthetic` settings of a config.

    python tools/synthetic_to_rec.py work_dirs/synthetic_rec --config recipes/arcface_torch/configs/synthetic_unpg
    python recipes/arcface_torch/train.py recipes/arcface_torch/configs/synthetic_unpg --set rec=work_dirs/synthetic_rec
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from recipes.arcface_torch.cli.pack_rec import OUTPUT_NAMES, write_face_records
from recipes.arcface_torch.config import ConfigError, get_config
from recipes.arcface_torch.datasets.build import SYNTHETIC_VAL_OFFSET
from recipes.arcface_torch.datasets.recordio import RecordIOError
from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces, synthetic_verification_set
from recipes.arcface_torch.evaluation.bin_file import encode_image, save_bin
from recipes.arcface_torch.train import nest, parse_override

BIN_NAME = "synthetic.bin"


def write_synthetic_dataset(output: Path, synthetic, overwrite: bool = False, progress: bool = True) -> dict:
    output = Path(output)
    existing = [name for name in (*OUTPUT_NAMES, BIN_NAME) if (output / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{output / existing[0]} already exists; pass --overwrite to replace it or choose another folder"
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder for train.rec, train.idx, property and synthetic.bin")
    parser.add_argument(
        "--config",
        default="recipes/arcface_torch/configs/synthetic_unpg",
        help="config whose `synthetic` settings to use",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. synthetic.num_identities=100"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = get_config(args.config, **nest(parse_override(item) for item in args.set))
        counts = write_synthetic_dataset(args.output, config.synthetic, args.overwrite, progress=not args.quiet)
    except (ConfigError, OSError, ValueError, RecordIOError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"wrote {counts['images']} images of {counts['classes']} identities and {counts['pairs']} pairs to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
