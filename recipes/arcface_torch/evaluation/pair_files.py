"""Verification pairs files: `path1 path2 1|0` lines, written from an identity folder and turned into a .bin.

make_pairs: balanced pairs (every positive pair up to a cap, as many random negatives) or every pair, with paths
relative to the identity folder; lfw_pairs_file: LFW's own pairs.txt in its fold order (see lfw_pairs). make_bin:
each listed image decoded once, brought to the face size (as it is, resized, or aligned with 5-point landmarks: see
face_files), and written as an insightface .bin (a pickle of (list of encoded images, list of bools), images 2k and
2k+1 forming pair k), atomically; it reads LFW's pairs.txt as it is. No torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic_file import write_bytes_atomically
from ..face_files import list_identity_folder, prepare_face, read_landmarks
from .balanced_pairs import balanced_pairs
from .bin_file import save_bin
from .lfw_pairs import looks_like_lfw_pairs, read_lfw_pairs


def make_pairs(
    image_root: Path, output: Path, num_pairs: int = 6000, all_pairs: bool = False, seed: int = 0, force: bool = False
) -> dict:
    """Write the pairs file (an existing one only with `force`); return counts {'positive', 'negative',
    'available_positive'}."""
    image_root, output = Path(image_root), Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists; pass --force to replace it, or choose another output file")
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
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")
    write_bytes_atomically(output, ("\n".join(lines) + "\n").encode())
    return {"positive": int(issame.sum()), "negative": int((~issame).sum()), "available_positive": available}


def lfw_pairs_file(image_root: Path, lfw_pairs: Path, output: Path, force: bool = False) -> dict:
    """Write LFW's pairs (read_lfw_pairs: fold order, images found under `image_root`) as a pairs file (an existing
    one only with `force`); return counts {'positive', 'negative', 'folds'}."""
    image_root, output = Path(image_root), Path(output)
    if output.exists() and not force:
        raise FileExistsError(f"{output} already exists; pass --force to replace it, or choose another output file")
    pairs = read_lfw_pairs(lfw_pairs, image_root)
    folds = pairs[-1].fold + 1
    lines = [f"# LFW pairs from {Path(lfw_pairs).name}: {folds} fold(s), same-person rows then different-person rows"]
    for pair in pairs:
        first, second = (path.relative_to(image_root).as_posix() for path in (pair.first, pair.second))
        lines.append(f"{first} {second} {int(pair.issame)}")
    if not output.parent.is_dir():
        raise FileNotFoundError(f"output folder {output.parent} does not exist; create it first")
    write_bytes_atomically(output, ("\n".join(lines) + "\n").encode())
    positive = sum(pair.issame for pair in pairs)
    return {"positive": positive, "negative": len(pairs) - positive, "folds": folds}


def read_pairs(pairs_path: Path, root: Path) -> list[tuple[Path, Path, bool, int]]:
    """[(path1, path2, issame, line number)] from a pairs file (or LFW's pairs.txt, in its fold order); malformed
    lines raise naming the line."""
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
    replaced only with `force`. Each distinct image is read once; a non-square one resized by `resize_mode`
    (said once through `note`)."""
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
