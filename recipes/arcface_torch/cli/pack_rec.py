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

from tqdm import tqdm

from recipes.arcface_torch.atomic_file import write_bytes_atomically
from recipes.arcface_torch.datasets.image_folder_faces import list_identity_folder
from recipes.arcface_torch.datasets.recordio import IndexedRecordWriter, RecordIOError, pack_record
from recipes.arcface_torch.face_files import RESIZE_MODES, NoteOnce, prepare_face, read_landmarks

OUTPUT_NAMES = ("train.rec", "train.idx", "property")


def pack_folder(
    image_root: Path,
    output: Path,
    image_size=(112, 112),
    overwrite: bool = False,
    progress: bool = True,
    resize: bool = False,
    landmarks: Path | None = None,
    resize_mode: str = "crop",
    note=None,
) -> dict:
    """Pack `image_root` into `output`; return counts {'images', 'classes'}. `resize`: bring faces of another
    size to `image_size` (a non-square one by `resize_mode`, said once through `note`); `landmarks`: file of 5-point
    landmarks (see face_files) for alignment."""
    image_root, output = Path(image_root), Path(output)
    class_names, samples = list_identity_folder(image_root)
    points = read_landmarks(landmarks, image_root) if landmarks else {}
    existing = [name for name in OUTPUT_NAMES if (output / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{output / existing[0]} already exists; pass --overwrite to replace it or choose another output folder"
        )
    output.mkdir(parents=True, exist_ok=True)

    def items():
        for path, label in samples:
            yield label, prepare_face(path, image_size, resize, points.get(path.resolve()), "", resize_mode, note)

    return write_face_records(output, items(), len(samples), len(class_names), image_size, progress)


def write_face_records(
    output: Path, items, num_images: int, num_classes: int, image_size=(112, 112), progress: bool = True
) -> dict:
    """Write (label, encoded image) items, sorted by label, as train.rec/train.idx/property in `output`.

    Layout: key 0 header (label = [N+1, N+1+C]), keys 1..N images, keys N+1..N+C identity ranges.
    """
    ranges = [[0, 0] for _ in range(num_classes)]
    previous = -1
    with IndexedRecordWriter(output / "train.idx", output / "train.rec") as writer:
        writer.write(0, pack_record([num_images + 1, num_images + 1 + num_classes]))
        for key, (label, data) in enumerate(
            tqdm(items, total=num_images, desc="packing", unit="img", disable=not progress), start=1
        ):
            if label < previous or not 0 <= label < num_classes:
                raise ValueError(
                    f"image {key} has label {label} after label {previous}; items must be sorted by "
                    f"label and lie in [0, {num_classes})"
                )
            previous = label
            writer.write(key, pack_record(float(label), data, id=key))
            if ranges[label][0] == 0:
                ranges[label][0] = key
            ranges[label][1] = key + 1
        for label, (first, end) in enumerate(ranges):
            key = num_images + 1 + label
            writer.write(key, pack_record([first, end], id=key))
    write_bytes_atomically(output / "property", f"{num_classes},{image_size[0]},{image_size[1]}\n".encode())
    return {"images": num_images, "classes": num_classes}


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
        choices=RESIZE_MODES,
        default="crop",
        help="--resize of a non-square image: centre-crop it to square (default), pad it, or stretch it",
    )
    parser.add_argument("--landmarks", type=Path, help="file of 'path x1 y1 ... x5 y5' lines: align those images")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing train.rec/train.idx/property")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.resize is not None and args.resize <= 0:
        print(f"error: --resize {args.resize} must be a positive size in pixels, e.g. 112", file=sys.stderr)
        return 1
    size = (args.resize, args.resize) if args.resize else tuple(args.image_size)
    try:
        counts = pack_folder(
            args.image_root,
            args.output,
            size,
            args.overwrite,
            progress=not args.quiet,
            resize=args.resize is not None,
            landmarks=args.landmarks,
            resize_mode=args.resize_mode,
            note=NoteOnce(lambda message: print(f"note: {message}", file=sys.stderr)),
        )
    except (OSError, ValueError, RecordIOError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"packed {counts['images']} images of {counts['classes']} identities into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
