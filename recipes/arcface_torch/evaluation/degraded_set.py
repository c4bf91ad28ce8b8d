"""A verification set degraded on purpose, each image at a known level: the known ordering a quality score is
checked against in the error-versus-reject evaluation.

Every image of a VerificationSet independently keeps its clean form (with probability `clean_fraction`) or gets
one of the other levels of degradations.LEVELS (down-scaled to 32, 24 or 16 pixels and back, blurred, occluded),
drawn from `seed`; the pairs and labels stay. `severity` (2P,) holds each image's level rank (0 clean, 3 the
16-pixel faces), so -severity is a quality score that ranks the degraded images lowest.

    degraded, severity, names = degraded_verification_set(vset, seed=0)
"""

from __future__ import annotations

import numpy as np

from ..degradations import LEVELS, degrade, level_names
from .verification_set import VerificationSet

DEFAULT_LEVELS = tuple(LEVELS)  # clean, down32, occlusion, blur, down24, down16
_LEVEL_STREAM = 51


def degraded_verification_set(
    vset: VerificationSet,
    levels=DEFAULT_LEVELS,
    clean_fraction: float = 0.5,
    seed: int = 0,
    name: str | None = None,
) -> tuple[VerificationSet, np.ndarray, list[str]]:
    """(degraded VerificationSet, int64 (2P,) severity per image, level name per image); see the module doc."""
    chosen = level_names(levels)
    if "clean" not in [level.name for level in chosen]:
        raise ValueError(f"levels {list(levels)} must include 'clean' (the undegraded images)")
    if not 0 <= clean_fraction <= 1:
        raise ValueError(f"clean_fraction={clean_fraction!r} must be in [0, 1], e.g. 0.5")
    others = [level for level in chosen if level.name != "clean"]
    rng = np.random.default_rng((int(seed), _LEVEL_STREAM))
    count = vset.images.shape[0]
    clean = rng.random(count) < clean_fraction if others else np.ones(count, dtype=bool)
    pick = rng.integers(0, max(1, len(others)), size=count)
    images = np.empty_like(vset.images)
    severity = np.zeros(count, dtype=np.int64)
    names = []
    for index in range(count):
        level = LEVELS["clean"] if clean[index] else others[int(pick[index])]
        images[index] = degrade(vset.images[index], level, seed=int(seed) * 1_000_003 + index)
        severity[index] = level.severity
        names.append(level.name)
    degraded = VerificationSet(name or f"{vset.name}_degraded", images, vset.issame.copy())
    return degraded, severity, names
