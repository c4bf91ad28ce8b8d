"""Build an insightface verification .bin (like lfw.bin) from a pairs list.

Each line of the pairs file is `path1 path2 1` (same identity) or `path1 path2 0` (different); blank
lines and lines starting with '#' are skipped; relative paths are resolved against --root (default:
the pairs file's folder). LFW's own pairs.txt (first line `10 300`) is read as it is, in LFW's fold order, so
the .bin's 10-fold accuracy is LFW's view-2 protocol. The .bin is a pickle (protocol 4) of (list of encoded image bytes, list of
bools), images 2k and 2k+1 forming pair k, exactly what insightface's `load_bin` reads. Images may be in
any format OpenCV reads, colour or grey; `--resize 112` brings already-cropped faces of another size to
112x112 (a non-square one centre-cropped first, or --resize-mode pad|stretch) and `--landmarks FILE` aligns the listed images (see tools/pack_rec.py). Every image is decoded
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

from tqdm import tqdm

from recipes.arcface_torch.evaluation.bin_file import save_bin
from recipes.arcface_torch.evaluation.lfw_pairs import looks_like_lfw_pairs, read_lfw_pairs
from recipes.arcface_torch.face_files import RESIZE_MODES, NoteOnce, prepare_face, read_landmarks


def read_pairs(pairs_path: Path, root: Path) -> list[tuple[Path, Path, bool, int]]:
    """[(path1, path2, issame, line number)] from a pairs file; malformed lines raise naming the line."""
    if not pairs_path.is_file():
        raise FileNotFoundError(f"pairs file {pairs_path} not found; write one line 'path1 path2 0|1' per pair")
    if looks_like_lfw_pairs(pairs_path):  # LFW's own pairs.txt, kept in its fold order
        return [(pair.first, pair.second, pair.issame, pair.line) for pair in read_lfw_pairs(pairs_path, root)]
    pairs = []
    for number, line in enumerate(pairs_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3 or fields[2] not in ("0", "1"):
            raise ValueError(
                f"{pairs_path} line {number}: {line.strip()!r} is not 'path1 path2 0|1'; fix or remove the line"
            )
        pairs.append((root / fields[0], root / fields[1], fields[2] == "1", number))
    if not pairs:
        raise ValueError(f"{pairs_path} lists no pairs; add lines 'path1 path2 0|1'")
    return pairs


def make_bin(
    pairs_path: Path,
    output: Path,
    root: Path | None = None,
    image_size=(112, 112),
    progress: bool = True,
    force: bool = False,
    resize: bool = False,
    landmarks: Path | None = None,
    resize_mode: str = "crop",
    note=None,
) -> int:
    """Write the .bin for `pairs_path` to `output`; return the number of pairs. An existing `output` is
    replaced only with `force`. Each distinct image is read once."""
    output = Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists; pass --force to replace it, or choose another output file")
    pairs_path = Path(pairs_path)
    root = Path(root) if root is not None else pairs_path.parent
    pairs = read_pairs(pairs_path, root)
    points = read_landmarks(landmarks, root) if landmarks else {}
    prepared: dict[Path, bytes] = {}
    bins, issame = [], []
    for first, second, same, number in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        for path in (first, second):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{pairs_path} line {number}: image {path} does not exist; fix the path or --root"
                )
            key = path.resolve()
            if key not in prepared:
                prepared[key] = prepare_face(
                    path, image_size, resize, points.get(key), f"{pairs_path} line {number}: {path}", resize_mode, note
                )
            bins.append(prepared[key])
        issame.append(same)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")
    save_bin(output, bins, issame)  # atomic: a full disk keeps any previous file
    return len(issame)


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
        choices=RESIZE_MODES,
        default="crop",
        help="--resize of a non-square image: centre-crop it to square (default), pad it, or stretch it",
    )
    parser.add_argument(
        "--landmarks", type=Path, help="file of 'path x1 y1 ... x5 y5' lines (relative to --root): align those images"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    if args.resize is not None and args.resize <= 0:
        print(f"error: --resize {args.resize} must be a positive size in pixels, e.g. 112", file=sys.stderr)
        return 1
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
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {count} pairs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
