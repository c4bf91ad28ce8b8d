"""A face-verification set in memory: P pairs of aligned RGB faces and whether each pair is one identity.

This is what an insightface `.bin` file holds once decoded, and what the synthetic dataset produces
for its held-out identities, so both go through the same evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VerificationSet:
    """images: uint8 (2P, H, W, 3) RGB, rows 2k and 2k+1 form pair k; issame: bool (P,)."""

    name: str
    images: np.ndarray
    issame: np.ndarray

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"verification set {self.name!r}: images must be uint8 (2P, H, W, 3) RGB, "
                f"got {self.images.dtype} {tuple(self.images.shape)}; decode and stack the faces first"
            )
        self.issame = np.asarray(self.issame, dtype=bool)
        if self.images.shape[0] != 2 * self.issame.shape[0]:
            raise ValueError(
                f"verification set {self.name!r}: {self.images.shape[0]} images for {self.issame.shape[0]} pairs; "
                f"it needs exactly two images per pair"
            )

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])
