"""TAR at FAR against a brute-force threshold sweep, ties and too few negatives."""

import logging

import numpy as np
import pytest

from recipes.arcface_torch.evaluation.tar_far import roc_curve, tar_at_far, tar_at_far_details

# ----------------------------------------------------------------------------- TAR@FAR


def brute_force_tar_at_far(scores, labels, far):
    thresholds = np.r_[np.inf, np.sort(np.unique(scores))[::-1]]
    fprs = np.array([np.mean(scores[~labels] >= t) for t in thresholds])
    tprs = np.array([np.mean(scores[labels] >= t) for t in thresholds])
    gaps = np.abs(fprs - far)
    candidates = np.flatnonzero(gaps == gaps.min())
    best = max(candidates, key=lambda i: (fprs[i], tprs[i]))
    return tprs[best]


def test_tar_at_far_matches_brute_force_on_random_scores():
    rng = np.random.default_rng(3)
    labels = rng.random(3000) < 0.3
    scores = rng.normal(size=3000) + 1.5 * labels
    fars = (1e-3, 3e-3, 1e-2, 0.05, 0.1, 0.5)
    result = tar_at_far(scores, labels, fars)
    for far in fars:
        assert result[far] == pytest.approx(brute_force_tar_at_far(scores, labels, far), abs=1e-12), far


def test_tar_at_far_survives_ties_and_too_few_negatives(caplog):
    scores = np.array([0.9, 0.9, 0.9, 0.5, 0.5, 0.1, 0.1, 0.1])  # duplicate scores -> duplicate FPRs
    labels = np.array([1, 1, 0, 1, 0, 0, 0, 1])
    with caplog.at_level(logging.WARNING, logger="arcface_torch"):
        result = tar_at_far(scores, labels, (1e-6, 0.25, 0.5))
    assert np.isnan(result[1e-6]) and "needs at least 1000000 negative pairs" in caplog.text
    # ROC points: (0,0) (.25,.5) (.5,.75) (1,1); FAR 0.25 -> TAR 0.5, FAR 0.5 -> TAR 0.75.
    assert result[0.25] == pytest.approx(0.5) and result[0.5] == pytest.approx(0.75)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert fpr[0] == 0 and tpr[-1] == 1 and np.isinf(thresholds[0]) and np.all(np.diff(fpr) >= 0)
    only_positive = tar_at_far_details([0.3, 0.4], [1, 1], (0.1,))
    assert np.isnan(only_positive[0.1]["tar"]) and "0 negative" in only_positive[0.1]["note"]
    with pytest.raises(ValueError, match="position 1"):
        tar_at_far([0.1, np.nan], [0, 1])
