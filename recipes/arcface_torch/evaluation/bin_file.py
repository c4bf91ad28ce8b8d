"""insightface `.bin` verification files: read safely, write atomically.

A `.bin` (lfw.bin, cfp_fp.bin, agedb_30.bin, ...) is a pickle of `(images, issame)`: `images` a list of
2P encoded images (JPEG/PNG bytes; rows 2k and 2k+1 form pair k), `issame` a list of P bools. Older
files were pickled under Python 2, where the image bytes are `str`; they are read with
`encoding="bytes"`.

A pickle can run arbitrary code when loaded, and these files are downloaded from the internet, so
loading goes through an unpickler that refuses every global (no class, no function can be reached),
and the loaded object must be exactly the structure above.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..atomic_file import write_atomically
from ..face_image import decode_face
from .verification_set import VerificationSet

PathLike = str | os.PathLike


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Builds only plain data (lists, tuples, bytes, str, numbers, bools); every global is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: a verification .bin holds only image bytes and bools"
        )


def _restricted_load(path: Path):
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return _NoGlobalsUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path}: not a safe verification .bin ({error}); use a file made by insightface or save_bin"
        ) from error
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as error:
        raise ValueError(
            f"{path}: not a readable pickle ({type(error).__name__}: {error}); the file is truncated or not a .bin"
        ) from error


def _validate_structure(path: Path, obj) -> tuple[list, np.ndarray]:
    expected = "expected a pickled (list of 2P encoded images, list of P bools)"
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: top-level object is {type(obj).__name__}; {expected}")
    images, issame = obj
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"{path}: first element is {type(images).__name__}, not a list of images; {expected}")
    if not isinstance(issame, (list, tuple)):
        raise ValueError(f"{path}: second element is {type(issame).__name__}, not a list of bools; {expected}")
    encoded = []
    for index, item in enumerate(images):
        if isinstance(item, (bytes, bytearray)):
            encoded.append(bytes(item))
        elif isinstance(item, str):
            # A Python 2 `str` read with a text encoding: latin-1 maps it back to the original bytes.
            encoded.append(item.encode("latin-1"))
        else:
            raise ValueError(f"{path}: image {index} is {type(item).__name__}, not encoded bytes; {expected}")
    labels = []
    for index, item in enumerate(issame):
        if isinstance(item, bool) or (isinstance(item, int) and item in (0, 1)):
            labels.append(bool(item))
        else:
            raise ValueError(f"{path}: issame entry {index} is {item!r}, not a bool or 0/1; {expected}")
    if not labels:
        raise ValueError(f"{path}: the issame list is empty; {expected}")
    if len(encoded) != 2 * len(labels):
        raise ValueError(
            f"{path}: {len(encoded)} images for {len(labels)} pairs; a .bin needs exactly two images per pair"
        )
    return encoded, np.asarray(labels, dtype=bool)


def load_bin(path: PathLike, image_size: tuple[int, int] = (112, 112), name: str = "") -> VerificationSet:
    """Read an insightface .bin into a VerificationSet: images uint8 (2P, H, W, 3) RGB, issame bool (P,).

    `image_size` is (height, width); images of another size are resized. `name` defaults to the file stem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification file {path} does not exist; check val_targets and the data folder")
    if len(image_size) != 2 or min(int(image_size[0]), int(image_size[1])) <= 0:
        raise ValueError(f"image_size {image_size!r} must be (height, width) with positive sizes, e.g. (112, 112)")
    image_size = (int(image_size[0]), int(image_size[1]))
    encoded, issame = _validate_structure(path, _restricted_load(path))
    images = np.empty((len(encoded), image_size[0], image_size[1], 3), dtype=np.uint8)
    for index, data in enumerate(encoded):
        images[index] = decode_face(data, f"{path} image {index}", image_size, resize=True)
    return VerificationSet(name=name or path.stem, images=images, issame=issame)


def encode_image(image_rgb: np.ndarray, ext: str = ".jpg", quality: int = 95) -> bytes:
    """uint8 (H, W, 3) RGB -> encoded bytes (".jpg" or ".png") for save_bin."""
    if image_rgb.ndim != 3 or image_rgb.shape[-1] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            f"encode_image needs a uint8 (H, W, 3) RGB image, got {image_rgb.dtype} {tuple(image_rgb.shape)}"
        )
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {ext!r}; use '.jpg' or '.png'")
    return buffer.tobytes()


def save_bin(path: PathLike, encoded_images: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write (list of 2P encoded images, list of P bools) as an insightface .bin, atomically."""
    path = Path(path)
    images = []
    for index, item in enumerate(encoded_images):
        if not isinstance(item, (bytes, bytearray)):
            raise ValueError(
                f"save_bin {path}: image {index} is {type(item).__name__}, not encoded bytes; "
                f"encode it with encode_image"
            )
        images.append(bytes(item))
    labels = []
    for index, item in enumerate(issame):
        if isinstance(item, (bool, np.bool_)) or (isinstance(item, (int, np.integer)) and item in (0, 1)):
            labels.append(bool(item))
        else:
            raise ValueError(f"save_bin {path}: issame entry {index} is {item!r}; pass bools or 0/1")
    if not labels or len(images) != 2 * len(labels):
        raise ValueError(
            f"save_bin {path}: {len(images)} images for {len(labels)} pairs; pass exactly two images per pair"
        )
    return write_atomically(path, lambda handle: pickle.dump((images, labels), handle, protocol=4))
