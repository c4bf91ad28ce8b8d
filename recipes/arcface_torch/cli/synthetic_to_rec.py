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

from recipes.arcface_torch.cli.common import fail, force_argument, warn_deprecated_overwrite


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
    force_argument(parser, "replace existing files in OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    warn_deprecated_overwrite(args)
    from recipes.arcface_torch.config import ConfigError, get_config, nest, parse_override
    from recipes.arcface_torch.datasets.recordio import RecordIOError
    from recipes.arcface_torch.datasets.synthetic_folder import write_synthetic_dataset

    try:
        config = get_config(args.config, **nest(parse_override(item) for item in args.set))
        counts = write_synthetic_dataset(args.output, config.synthetic, args.force, progress=not args.quiet)
    except (ConfigError, OSError, ValueError, RecordIOError) as error:
        return fail(error)
    print(
        f"wrote {counts['images']} images of {counts['classes']} identities and {counts['pairs']} pairs to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
