"""Build an insightface verification .bin (like lfw.bin) from a pairs list.

Each line of the pairs file is `path1 path2 1` (same identity) or `path1 path2 0` (different); blank
lines and lines starting with '#' are skipped; relative paths are resolved against --root (default:
the pairs file's folder). LFW's own pairs.txt (first line `10 300`) is read as it is, in LFW's fold order,
so the .bin's 10-fold accuracy is LFW's view-2 protocol. The .bin is a pickle (protocol 4) of (list of
encoded image bytes, list of bools), images 2k and 2k+1 forming pair k, exactly what insightface's
`load_bin` reads. Images may be in any format OpenCV reads, colour or grey; `--resize 112` brings
already-cropped faces of another size to 112x112 (a non-square one centre-cropped first, or --resize-mode
pad|stretch) and `--landmarks FILE` aligns the listed images (see tools/pack_rec.py). Every image is decoded
once to check it; the file is written to a temp name and renamed, never left half-written.
tools/make_pairs.py writes a pairs file from a folder of identities.

    python tools/make_pairs.py /data/my_faces pairs.txt --num-pairs 6000
    python tools/make_bin.py pairs.txt my_val.bin --root /data/my_faces --resize 112
    python tools/make_bin.py lfw/pairs.txt lfw.bin --root lfw/aligned
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail, force_argument, warn_deprecated_overwrite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", type=Path, help="text file, one 'path1 path2 0|1' per line")
    parser.add_argument("output", type=Path, help="the .bin to write")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="folder the image paths are relative to (default: the pairs file's folder)",
    )
    parser.add_argument(
        "--image-size", type=int, nargs=2, default=(112, 112), metavar=("H", "W"), help="required face size"
    )
    parser.add_argument(
        "--resize", type=int, metavar="SIZE", help="resize faces of another size to SIZE x SIZE (already-cropped faces)"
    )
    parser.add_argument(
        "--resize-mode",
        choices=("crop", "pad", "stretch"),
        default="crop",
        help="--resize of a non-square image: centre-crop it to square (default), pad it, or stretch it",
    )
    parser.add_argument(
        "--landmarks", type=Path, help="file of 'path x1 y1 ... x5 y5' lines (relative to --root): align those images"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    force_argument(parser, "replace an existing output file")
    args = parser.parse_args(argv)
    warn_deprecated_overwrite(args)
    if args.resize is not None and args.resize <= 0:
        return fail(f"--resize {args.resize} must be a positive size in pixels, e.g. 112")
    from recipes.arcface_torch.evaluation.pair_files import make_bin
    from recipes.arcface_torch.face_files import NoteOnce

    size = (args.resize, args.resize) if args.resize else tuple(args.image_size)
    try:
        count = make_bin(
            args.pairs,
            args.output,
            args.root,
            size,
            progress=not args.quiet,
            force=args.force,
            resize=args.resize is not None,
            landmarks=args.landmarks,
            resize_mode=args.resize_mode,
            note=NoteOnce(lambda message: print(f"note: {message}", file=sys.stderr)),
        )
    except (OSError, ValueError) as err:
        return fail(err)
    print(f"wrote {args.output}: {count} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
