"""Synthetic face identities rendered on the fly: the embedded default dataset, no download needed.

`SyntheticFaces` is a map-style training set of `num_identities` identities with `images_per_identity`
samples each, optionally with a deterministic fraction of wrong labels. `synthetic_verification_set`
builds a balanced pair set from identities that never appear in training (a different
`identity_offset`), in the same form as a decoded insightface `.bin` file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..evaluation.verification_set import VerificationSet
from ..face_image import face_to_tensor, should_flip
from .synthetic_face_renderer import SyntheticFaceRenderer

_NOISE_LABEL_STREAM = 12
_PAIR_STREAM = 13
_PAIR_SAMPLE_RANGE = 1 << 30


def _check_int(name: str, value, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}; {hint}")
    return int(value)


class SyntheticFaces(Dataset):
    """Rendered training identities; item i is sample `i % images_per_identity` of identity `i // images_per_identity`.

    Args:
        num_identities: number of classes C (>= 2); labels are 0..C-1.
        images_per_identity: samples per identity (>= 1); len = C * images_per_identity.
        seed: fixes identities, samples, flips and noisy labels.
        label_noise: fraction p in [0, 1) of samples whose label is replaced by a uniformly drawn other class.
        identity_offset: class k renders identity `identity_offset + k`; give held-out sets another offset.
        flip: random horizontal flip, a pure function of (flip_seed, epoch, i): redrawn every epoch
            (`set_epoch`), independent of the worker layout, so a run resumed mid-epoch sees the same flips.
        flip_seed: seed of the flips (default: `seed`); the trainer passes config.seed.
        preset, max_yaw: the renderer's preset ("classic" | "hard") and largest head turn (see SyntheticFaceRenderer).

    `__getitem__(i) -> (image float32 (3, 112, 112) in [-1, 1], label int64 0-d)`.
    Attributes: `num_classes`, `labels` / `true_labels` int64 (N,), `noisy_mask` bool (N,).
    """

    def __init__(
        self,
        num_identities: int,
        images_per_identity: int,
        seed: int = 0,
        label_noise: float = 0.0,
        identity_offset: int = 0,
        flip: bool = True,
        flip_seed: int | None = None,
        preset: str = "classic",
        max_yaw: float = 40.0,
    ) -> None:
        self.num_identities = _check_int(
            "num_identities", num_identities, 2, "a face-recognition set needs at least 2 identities"
        )
        self.images_per_identity = _check_int(
            "images_per_identity", images_per_identity, 1, "give each identity at least one image"
        )
        self.seed = _check_int("seed", seed, 0, "pass a non-negative seed such as 0")
        self.identity_offset = _check_int("identity_offset", identity_offset, 0, "pass a non-negative offset such as 0")
        is_number = isinstance(label_noise, (int, float, np.floating)) and not isinstance(label_noise, bool)
        if not is_number or not 0.0 <= label_noise < 1.0:
            raise ValueError(
                f"label_noise must be a fraction in [0, 1), got {label_noise!r}; e.g. 0.1 mislabels 10% of samples"
            )
        if not isinstance(flip, (bool, np.bool_)):
            raise ValueError(f"flip must be True or False, got {flip!r}; pass flip=False to disable flipping")
        self.label_noise = float(label_noise)
        self.flip = bool(flip)
        self.num_classes = self.num_identities
        self.renderer = SyntheticFaceRenderer(self.seed, preset, max_yaw)

        n = self.num_identities * self.images_per_identity
        self.true_labels = np.repeat(np.arange(self.num_identities, dtype=np.int64), self.images_per_identity)
        self.labels = self.true_labels.copy()
        self.noisy_mask = np.zeros(n, dtype=bool)
        num_noisy = int(round(self.label_noise * n))
        if num_noisy > 0:
            rng = np.random.default_rng((self.seed, _NOISE_LABEL_STREAM))
            picked = rng.choice(n, size=num_noisy, replace=False)
            # shift by 1..C-1 (mod C): uniform over the other classes, never the true one
            shift = rng.integers(1, self.num_identities, size=num_noisy)
            self.labels[picked] = (self.true_labels[picked] + shift) % self.num_identities
            self.noisy_mask[picked] = True
        self.flip_seed = self.seed if flip_seed is None else int(flip_seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that seeds the flips (call before building the epoch's DataLoader iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_identities * self.images_per_identity

    def render(self, identity: int, sample: int) -> np.ndarray:
        """Absolute identity id and sample index -> uint8 (112, 112, 3) RGB, no flip."""
        return self.renderer.render(identity, sample)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if isinstance(index, torch.Tensor):
            index = int(index)
        if not -n <= index < n:
            raise IndexError(f"index {index} is out of range for a dataset of {n} samples; use 0 <= index < {n}")
        index %= n
        k, sample = divmod(index, self.images_per_identity)
        image = self.renderer.render(self.identity_offset + k, sample)
        flip = self.flip and should_flip(self.flip_seed, self.epoch, index)
        return face_to_tensor(image, flip), torch.tensor(self.labels[index], dtype=torch.int64)


def synthetic_verification_pairs(
    num_identities: int, num_pairs: int, seed: int = 0, identity_offset: int = 1_000_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pair plan: identities int64 (P, 2), sample indices int64 (P, 2), issame bool (P,).

    Half the pairs (P // 2) are positive (two different samples of one identity), the rest negative
    (two different identities), in a deterministic shuffled order. Identities lie in
    [identity_offset, identity_offset + num_identities).
    """
    num_identities = _check_int("num_identities", num_identities, 2, "negative pairs need at least 2 identities")
    num_pairs = _check_int("num_pairs", num_pairs, 2, "ask for at least one positive and one negative pair")
    seed = _check_int("seed", seed, 0, "pass a non-negative seed such as 0")
    identity_offset = _check_int("identity_offset", identity_offset, 0, "pass a non-negative offset such as 1_000_000")
    rng = np.random.default_rng((seed, _PAIR_STREAM, identity_offset))
    issame = np.zeros(num_pairs, dtype=bool)
    issame[: num_pairs // 2] = True
    issame = issame[rng.permutation(num_pairs)]

    first = rng.integers(0, num_identities, size=num_pairs)
    second = np.where(issame, first, (first + rng.integers(1, num_identities, size=num_pairs)) % num_identities)
    identities = np.stack([first, second], axis=1).astype(np.int64) + identity_offset

    a = rng.integers(0, _PAIR_SAMPLE_RANGE, size=num_pairs)
    b = (a + rng.integers(1, _PAIR_SAMPLE_RANGE, size=num_pairs)) % _PAIR_SAMPLE_RANGE  # never equal to a
    samples = np.stack([a, b], axis=1).astype(np.int64)
    return identities, samples, issame


def synthetic_verification_set(
    num_identities: int,
    num_pairs: int,
    seed: int = 0,
    identity_offset: int = 1_000_000,
    name: str = "synthetic",
    preset: str = "classic",
    max_yaw: float = 40.0,
) -> VerificationSet:
    """Render the pairs of `synthetic_verification_pairs`: images uint8 (2P, 112, 112, 3), rows 2k, 2k+1 = pair k."""
    identities, samples, issame = synthetic_verification_pairs(num_identities, num_pairs, seed, identity_offset)
    renderer = SyntheticFaceRenderer(seed, preset, max_yaw)
    images = np.stack(
        [renderer.render(i, s) for i, s in zip(identities.reshape(-1), samples.reshape(-1), strict=False)]
    )
    return VerificationSet(name=name, images=images, issame=issame)
