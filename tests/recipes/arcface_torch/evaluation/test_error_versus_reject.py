"""Error-versus-reject: the readout by hand on a small set, a perfect quality score beats random rejection and a
random score does not, accuracy on the pairs left, the degraded set's known ordering, the plot, bad inputs."""

import numpy as np
import pytest

from recipes.arcface_torch.evaluation.degraded_set import degraded_verification_set
from recipes.arcface_torch.evaluation.error_versus_reject import error_versus_reject, random_rejection
from recipes.arcface_torch.evaluation.plots import plot_error_versus_reject
from recipes.arcface_torch.evaluation.tar_far import tar_at_far_details
from recipes.arcface_torch.evaluation.verification import ten_fold_accuracy
from tests.support.toy_verification import random_set


def degraded_pairs(seed=0, pairs=4000, degraded_share=0.4):
    """Pair scores where every degraded image lowers a genuine pair's score: (scores, issame, degraded (2P,))."""
    rng = np.random.default_rng(seed)
    issame = np.arange(pairs) % 2 == 0
    degraded = rng.random(2 * pairs) < degraded_share
    hits = degraded[0::2].astype(float) + degraded[1::2]
    genuine = rng.normal(0.6, 0.08, pairs) - 0.35 * hits
    impostor = rng.normal(0.0, 0.1, pairs) + 0.05 * hits
    return np.where(issame, genuine, impostor), issame, degraded


def test_readout_by_hand():
    scores = np.array([0.9, 0.1, 0.3, 0.2, 0.8, 0.5, 0.05, 0.4])
    issame = np.array([True, False, True, False, True, False, True, False])
    quality = np.array([5, 6, 1, 9, 7, 8, 2, 3, 9, 9, 8, 8, 0, 4, 7, 7], dtype=float)
    curve = error_versus_reject(scores, issame, quality, fractions=[0.0, 0.125, 0.25], threshold=0.5)
    assert curve.fnmr[0] == pytest.approx(2 / 4)  # genuine 0.3 and 0.05 fall below 0.5
    # rejecting 2 of 16 images (qualities 0 and 1: images 12 and 2) drops pairs 6 and 1
    assert curve.pairs_left.tolist()[:2] == [8, 6]
    assert curve.fnmr[1] == pytest.approx(1 / 3)  # genuine left: 0.9, 0.3, 0.8
    assert curve.area == pytest.approx(np.trapezoid(curve.fnmr, [0, 0.125, 0.25]) / 0.25)


def test_threshold_is_tar_far_readout_so_fnmr_at_zero_is_one_minus_tar():
    scores, issame, _ = degraded_pairs(pairs=2000)
    rng = np.random.default_rng(3)
    quality = rng.random(4000)
    curve = error_versus_reject(scores, issame, quality, fmr=1e-2, fractions=[0.0, 0.2])
    detail = tar_at_far_details(scores, issame, [1e-2])[1e-2]
    assert curve.thresholds[0] == detail["threshold"]
    assert curve.fnmr[0] == pytest.approx(1 - detail["tar"])
    # at 20% rejected: the readout again, on the pairs left
    rank = np.empty(4000, dtype=np.int64)
    rank[np.argsort(quality, kind="stable")] = np.arange(4000)
    keep = np.minimum(rank[0::2], rank[1::2]) >= 800
    again = tar_at_far_details(scores[keep], issame[keep], [1e-2])[1e-2]
    assert curve.thresholds[1] == again["threshold"] and curve.fnmr[1] == pytest.approx(1 - again["tar"])
    fixed = error_versus_reject(scores, issame, quality, fmr=1e-2, fractions=[0.0, 0.2], threshold="fixed")
    assert list(fixed.thresholds) == [detail["threshold"]] * 2
    assert fixed.fnmr[1] == pytest.approx(np.mean(scores[keep & issame] < detail["threshold"]))


def test_perfect_score_beats_random_rejection_and_a_random_score_does_not():
    scores, issame, degraded = degraded_pairs(pairs=2000)
    baseline = random_rejection(scores, issame, fmr=1e-2, draws=10)
    perfect = error_versus_reject(scores, issame, np.where(degraded, 0.0, 1.0), fmr=1e-2)
    rng = np.random.default_rng(5)
    guesses = [error_versus_reject(scores, issame, rng.random(scores.size * 2), fmr=1e-2) for _ in range(3)]
    assert perfect.fnmr[0] == pytest.approx(baseline.fnmr[0]) and perfect.thresholds[0] == pytest.approx(
        baseline.thresholds[0]
    )
    assert perfect.area < 0.75 * baseline.area and perfect.fnmr[-1] < 0.3 * perfect.fnmr[0]
    for guess in guesses:  # within the spread of random rejection: no better, no worse
        assert abs(guess.area - baseline.area) < 0.1 * baseline.area
    # the inverted score rejects the good images first: worse than random
    inverted = error_versus_reject(scores, issame, np.where(degraded, 1.0, 0.0), fmr=1e-2)
    assert inverted.area > baseline.area


