"""decode_face gives the same RGB pixels whether OpenCV decodes to RGB itself or to BGR and swaps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from recipes.arcface_torch import face_image
from recipes.arcface_torch.face_image import decode_face


def textured(height: int, width: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(height * width + channels)
    coarse = rng.integers(0, 256, (height // 8, width // 8, channels), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return image.reshape(height, width, channels)


@pytest.mark.parametrize("decode_rgb", ["opencv", "swap"])
@pytest.mark.parametrize(
    "ext, channels, size",
    [(".jpg", 3, (112, 112)), (".png", 3, (112, 112)), (".png", 1, (112, 112)), (".jpg", 3, (96, 80))],
)
def test_decode_face_is_the_bgr_decode_reversed(monkeypatch, decode_rgb, ext, channels, size):
    if decode_rgb == "opencv" and face_image.DECODE_RGB is None:
        pytest.skip("this OpenCV has no IMREAD_COLOR_RGB")
    if decode_rgb == "swap":
        monkeypatch.setattr(face_image, "DECODE_RGB", None)
    encoded = cv2.imencode(ext, textured(*size, channels))[1].tobytes()
    bgr = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), cv2.IMREAD_COLOR)
    if size != (112, 112):
        bgr = cv2.resize(bgr, (112, 112), interpolation=cv2.INTER_LINEAR)
    face = decode_face(encoded, "test image", resize=size != (112, 112))
    assert face.dtype == np.uint8 and face.shape == (112, 112, 3)
    np.testing.assert_array_equal(face, bgr[..., ::-1])


def test_decode_face_refuses_bytes_that_are_no_image():
    with pytest.raises(ValueError, match="broken.jpg: could not decode"):
        decode_face(b"not an image", "broken.jpg")
