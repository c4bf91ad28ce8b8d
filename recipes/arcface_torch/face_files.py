"""Face image files on disk: identity folders, landmarks files, and the encoded faces a .rec or .bin stores.

Any format OpenCV reads (JPEG, PNG, BMP, PGM/PPM, TIFF, WebP, ...), colour or grey. A face already at the
training size whose file is JPEG or PNG is stored byte for byte; any other face is decoded, brought to
the size (5-point alignment when the landmarks file lists it, else a plain resize when asked) and stored
as JPEG (quality 95), the format insightface's .rec and .bin readers expect. A resize of an image whose shape
differs from the size's first makes the shapes agree (resize_mode): "crop" the centred largest region of the
size's aspect (default: a face keeps its geometry), "pad" black borders around the whole image, or "stretch"
(changes the face's proportions); the tools say which, once.

Landmarks file: one line per image, `path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5` (left eye, right eye, nose tip,
left and right mouth corner, in pixels of the original image); `path` relative to the image root or
absolute; blank lines and lines starting with '#' are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .evaluation.bin_file import encode_image
from .face_image import align_face

# Suffixes of the still-image formats OpenCV's imread decodes.
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".png",
    ".bmp",
    ".dib",
    ".pgm",
    ".ppm",
    ".pbm",
    ".pnm",
    ".pxm",
    ".tif",
    ".tiff",
    ".webp",
    ".jp2",
    ".sr",
    ".ras",
    ".exr",
    ".hdr",
    ".pic",
)
_STORED_AS_IS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # JPEG and PNG signatures
RESIZE_MODES = ("crop", "pad", "stretch")
_RESIZE_NOTES = {
    "crop": "centre-cropped to {crop} before resizing to {size} (--resize-mode pad or stretch to change)",
    "pad": "padded with black to {pad} before resizing to {size} (--resize-mode crop or stretch to change)",
    "stretch": "stretched to {size}, which changes the face's proportions (--resize-mode crop keeps them)",
}


class NoteOnce:
    """A callable that passes only its first message on to `emit` (a tool says a thing once, not per image)."""

    def __init__(self, emit: Callable[[str], object]):
        self.emit, self.said = emit, False

    def __call__(self, message: str) -> None:
        if not self.said:
            self.said = True
            self.emit(message)


def fit_shape(image: np.ndarray, size: tuple[int, int], mode: str = "crop") -> np.ndarray:
    """image cut ("crop": the centred largest region) or padded ("pad": black, centred) to the aspect of `size`
    (height, width); unchanged for "stretch" or when the aspects already agree."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode {mode!r} is unknown; use one of {', '.join(RESIZE_MODES)}")
    height, width = image.shape[:2]
    if mode == "stretch" or height * size[1] == width * size[0]:
        return image
    if mode == "crop":
        crop_h, crop_w = (
            (height, round(height * size[1] / size[0]))
            if width * size[0] > height * size[1]
            else (round(width * size[0] / size[1]), width)
        )
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return image[top : top + crop_h, left : left + crop_w]
    pad_h, pad_w = (
        (round(width * size[0] / size[1]), width)
        if width * size[0] > height * size[1]
        else (height, round(height * size[1] / size[0]))
    )
    top, left = (pad_h - height) // 2, (pad_w - width) // 2
    return cv2.copyMakeBorder(
        image, top, pad_h - height - top, left, pad_w - width - left, cv2.BORDER_CONSTANT, value=0
    )


def list_identity_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(image path, label)]) of an identity-per-folder tree, in sorted order."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist; pass a folder with one sub-folder of face images per identity"
        )
    class_names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not class_names:
        raise ValueError(
            f"{root} has no identity sub-folders; put each identity's images in its own sub-folder (root/<identity>/<image>.jpg)"
        )
    samples = []
    for label, name in enumerate(class_names):
        files = sorted(
            entry.name
            for entry in os.scandir(root / name)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not files:
            raise ValueError(
                f"identity folder {root / name} holds no images ({' '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
            )
        samples.extend((root / name / file, label) for file in files)
    return class_names, samples


def read_landmarks(path: str | os.PathLike, root: str | os.PathLike) -> dict[Path, np.ndarray]:
    """{resolved image path: float64 (5, 2) landmarks} from a landmarks file; bad lines raise naming the line."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise FileNotFoundError(f"landmarks file {path} not found; write one line 'path x1 y1 ... x5 y5' per image")
    table: dict[Path, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            values = np.array([float(value) for value in fields[1:]], dtype=np.float64)
        except ValueError:
            values = np.empty(0)
        if values.size != 10 or not np.isfinite(values).all():
            raise ValueError(
                f"{path} line {number}: {line.strip()!r} is not 'path x1 y1 ... x5 y5' with 10 numbers; "
                f"fix or remove the line"
            )
        table[(root / fields[0]).resolve()] = values.reshape(5, 2)
    return table


def prepare_face(
    path: Path,
    size: tuple[int, int] = (112, 112),
    resize: bool = False,
    landmarks: np.ndarray | None = None,
    where: str = "",
    resize_mode: str = "crop",
    note: Callable[[str], object] | None = None,
) -> bytes:
    """Encoded face for `path` at `size` (height, width): aligned with `landmarks` (5, 2) if given, else resized when
    `resize` (shapes made to agree by `resize_mode`, said through `note`), else the image must already have that
    size (the error says which option fixes it)."""
    where = where or str(path)
    data = path.read_bytes()
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ValueError(
            f"{where}: could not decode the image ({len(data)} bytes, not a format OpenCV reads); re-encode or remove it"
        )
    if landmarks is None and image.shape[:2] == tuple(size) and data.startswith(_STORED_AS_IS):
        return data
    if landmarks is not None:
        if size[0] != size[1]:
            raise ValueError(
                f"{where}: 5-point alignment makes square faces, but the size is {size[1]}x{size[0]}; use a square size"
            )
        image = align_face(image, landmarks, size[0])
    elif image.shape[:2] != tuple(size):
        if not resize:
            raise ValueError(
                f"{where}: image is {image.shape[1]}x{image.shape[0]}, expected {size[1]}x{size[0]}; pass "
                f"--resize {size[0]} for already-cropped faces or --landmarks FILE to align them"
            )
        fitted = fit_shape(image, size, resize_mode)
        if note is not None and image.shape[0] * size[1] != image.shape[1] * size[0]:
            sizes = {"crop": fitted.shape, "pad": fitted.shape, "size": size}
            sizes = {key: f"{shape[1]}x{shape[0]}" for key, shape in sizes.items()}
            note(
                f"{where} is {image.shape[1]}x{image.shape[0]}, not the shape of {sizes['size']}: "
                + _RESIZE_NOTES[resize_mode].format(**sizes)
            )
        image = cv2.resize(fitted, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return encode_image(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), ".jpg", 95)
