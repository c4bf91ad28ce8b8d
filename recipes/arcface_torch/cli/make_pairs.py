"""Write a verification pairs file (for tools/make_bin.py) from a folder with one sub-folder per identity.

Balanced (default): up to --num-pairs / 2 positive pairs (two images of one identity) drawn from all of
them, and as many negative pairs (two identities) drawn at random, shuffled; fixed by --seed. --all: every
pair of images once (the all-pairs protocol; the .bin then holds N(N-1)/2 pairs, so keep N small).
--lfw-pairs FILE: LFW's own pairs.txt, row by row in its fold order (tools/make_bin.py also reads that file
directly). Lines are `path1 path2 1|0` with paths relative to the image folder.

    python tools/make_pairs.py /data/test_faces /data/test_faces/pairs.txt --num-pairs 6000
    python tools/make_bin.py /data/test_faces/pairs.txt test_faces.bin --root /data/test_faces
    python tools/make_pairs.py lfw/aligned lfw/pairs_in_fold_order.txt --lfw-pairs lfw/pairs.txt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail, force_argument, warn_deprecated_overwrite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_root", type=Path, help="folder with one sub-folder of face images per identity")
    parser.add_argument("output", type=Path, help="pairs file to write")
    parser.add_argument("--num-pairs", type=int, default=6000, help="balanced pairs to draw (half positive)")
    parser.add_argument("--all", action="store_true", help="every pair of images once instead of balanced pairs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw")
    parser.add_argument("--lfw-pairs", type=Path, metavar="FILE", help="LFW's pairs.txt: its pairs in fold order")
    force_argument(parser, "replace an existing pairs file")
    args = parser.parse_args(argv)
    warn_deprecated_overwrite(args)
    if args.num_pairs < 2:
        return fail(f"--num-pairs {args.num_pairs} must be >= 2 (one positive and one negative pair)")
    if args.lfw_pairs is not None:
        from recipes.arcface_torch.evaluation.pair_files import lfw_pairs_file

        try:
            counts = lfw_pairs_file(args.image_root, args.lfw_pairs, args.output, force=args.force)
        except (OSError, ValueError) as err:
            return fail(err)
        print(
            f"wrote {args.output}: {counts['positive']} positive and {counts['negative']} negative pairs in "
            f"{counts['folds']} LFW folds"
        )
        return 0
    from recipes.arcface_torch.evaluation.pair_files import make_pairs

    try:
        counts = make_pairs(args.image_root, args.output, args.num_pairs, args.all, args.seed, force=args.force)
    except (OSError, ValueError) as err:
        return fail(err)
    if not args.all and counts["positive"] < args.num_pairs // 2:
        print(
            f"note: the folder has only {counts['available_positive']} positive pairs, so the file holds "
            f"{counts['positive'] + counts['negative']} pairs instead of {args.num_pairs}"
        )
    print(f"wrote {args.output}: {counts['positive']} positive and {counts['negative']} negative pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
