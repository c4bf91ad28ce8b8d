"""Face images in and out of the network: the one home for decode, alignment and normalisation.

Training, evaluation, export and verification all go through here:
    decode_face(bytes)            encoded JPEG/PNG/... -> uint8 (112, 112, 3) RGB (resize on request)
    align_face(image, landmarks)  five-point similarity warp onto the arcface template
    face_to_tensor(image, flip)   uint8 (H, W, 3) RGB -> float32 (3, H, W), (x - 127.5) / 127.5
    to_network_input(images_bgr)  uint8 (N, H, W, 3) BGR -> float32 (N, 3, H, W) RGB, (x - mean) / std
The flip is a pure function of (seed, epoch, index), so a run is repeatable whatever the worker count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor is made, so the data tools never load it
    import torch

INPUT_MEAN = 127.5  # the arcface convention: network input = (pixel - 127.5) / 127.5, RGB
INPUT_STD = 127.5
FACE_SIZE = 112
# Five-point arcface template (left eye, right eye, nose tip, left and right mouth corner) in a 112x112 crop.
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


# OpenCV >= 4.10 decodes straight to RGB (libjpeg-turbo writes RGB; no second pass over the pixels)
DECODE_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_face(data: bytes, where: str, size: tuple[int, int] = (112, 112), resize: bool = False) -> np.ndarray:
    """uint8 (H, W, 3) RGB from encoded bytes; `where` names the image in errors. A face of another size
    is an error, or resized to `size` (height, width) when `resize`."""
    flags = cv2.IMREAD_COLOR if DECODE_RGB is None else DECODE_RGB
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags) if len(data) else None
    if image is None:
        raise ValueError(
            f"{where}: could not decode the image ({len(data)} bytes, not a valid JPEG/PNG); re-encode or remove it"
        )
    if resize and image.shape[:2] != tuple(size):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    if image.shape[:2] != tuple(size):
        raise ValueError(
            f"{where}: image is {image.shape[1]}x{image.shape[0]}, expected {size[1]}x{size[0]}; "
            f"align and resize the faces to {size[1]}x{size[0]} before training"
        )
    return image if DECODE_RGB is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of a 64-bit integer."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def should_flip(seed: int, epoch: int, index: int) -> bool:
    """A fair coin fixed by (seed, epoch, index); about 1 us, far below a decode."""
    return bool(_mix64((_mix64((_mix64(seed & _MASK64) + epoch) & _MASK64) + index) & _MASK64) >> 63)


def face_into(image: np.ndarray, flip: bool, out: np.ndarray) -> None:
    """Write uint8 (H, W, 3) RGB into float32 (3, H, W) `out` as (x - 127.5) / 127.5, mirrored when `flip`.

    cv2.flip on the bytes, one casting copy into the planes, then in-place arithmetic: no strided float
    pass and no temporary float image.
    """
    if flip:
        image = cv2.flip(image, 1)
    np.copyto(out, image.transpose(2, 0, 1), casting="unsafe")
    np.subtract(out, np.float32(INPUT_MEAN), out=out)
    np.divide(out, np.float32(INPUT_STD), out=out)


def face_pixels_into(image: np.ndarray, flip: bool, out: np.ndarray) -> None:
    """Copy uint8 (H, W, 3) RGB into uint8 (H, W, 3) `out`, mirrored when `flip` (one pass, no temporary);
    normalise_faces later turns a batch of these into face_into's values."""
    if flip:
        cv2.flip(image, 1, dst=out)
    else:
        np.copyto(out, image)


def normalise_faces(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float32 (N, 3, H, W) (x - 127.5) / 127.5 on the same device, bit for bit
    face_into's values (the planar layout is made by the same pass that widens to float)."""
    import torch

    out = torch.empty(
        (images.shape[0], images.shape[3]) + tuple(images.shape[1:3]), dtype=torch.float32, device=images.device
    )
    out.copy_(images.permute(0, 3, 1, 2))
    return out.sub_(INPUT_MEAN).div_(INPUT_STD)


def face_to_tensor(image: np.ndarray, flip: bool) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [-1, 1], mirrored left-right when `flip`."""
    import torch

    chw = np.empty((3,) + image.shape[:2], dtype=np.float32)
    face_into(image, flip, chw)
    return torch.from_numpy(chw)


def to_network_input(images_bgr: np.ndarray, mean: float = INPUT_MEAN, std: float = INPUT_STD) -> np.ndarray:
    """(N, H, W, 3) BGR uint8 -> (N, 3, H, W) float32 RGB, normalised as (pixel - mean) / std."""
    rgb = images_bgr[..., ::-1].astype(np.float32)
    return np.ascontiguousarray(((rgb - np.float32(mean)) / np.float32(std)).transpose(0, 3, 1, 2))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) mapping src (K, 2) onto
    dst (K, 2) (Umeyama, no reflection, the estimate skimage's SimilarityTransform makes); returns (2, 3)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_centered, dst_centered = src - src_mean, dst - dst_mean
    covariance = dst_centered.T @ src_centered / src.shape[0]
    signs = np.ones(2)
    if np.linalg.det(covariance) < 0:
        signs[1] = -1.0
    u, singular, vt = np.linalg.svd(covariance)
    rank = np.linalg.matrix_rank(covariance)
    if rank == 0 or src_centered.var(axis=0).sum() == 0:
        raise ValueError("the landmarks are all the same point, so no similarity transform exists")
    if rank == 1:
        signs[1] = 1.0 if np.linalg.det(u) * np.linalg.det(vt) > 0 else -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = (singular @ signs) / src_centered.var(axis=0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * (rotation @ src_mean)
    return matrix


def align_face(image: np.ndarray, landmarks, size: int = FACE_SIZE) -> np.ndarray:
    """Warp image (H, W, 3) so its 5 landmarks (5, 2) land on the arcface template scaled to a size x size
    crop: (size, size, 3), same channel order (insightface's norm_crop for sizes that are multiples of 112)."""
    if size <= 0:
        raise ValueError(f"face size {size} must be a positive number of pixels such as 112")
    matrix = similarity_transform(np.asarray(landmarks, dtype=np.float64), ARCFACE_DST * (size / FACE_SIZE))
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
