"""LFW's own pairs files -> image pairs in LFW's fold order (view 2: the 6,000 pairs every face paper quotes).

pairs.txt (view 2): first line `10 300` (folds, pairs of each kind per fold); then, fold by fold, 300 rows
`name n1 n2` (two images of one person) followed by 300 rows `name1 n1 name2 n2` (two people). pairsDevTrain.txt /
pairsDevTest.txt (view 1) have one number `n` on the first line: one fold of n same-person then n different-person
rows. Image n of `name` is `name/name_%04d.<ext>` under the image root (the extension is found on disk, so an aligned
tree of .png faces works as well as LFW's .jpg).

Kept in this order, pair k of the .bin lies in LFW fold k // 600, so the contiguous 10-fold split of
evaluation/verification.py is LFW's standard protocol.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..face_files import IMAGE_SUFFIXES


@dataclass(frozen=True)
class LfwPair:
    first: Path
    second: Path
    issame: bool
    line: int  # line number in the pairs file, for messages
    fold: int


def looks_like_lfw_pairs(path: Path) -> bool:
    """True when the first non-blank line of `path` is LFW's header (one or two whole numbers)."""
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                return 1 <= len(fields) <= 2 and all(field.isdigit() for field in fields)
    return False


def _image(root: Path, name: str, number: str, where: str, cache: dict[Path, dict[str, str]]) -> Path:
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"{where}: image number {number!r} is not a positive whole number; fix the row")
    stem = f"{name}_{int(number):04d}"
    folder = root / name
    if folder not in cache:
        try:
            cache[folder] = {
                Path(entry).stem: entry
                for entry in sorted(os.listdir(folder))
                if entry.lower().endswith(IMAGE_SUFFIXES)
            }
        except OSError:
            cache[folder] = {}
    found = cache[folder].get(stem)
    if found is None:
        raise FileNotFoundError(f"{where}: image {name}/{stem}.jpg (or another format) is not in {root}; check --root")
    return folder / found


def read_lfw_pairs(path: Path, root: Path) -> list[LfwPair]:
    """LFW pairs in file order (= fold order); a malformed row or a missing image raises naming the line."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"LFW pairs file {path} not found; LFW's view 2 file is pairs.txt")
    rows = [(number, line.split()) for number, line in enumerate(path.read_text().splitlines(), start=1)]
    rows = [(number, fields) for number, fields in rows if fields and not fields[0].startswith("#")]
    if not rows:
        raise ValueError(f"{path} is empty; expected LFW's header line '10 300' and its pair rows")
    header_line, header = rows[0]
    if not (1 <= len(header) <= 2 and all(field.isdigit() for field in header)) or int(header[-1]) < 1:
        raise ValueError(
            f"{path} line {header_line}: {' '.join(header)!r} is not LFW's header ('10 300': folds, pairs per kind)"
        )
    folds, per_kind = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
    body = rows[1:]
    if len(body) != folds * 2 * per_kind:
        raise ValueError(
            f"{path}: the header promises {folds} folds of {per_kind} same-person and {per_kind} different-person "
            f"rows ({folds * 2 * per_kind} rows) but the file has {len(body)}; use LFW's unmodified pairs file"
        )
    cache: dict[Path, dict[str, str]] = {}
    pairs = []
    for index, (number, fields) in enumerate(body):
        fold, position = divmod(index, 2 * per_kind)
        same = position < per_kind
        where = f"{path} line {number} ({' '.join(fields)!r})"
        if same and len(fields) == 3:
            name, first, second = fields
            pair = (_image(root, name, first, where, cache), _image(root, name, second, where, cache))
        elif not same and len(fields) == 4:
            pair = (_image(root, fields[0], fields[1], where, cache), _image(root, fields[2], fields[3], where, cache))
        else:
            expected = "'name n1 n2' (same person)" if same else "'name1 n1 name2 n2' (different people)"
            raise ValueError(
                f"{where}: row {position + 1} of fold {fold + 1} should be {expected}; use LFW's unmodified pairs file"
            )
        pairs.append(LfwPair(pair[0], pair[1], same, number, fold))
    return pairs
