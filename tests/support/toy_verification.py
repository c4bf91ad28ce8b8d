"""A toy embedding model and verification set shared by the evaluation tests."""

import numpy as np
import torch
from torch import nn

from recipes.arcface_torch.evaluation.verification_set import VerificationSet


class LeftHalfNet(nn.Module):
    """Stand-in embedding model that is NOT flip invariant: it sees only the left half of the face."""

    def __init__(self, dim: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, dim, kernel_size=5, stride=4)
        self.seen_training_flags = []

    def forward(self, x):
        self.seen_training_flags.append(self.training)
        half = x[..., : x.shape[-1] // 2]
        return self.conv(half).mean(dim=(2, 3)) + 0.5


def random_set(num_pairs=10, size=112, seed=0, name="toy"):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2 * num_pairs, size, size, 3), dtype=np.uint8)
    issame = np.arange(num_pairs) % 2 == 0
    return VerificationSet(name, images, issame)
