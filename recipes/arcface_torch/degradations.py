"""Faces degraded on purpose: down-scaling to very low resolution and back, blur, occlusion.

One home for every degradation the project applies to a face: the unrecognisable faces the "ri" loss builds
its centre from (plugins/ri) and the degraded verification sets the error-versus-reject evaluation scores
(evaluation/error_versus_reject.py). Each function takes and returns a uint8 (H, W, 3) RGB face and is a
pure function of its arguments (an occluder's place comes from an explicit seed), so a degraded set is the
same on every run and every machine.

    low = downscale(face, 16)                      # 16x16 pixels, then back to 112x112
    blurred = gaussian_blur(face, 2.5)             # sigma in pixels of the 112x112 face
    hidden = occlude(face, 0.35, seed=7)           # a grey square over 35% of the face's side
    ui = unrecognisable(face, size=8, blur=1.5)    # what the "ri" centre is built from
    face = degrade(face, LEVELS["down16"], seed=3) # a named level (LEVELS, ordered mild to severe)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _check_face(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        what = f"{image.dtype} {tuple(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"a face to degrade must be a uint8 (H, W, 3) RGB array, got {what}; decode it first")


def downscale(image: np.ndarray, size: int) -> np.ndarray:
    """The face shrunk to size x size pixels (area averaging, as a distant camera sees it) and enlarged back to
    its own size (bilinear), so the network still gets its input size with only size x size pixels of detail."""
    _check_face(image)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= min(image.shape[:2]):
        raise ValueError(f"downscale size={size!r} must be an integer in [1, {min(image.shape[:2])}], e.g. 16")
    height, width = image.shape[:2]
    small = cv2.resize(image, (int(size), int(size)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation `sigma` pixels (0 returns the face unchanged)."""
    _check_face(image)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating)) or not 0 <= sigma <= 50:
        raise ValueError(f"blur sigma={sigma!r} must be a number of pixels in [0, 50], e.g. 2.0")
    if sigma == 0:
        return image.copy()
    return cv2.GaussianBlur(image, (0, 0), float(sigma), borderType=cv2.BORDER_REPLICATE)


def occlude(image: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A flat grey square whose side is `fraction` of the face's, placed over the face's centre region (eyes,
    nose or mouth) at a position drawn from `seed`."""
    _check_face(image)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 < fraction <= 1:
        raise ValueError(f"occlusion fraction={fraction!r} must be in (0, 1], e.g. 0.35")
    height, width = image.shape[:2]
    side = max(1, int(round(fraction * min(height, width))))
    rng = np.random.default_rng((int(seed), _OCCLUSION_STREAM))
    # the square's centre lies in the middle half of the face, where the identity cues are
    cy = int(rng.uniform(0.35, 0.7) * height)
    cx = int(rng.uniform(0.3, 0.7) * width)
    top, left = max(0, cy - side // 2), max(0, cx - side // 2)
    out = image.copy()
    out[top : top + side, left : left + side] = 128
    return out


def unrecognisable(image: np.ndarray, size: int = 8, blur: float = 1.5) -> np.ndarray:
    """A face past recognition: down to size x size pixels and back, then blurred by `blur` pixels."""
    return gaussian_blur(downscale(image, size), blur)


_OCCLUSION_STREAM = 21


@dataclass(frozen=True)
class Degradation:
    """One named level: down-scale to `size` px (0: none), blur `blur` px, occlude `occlusion` of the side."""

    name: str
    size: int = 0
    blur: float = 0.0
    occlusion: float = 0.0
    severity: int = 0  # rank in LEVELS: 0 clean, higher = harder to recognise (the known ordering)


# Ordered from clean to severe; the error-versus-reject evaluation uses this ordering as the "perfect" score.
LEVELS: dict[str, Degradation] = {
    level.name: level
    for level in (
        Degradation("clean", severity=0),
        Degradation("down32", size=32, severity=1),
        Degradation("occlusion", occlusion=0.35, severity=1),
        Degradation("blur", blur=2.5, severity=2),
        Degradation("down24", size=24, severity=2),
        Degradation("down16", size=16, severity=3),
    )
}


def degrade(image: np.ndarray, level: Degradation, seed: int = 0) -> np.ndarray:
    """`image` under `level` (down-scale, then blur, then occlusion placed by `seed`)."""
    _check_face(image)
    out = image
    if level.size:
        out = downscale(out, level.size)
    if level.blur:
        out = gaussian_blur(out, level.blur)
    if level.occlusion:
        out = occlude(out, level.occlusion, seed)
    return out if out is not image else image.copy()


def level_names(names) -> list[Degradation]:
    """The LEVELS named in `names` (an unknown name is an error listing the known ones)."""
    levels = []
    for name in names:
        if name not in LEVELS:
            raise ValueError(f"degradation level {name!r} is unknown; use one of {', '.join(LEVELS)}")
        levels.append(LEVELS[name])
    return levels
