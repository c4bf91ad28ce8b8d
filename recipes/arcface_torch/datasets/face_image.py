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


def face_to_tensor(image: np.ndarray, flip: bool) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) in [-1, 1], mirrored left-right when `flip`."""
    if flip:
        image = image[:, ::-1]
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    chw -= 127.5
    chw /= 127.5
    return torch.from_numpy(chw)