def test_refit_threshold_credits_the_false_matches_rejection_removes():
    """Degraded faces that look alike across identities (false matches) but keep their genuine scores: only the
    threshold found again on the pairs left sees the gain of rejecting them."""
    rng = np.random.default_rng(1)
    pairs = 2000
    issame = np.arange(pairs) % 2 == 0
    degraded = rng.random(2 * pairs) < 0.2
    both = degraded[0::2] & degraded[1::2]
    scores = np.where(issame, rng.normal(0.6, 0.1, pairs), rng.normal(0.0, 0.1, pairs) + 0.55 * both)
    quality = np.where(degraded, 0.0, 1.0)
    refit = error_versus_reject(scores, issame, quality, fmr=1e-2)
    random_refit = random_rejection(scores, issame, fmr=1e-2, draws=5)
    assert refit.area < 0.7 * random_refit.area
    fixed = error_versus_reject(scores, issame, quality, fmr=1e-2, threshold="fixed")
    random_fixed = random_rejection(scores, issame, fmr=1e-2, draws=5, threshold="fixed")
    assert abs(fixed.area - random_fixed.area) < 0.15 * random_fixed.area


def test_accuracy_is_the_ten_fold_accuracy_of_the_pairs_left():
    scores, issame, degraded = degraded_pairs(pairs=600)
    quality = np.where(degraded, 0.0, 1.0) + np.arange(1200) * 1e-6  # distinct: the rejected images are known
    curve = error_versus_reject(scores, issame, quality, fmr=1e-1, fractions=[0.0, 0.3])
    assert curve.accuracy[0] == pytest.approx(ten_fold_accuracy(2 - 2 * scores, issame)[0])
    kept_images = np.argsort(quality, kind="stable")[int(0.3 * 1200) :]
    kept = np.isin(np.arange(0, 1200, 2), kept_images) & np.isin(np.arange(1, 1200, 2), kept_images)
    assert curve.pairs_left[1] == kept.sum()
    assert curve.accuracy[1] == pytest.approx(ten_fold_accuracy(2 - 2 * scores[kept], issame[kept])[0])
    assert curve.accuracy[1] > curve.accuracy[0]


def test_degraded_set_has_the_known_ordering():
    vset = random_set(num_pairs=40, seed=1)
    degraded, severity, names = degraded_verification_set(vset, seed=2)
    assert degraded.images.shape == vset.images.shape and np.array_equal(degraded.issame, vset.issame)
    clean = severity == 0
    assert 0.25 < clean.mean() < 0.75 and set(names) > {"clean"}
    assert np.array_equal(degraded.images[clean], vset.images[clean])
    assert all(not np.array_equal(degraded.images[i], vset.images[i]) for i in np.flatnonzero(~clean))
    again, again_severity, _ = degraded_verification_set(vset, seed=2)
    assert np.array_equal(again.images, degraded.images) and np.array_equal(again_severity, severity)


def test_plot_and_bad_inputs(tmp_path):
    scores, issame, degraded = degraded_pairs(pairs=400)
    curve = error_versus_reject(scores, issame, -degraded.astype(float), fmr=1e-2)
    assert np.isnan(curve.fnmr[-1]) and np.isnan(curve.area)  # too few impostors left for FMR 1e-2
    path = plot_error_versus_reject(
        {"oracle": (curve.fractions, curve.fnmr), "random": (curve.fractions, curve.fnmr[::-1])}, tmp_path / "e.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="one quality per image"):
        error_versus_reject(scores, issame, np.zeros(10))
    with pytest.raises(ValueError, match="cannot fix the threshold at FMR 0.0001: FAR 0.0001 needs at least 10000"):
        error_versus_reject(scores, issame, np.zeros(800), fmr=1e-4)
    with pytest.raises(ValueError, match="fractions .* must rise strictly"):
        error_versus_reject(scores, issame, np.zeros(800), fractions=[0.2, 0.1])
