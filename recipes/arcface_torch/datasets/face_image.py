"""Encoded face image -> training tensor, shared by the RecordIO and image-folder datasets.

Decode JPEG/PNG with OpenCV, BGR -> RGB, optional horizontal flip, (x - 127.5) / 127.5, CHW float32.
The flip is a pure function of (seed, epoch, index), so a run is repeatable whatever the worker count.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def decode_face(data: bytes, where: str, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """uint8 (H, W, 3) RGB from encoded bytes; `where` names the image in errors."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise ValueError(f"{where}: could not decode the image ({len(data)} bytes, not a valid JPEG/PNG); re-encode or remove it")
    if image.shape[:2] != tuple(size):
        raise ValueError(
            f"{where}: image is {image.shape[1]}x{image.shape[0]}, expected {size[1]}x{size[0]}; "
            f"align and resize the faces to {size[1]}x{size[0]} before training"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
    pass and no temporary float image (a third of face_to_tensor's former time).
    """
    if flip:
        image = cv2.flip(image, 1)
    np.copyto(out, image.transpose(2, 0, 1), casting="unsafe")
    np.subtract(out, np.float32(127.5), out=out)
    np.divide(out, np.float32(127.5), out=out)


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
    out = torch.empty((images.shape[0], images.shape[3]) + tuple(images.shape[1:3]), dtype=torch.float32,
                      device=images.device)
    out.copy_(images.permute(0, 3, 1, 2))
    return out.sub_(127.5).div_(127.5)


def face_to_tensor(image: np.ndarray, flip: bool) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [-1, 1], mirrored left-right when `flip`."""
    chw = np.empty((3,) + image.shape[:2], dtype=np.float32)
    face_into(image, flip, chw)
    return torch.from_numpy(chw)
