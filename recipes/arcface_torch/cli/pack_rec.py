"""Pack an identity-per-folder tree of aligned faces into an insightface RecordIO folder.

Writes OUTPUT/train.rec, train.idx and property ("num_classes,H,W") in the layout of MS1MV3 and
friends: key 0 is a header record (flag 2, label = [N+1, N+1+C]), keys 1..N the images (label = class,
encoded bytes stored as they are), keys N+1..N+C one record per identity (label = [first, end) of its
image keys). Images may be in any format OpenCV reads, colour or grey; JPEG/PNG faces of the right size are
stored as they are, others as JPEG. Faces of another size are an error unless `--resize 112` (already
cropped faces; a non-square one is centre-cropped to square first, or --resize-mode pad|stretch) or
`--landmarks FILE` (one line `path x1 y1 ... x5 y5` per image: 5-point alignment onto the arcface template;
tools/align_faces.py writes it) is given. Every image is decoded once to check it. Writing is atomic: temp files
in OUTPUT are renamed into place only after the last record, so an interrupted run leaves no half-written dataset.

    python tools/pack_rec.py /data/my_faces /data/my_faces_rec
    python tools/pack_rec.py /data/crops /data/crops_rec --resize 112
    python tools/pack_rec.py /data/photos /data/photos_rec --landmarks /data/photos/landmarks.txt
    python recipes/arcface_torch/train.py ...   # with config.rec = "/data/my_faces_rec"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.arcface_torch.cli.common import fail, force_argument, warn_deprecated_overwrite


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image_root", type=Path, help="folder with one sub-folder of face images per identity")
    parser.add_argument("output", type=Path, help="folder to write train.rec, train.idx and property into")
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
    parser.add_argument("--landmarks", type=Path, help="file of 'path x1 y1 ... x5 y5' lines: align those images")
    force_argument(parser, "replace an existing train.rec/train.idx/property")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    warn_deprecated_overwrite(args)
    if args.resize is not None and args.resize <= 0:
        return fail(f"--resize {args.resize} must be a positive size in pixels, e.g. 112")
    from recipes.arcface_torch.datasets.recordio import RecordIOError
    from recipes.arcface_torch.datasets.recordio_packing import pack_folder
    from recipes.arcface_torch.face_files import NoteOnce

    size = (args.resize, args.resize) if args.resize else tuple(args.image_size)
    try:
        counts = pack_folder(
            args.image_root,
            args.output,
            size,
            args.force,
            progress=not args.quiet,
            resize=args.resize is not None,
            landmarks=args.landmarks,
            resize_mode=args.resize_mode,
            note=NoteOnce(lambda message: print(f"note: {message}", file=sys.stderr)),
        )
    except (OSError, ValueError, RecordIOError) as err:
        return fail(err)
    print(
        f"wrote {args.output}/train.rec, train.idx and property: {counts['images']} images of {counts['classes']} identities"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
