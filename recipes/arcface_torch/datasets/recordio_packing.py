"""Identity folders and labelled faces -> an insightface RecordIO folder (train.rec, train.idx, property).

The layout of MS1MV3 and friends: key 0 is a header record (flag 2, label = [N+1, N+1+C]), keys 1..N the images
(label = class, encoded bytes stored as they are), keys N+1..N+C one record per identity (label = [first, end) of its
image keys). Writing is atomic: temp files are renamed into place only after the last record, so an interrupted
run leaves no half-written dataset. No torch: packing runs where training does not.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ..atomic_file import write_bytes_atomically
from ..face_files import list_identity_folder, prepare_face, read_landmarks
from .recordio import IndexedRecordWriter, pack_record

OUTPUT_NAMES = ("train.rec", "train.idx", "property")


def pack_folder(
    image_root: Path,
    output: Path,
    image_size=(112, 112),
    force: bool = False,
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
    if existing and not force:
        raise FileExistsError(
            f"{output / existing[0]} already exists; pass --force to replace it or choose another output folder"
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
