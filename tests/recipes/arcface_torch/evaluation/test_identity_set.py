"""Identity test sets: balanced pairs, all-pairs TAR@FAR, loading a folder of any image format."""

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from recipes.arcface_torch.evaluation.identity_set import balanced_pairs, evaluate_identity_set, load_identity_folder
from recipes.arcface_torch.evaluation.tar_far import tar_at_far_details


def test_balanced_pairs_are_half_positive_distinct_and_deterministic():
    identity = np.repeat(np.arange(6), 4)  # 6 identities x 4 faces: 36 positive pairs
    pairs, issame = balanced_pairs(identity, seed=1)
    assert issame.sum() == 36 and (~issame).sum() == 36
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)
    np.testing.assert_array_equal(identity[pairs[:, 0]] == identity[pairs[:, 1]], issame)
    again, _ = balanced_pairs(identity, seed=1)
    np.testing.assert_array_equal(pairs, again)
    capped, capped_same = balanced_pairs(identity, seed=1, max_positives=10)
    assert capped_same.sum() == 10 and len(capped) == 20


def test_balanced_pairs_without_positives_is_a_clear_error():
    with pytest.raises(ValueError, match="0 positive"):
        balanced_pairs(np.arange(5))


class MeanColour(nn.Module):
    """Embedding = mean colour of the face (plus a constant): identities with distinct colours separate."""

    def forward(self, x):
        return torch.cat([x.mean(dim=(2, 3)), torch.ones_like(x[:, :1, 0, 0])], dim=1)


def test_identity_set_scores_every_pair_and_notes_unreachable_fars():
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, size=(8, 3))
    identity = np.repeat(np.arange(8), 3)
    images = (
        (colours[identity][:, None, None, :] + rng.integers(-3, 4, size=(24, 112, 112, 3)))
        .clip(0, 255)
        .astype(np.uint8)
    )
    result = evaluate_identity_set(MeanColour(), images, identity, fars=(1e-1, 1e-3))
    assert result["pairs"] == {"positive": 24, "negative": 252}  # 24*23/2 = 276 pairs
    assert result["accuracy"] > 0.9
    assert result["tar_at_far_notes"][1e-3] == "FAR 0.001 needs at least 1000 negative pairs, got 252"
    assert np.isnan(result["tar_at_far"][1e-3])
    scores = np.r_[result["positive_similarities"], result["negative_similarities"]]
    labels = np.r_[np.ones(24, bool), np.zeros(252, bool)]
    assert result["tar_at_far"][1e-1] == tar_at_far_details(scores, labels, (1e-1,))[1e-1]["tar"]


def test_load_identity_folder_reads_grey_pgm_and_resizes(tmp_path):
    for name, size in (("ann", 112), ("ben", 90)):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.pgm"), np.full((size, size), 40, np.uint8))
        cv2.imwrite(str(tmp_path / name / "b.tif"), np.full((size, size, 3), 200, np.uint8))
    images, identity = load_identity_folder(tmp_path)
    assert images.shape == (4, 112, 112, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(identity, [0, 0, 1, 1])
    assert images[0].max() == 40 and images[1].min() == 200
