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

import numpy as np

from recipes.arcface_torch.atomic_file import write_bytes_atomically
from recipes.arcface_torch.datasets.image_folder_faces import list_identity_folder
from recipes.arcface_torch.evaluation.identity_set import balanced_pairs
from recipes.arcface_torch.evaluation.lfw_pairs import read_lfw_pairs


def make_pairs(image_root: Path, output: Path, num_pairs: int = 6000, all_pairs: bool = False, seed: int = 0) -> dict:
    """Write the pairs file; return counts {'positive', 'negative', 'available_positive'}."""
    image_root = Path(image_root)
    _, samples = list_identity_folder(image_root)
    identity = np.array([label for _, label in samples], dtype=np.int64)
    names = [path.relative_to(image_root).as_posix() for path, _ in samples]
    if any(" " in name for name in names):
        bad = next(name for name in names if " " in name)
        raise ValueError(f"image path {bad!r} contains a space, which the pairs format cannot hold; rename it")
    first, second = np.triu_indices(identity.size, k=1)
    available = int((identity[first] == identity[second]).sum())
    if all_pairs:
        pairs, issame = np.stack([first, second], axis=1), identity[first] == identity[second]
    else:
        pairs, issame = balanced_pairs(identity, seed=seed, max_positives=max(1, num_pairs // 2))
    lines = [f"{names[a]} {names[b]} {int(same)}" for (a, b), same in zip(pairs.tolist(), issame.tolist(), strict=True)]
    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")
    write_bytes_atomically(output, ("\n".join(lines) + "\n").encode())
    return {"positive": int(issame.sum()), "negative": int((~issame).sum()), "available_positive": available}


def lfw_pairs_file(image_root: Path, lfw_pairs: Path, output: Path) -> dict:
    """Write LFW's pairs (read_lfw_pairs: fold order, images found under `image_root`) as a pairs file."""
    image_root = Path(image_root)
    pairs = read_lfw_pairs(lfw_pairs, image_root)
    folds = pairs[-1].fold + 1
    lines = [f"# LFW pairs from {Path(lfw_pairs).name}: {folds} fold(s), same-person rows then different-person rows"]
    for pair in pairs:
        first, second = (path.relative_to(image_root).as_posix() for path in (pair.first, pair.second))
        lines.append(f"{first} {second} {int(pair.issame)}")
    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")
    write_bytes_atomically(output, ("\n".join(lines) + "\n").encode())
    positive = sum(pair.issame for pair in pairs)
    return {"positive": positive, "negative": len(pairs) - positive, "folds": folds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_root", type=Path, help="folder with one sub-folder of face images per identity")
    parser.add_argument("output", type=Path, help="pairs file to write")
    parser.add_argument("--num-pairs", type=int, default=6000, help="balanced pairs to draw (half positive)")
    parser.add_argument("--all", action="store_true", help="every pair of images once instead of balanced pairs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw")
    parser.add_argument("--lfw-pairs", type=Path, metavar="FILE", help="LFW's pairs.txt: its pairs in fold order")
    args = parser.parse_args(argv)
    if args.lfw_pairs is not None:
        try:
            counts = lfw_pairs_file(args.image_root, args.lfw_pairs, args.output)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(
            f"wrote {counts['positive']} positive and {counts['negative']} negative pairs in {counts['folds']} LFW "
            f"folds to {args.output}"
        )
        return 0
    if args.num_pairs < 2:
        print(f"error: --num-pairs {args.num_pairs} must be >= 2 (one positive and one negative pair)", file=sys.stderr)
        return 1
    try:
        counts = make_pairs(args.image_root, args.output, args.num_pairs, args.all, args.seed)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {counts['positive']} positive and {counts['negative']} negative pairs to {args.output}")
    if not args.all and counts["positive"] < args.num_pairs // 2:
        print(
            f"note: the folder has only {counts['available_positive']} positive pairs, so the file holds "
            f"{counts['positive'] + counts['negative']} pairs instead of {args.num_pairs}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
