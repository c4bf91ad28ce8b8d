"""Degradations: shapes kept, detail removed in the stated amount, reproducible, and bad values refused."""

import numpy as np
import pytest

from recipes.arcface_torch.datasets.synthetic_face_renderer import SyntheticFaceRenderer
from recipes.arcface_torch.degradations import LEVELS, degrade, downscale, gaussian_blur, occlude, unrecognisable


@pytest.fixture(scope="module")
def face():
    return SyntheticFaceRenderer(0).render(3, 0)


def detail(image: np.ndarray) -> float:
    """Mean absolute difference of horizontally neighbouring pixels: high-frequency content."""
    grey = image.astype(np.float64).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=1)).mean())


def test_downscale_keeps_the_size_and_only_size_x_size_pixels_of_detail(face):
    low = downscale(face, 16)
    assert low.shape == face.shape and low.dtype == np.uint8
    assert detail(downscale(face, 32)) > detail(low) > detail(downscale(face, 8))
    # a face already at 16x16 detail loses little more by going to 16 pixels again
    again = np.abs(downscale(low, 16).astype(int) - low.astype(int)).mean()
    assert again < 0.5 * np.abs(low.astype(int) - face.astype(int)).mean()
    assert np.array_equal(downscale(face, 112), face)


def test_blur_and_occlusion(face):
    assert detail(gaussian_blur(face, 2.5)) < detail(gaussian_blur(face, 0.8)) < detail(face)
    assert np.array_equal(gaussian_blur(face, 0), face)
    hidden = occlude(face, 0.35, seed=7)
    changed = np.any(hidden != face, axis=2)
    side = round(0.35 * 112)
    assert changed.sum() <= side * side and np.all(hidden[changed] == 128)
    assert np.array_equal(hidden, occlude(face, 0.35, seed=7))  # a pure function of the seed
    assert not np.array_equal(hidden, occlude(face, 0.35, seed=8))


def test_levels_are_ordered_and_reproducible(face):
    assert [LEVELS[n].severity for n in ("clean", "down32", "down24", "down16")] == [0, 1, 2, 3]
    assert np.array_equal(degrade(face, LEVELS["clean"]), face)
    for level in LEVELS.values():
        assert np.array_equal(degrade(face, level, seed=3), degrade(face, level, seed=3))
    assert detail(unrecognisable(face)) < detail(degrade(face, LEVELS["down16"]))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f: downscale(f, 0), r"downscale size=0 must be an integer in \[1, 112\]"),
        (lambda f: gaussian_blur(f, -1.0), r"blur sigma=-1.0 must be a number of pixels in \[0, 50\]"),
        (lambda f: occlude(f, 1.5, 0), r"occlusion fraction=1.5 must be in \(0, 1\]"),
        (lambda f: downscale(f.astype(np.float32), 16), "must be a uint8 \\(H, W, 3\\) RGB array"),
    ],
)
def test_bad_values_are_refused(face, call, message):
    with pytest.raises(ValueError, match=message):
        call(face)
