"""Balanced verification pairs from identity labels: every positive pair (capped) and as many negatives.

Used for the 10-fold accuracy of a held-out identity folder and by make_pairs; NumPy only.
"""

from __future__ import annotations

import numpy as np

MAX_BALANCED_POSITIVES = 3000  # cap on the positive pairs of the 10-fold pair list (and as many negatives)


def balanced_pairs(
    identity: np.ndarray, seed: int = 0, max_positives: int = MAX_BALANCED_POSITIVES
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (P, 2) of row indices and issame (P,): every positive pair (a random `max_positives` if more) and
    as many distinct negative pairs drawn at random, shuffled; deterministic in `seed`."""
    identity = np.asarray(identity).reshape(-1)
    first, second = np.triu_indices(identity.shape[0], k=1)
    same = identity[first] == identity[second]
    rng = np.random.default_rng(seed)
    positives = np.flatnonzero(same)
    negatives = np.flatnonzero(~same)
    if positives.size == 0 or negatives.size == 0:
        raise ValueError(
            f"{identity.shape[0]} faces of {np.unique(identity).size} identities give {positives.size} positive "
            f"and {negatives.size} negative pairs; a test set needs >= 2 identities and one with >= 2 faces"
        )
    if positives.size > max_positives:
        positives = rng.choice(positives, size=max_positives, replace=False)
    negatives = rng.choice(negatives, size=min(positives.size, negatives.size), replace=False)
    chosen = rng.permutation(np.concatenate([positives, negatives]))
    return np.stack([first[chosen], second[chosen]], axis=1), same[chosen]
