"""Real aligned face crops for checking recognition models, with no detector and no download.

The faces come from images that ship with installed packages: insightface's aligned
Tom_Hanks_54745.png and group photo t1.jpg, and scikit-image's astronaut. Their five landmarks
(left eye, right eye, nose tip, left and right mouth corner, in image pixels) were read off the
images once and are kept below; `face_image.align_face` aligns them.

    faces = builtin_faces(112)              # [(name, HxWx3 BGR uint8), ...]
    batch = face_batch(faces, 32)           # (32, 112, 112, 3) BGR uint8: faces, flips, lighting
    x = face_image.to_network_input(batch)   # (32, 3, 112, 112) float32 RGB
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..face_image import ARCFACE_DST, align_face

# Five-point landmarks (x, y) in t1.jpg for the four faces seen roughly from the front.
T1_LANDMARKS = {
    "t1_face_left": [[86, 329], [130, 309], [116, 344], [115, 370], [147, 352]],
    "t1_face_centre": [[494, 322], [539, 334], [510, 357], [489, 369], [532, 381]],
    "t1_face_centre_right": [[762, 404], [802, 405], [784, 424], [767, 441], [805, 440]],
    "t1_face_right": [[1149, 326], [1194, 324], [1172, 350], [1155, 366], [1196, 364]],
}
# Five-point landmarks (x, y) of the face in skimage.data.astronaut() (512x512).
ASTRONAUT_LANDMARKS = [[205, 101], [246, 104], [224, 126], [204, 140], [245, 141]]


def _insightface_image_dir() -> Path:
    try:
        import insightface
    except ImportError as error:
        raise RuntimeError(
            "the insightface package is not installed; run `pip install insightface` "
            "or pass --images with a folder of aligned face crops"
        ) from error
    return Path(insightface.__file__).resolve().parent / "data" / "images"


def _read_bgr(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}; pass a readable .jpg or .png file")
    return image


def builtin_faces(size: int = 112) -> list[tuple[str, np.ndarray]]:
    """Six real faces from installed packages, aligned to size x size, as BGR uint8 arrays."""
    from skimage import data as skimage_data

    image_dir = _insightface_image_dir()
    faces = []
    # The Tom Hanks image is already an aligned 112x112 crop: its landmarks are the template.
    faces.append(("Tom_Hanks_54745", align_face(_read_bgr(image_dir / "Tom_Hanks_54745.png"), ARCFACE_DST, size)))
    astronaut = np.ascontiguousarray(skimage_data.astronaut()[:, :, ::-1])
    faces.append(("astronaut", align_face(astronaut, ASTRONAUT_LANDMARKS, size)))
    group = _read_bgr(image_dir / "t1.jpg")
    for name, landmarks in T1_LANDMARKS.items():
        faces.append((name, align_face(group, landmarks, size)))
    return faces


def face_batch(faces: list[tuple[str, np.ndarray]], count: int = 32) -> np.ndarray:
    """`count` distinct crops from `faces`: each face, its mirror image, then lighting changes; (count, H, W, 3)."""
    if not faces:
        raise ValueError("no face images given; pass at least one aligned face crop")
    images = [image for _, image in faces]
    variants = images + [image[:, ::-1] for image in images]
    gains = (0.8, 1.15, 0.65, 1.3)
    batch = list(variants)
    step = 0
    while len(batch) < count:
        gain = gains[(step // len(variants)) % len(gains)]
        source = variants[step % len(variants)].astype(np.float32)
        batch.append(np.clip(source * gain + 4.0 * (step // (len(variants) * len(gains))), 0, 255).astype(np.uint8))
        step += 1
    return np.ascontiguousarray(np.stack(batch[:count]))
