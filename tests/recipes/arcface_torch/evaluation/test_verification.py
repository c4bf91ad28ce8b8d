"""Verification protocol: 10-fold accuracy, flip embeddings, each distinct image embedded once."""

import numpy as np
import pytest
import torch

from recipes.arcface_torch.evaluation.verification import (
    distinct_images,
    embed_verification_set,
    embed_with_flip,
    evaluate,
    kfold_accuracy,
    kfold_splits,
    l2_normalize,
    pair_distances,
    ten_fold_accuracy,
)
from recipes.arcface_torch.evaluation.verification_set import VerificationSet
from tests.support.toy_verification import LeftHalfNet, random_set

# ----------------------------------------------------------------------------- 10-fold accuracy


def hand_made_pairs():
    """20 pairs, fold k = pairs (2k, 2k+1): pair 2k positive, pair 2k+1 negative.

    Positives sit at distance 0.405, negatives at 1.205, except a hard positive (1.005) in fold 3
    (pair 6) and an impostor (0.305) in fold 7 (pair 15). Grid thresholds t = 0.00, 0.01, ..., 3.99;
    a pair is "same" when distance < t.
    * Test fold 0,1,2,4,5,6,8,9 (both odd pairs in the 9 training folds, 18 pairs):
      t<=0.305: 9/18; (0.305,0.405]: 8/18; (0.405,1.005]: 16/18; (1.005,1.205]: 17/18; >1.205: 9/18
      -> first best t = 1.01; held-out 0.405 (same) and 1.205 (different) both right: accuracy 1.0.
    * Test fold 3 (hard positive held out; training positives all 0.405):
      (0.405,1.205] gives 17/18 -> t = 0.41; held-out 1.005 is called different (wrong),
      1.205 different (right): accuracy 0.5.
    * Test fold 7 (impostor held out; training has the hard positive):
      (1.005,1.205] gives 18/18 -> t = 1.01; held-out 0.405 right, impostor 0.305 < 1.01 wrong: 0.5.
    Accuracies [1,1,1,.5,1,1,1,.5,1,1]: mean 0.9, std sqrt((8*0.01 + 2*0.16)/10) = 0.2.
    """
    issame = np.tile([True, False], 10)
    distances = np.where(issame, 0.405, 1.205)
    distances[6] = 1.005
    distances[15] = 0.305
    return distances, issame


def test_ten_fold_accuracy_matches_hand_computation():
    distances, issame = hand_made_pairs()
    mean, std, thresholds = ten_fold_accuracy(distances, issame)
    assert mean == pytest.approx(0.9, abs=1e-12)
    assert std == pytest.approx(0.2, abs=1e-12)
    expected = np.full(10, 1.01)
    expected[3] = 0.41
    np.testing.assert_allclose(thresholds, expected, atol=1e-9)


def test_threshold_comparison_is_strict():
    # Positives at distance exactly 0 (identical embeddings), negatives at 2: threshold 0.00 calls
    # nothing "same" (0 < 0 is false, 50% on the training folds), 0.01 is the first perfect one.
    issame = np.tile([True, False], 10)
    mean, std, thresholds = ten_fold_accuracy(np.where(issame, 0.0, 2.0), issame)
    assert (mean, std) == (1.0, 0.0)
    np.testing.assert_allclose(thresholds, 0.01, atol=1e-12)


def test_ten_fold_accuracy_from_embeddings_uses_squared_distance():
    distances, issame = hand_made_pairs()
    # Pair k: e1 = (1, 0), e2 = (x, y) on a circle of radius r so that |e1 - e2|^2 = distance.
    angles = np.arccos(1.0 - distances / 2.0)
    embeddings = np.zeros((40, 2))
    embeddings[0::2, 0] = 1.0
    embeddings[1::2, 0] = np.cos(angles)
    embeddings[1::2, 1] = np.sin(angles)
    mean, std, _ = ten_fold_accuracy(embeddings, issame)
    assert (mean, std) == pytest.approx((0.9, 0.2), abs=1e-12)


def test_kfold_accuracy_matches_naive_loop_on_random_distances():
    rng = np.random.default_rng(5)
    issame = rng.random(203) < 0.5
    distances = np.clip(rng.normal(np.where(issame, 0.9, 1.6), 0.35), 0, 4)
    thresholds = np.arange(0, 4, 0.01)
    fold_edges = np.cumsum([0] + [21, 21, 21] + [20] * 7)  # 203 pairs: first 3 folds hold 21
    expected = []
    for fold in range(10):
        test = np.zeros(203, dtype=bool)
        test[fold_edges[fold] : fold_edges[fold + 1]] = True
        best_t, best_acc = None, -1.0
        for t in thresholds:
            acc = np.mean((distances[~test] < t) == issame[~test])
            if acc > best_acc:
                best_t, best_acc = t, acc
        expected.append(np.mean((distances[test] < best_t) == issame[test]))
    mean, std, _ = ten_fold_accuracy(distances, issame)
    assert mean == pytest.approx(np.mean(expected), abs=1e-12)
    assert std == pytest.approx(np.std(expected), abs=1e-12)


def test_kfold_splits_are_contiguous_first_folds_larger():
    splits = kfold_splits(23, 10)
    assert [len(test) for _, test in splits] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert np.array_equal(np.concatenate([test for _, test in splits]), np.arange(23))
    assert all(len(train) + len(test) == 23 for train, test in splits)
    with pytest.raises(ValueError, match="at least 10 pairs"):
        kfold_splits(5, 10)


# ----------------------------------------------------------------------------- embeddings with flip


def test_flip_embedding_sums_both_views_and_restores_train_mode():
    vset = random_set(num_pairs=3)
    model = LeftHalfNet()
    model.train()
    embeddings = embed_verification_set(model, vset, batch_size=4)
    assert model.training and model.seen_training_flags and not any(model.seen_training_flags)

    with torch.no_grad():
        x = torch.from_numpy(vset.images).permute(0, 3, 1, 2).float().sub(127.5).div(127.5)
        plain = model(x).double().numpy()
        flipped = model(torch.flip(x, dims=[3])).double().numpy()
    both = plain + flipped
    expected = both / np.linalg.norm(both, axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)
    plain_only = plain / np.linalg.norm(plain, axis=1, keepdims=True)
    assert np.abs(embeddings - plain_only).max() > 1e-3  # the flipped view really contributes


def test_evaluate_reports_xnorm_over_both_views_and_similarities():
    vset = random_set(num_pairs=10)
    model = LeftHalfNet()
    result = evaluate(model, vset, batch_size=7)
    with torch.no_grad():
        x = torch.from_numpy(vset.images).permute(0, 3, 1, 2).float().sub(127.5).div(127.5)
        norms = torch.cat([model(x), model(torch.flip(x, dims=[3]))]).double().norm(dim=1)
    assert result["xnorm"] == pytest.approx(norms.mean().item(), rel=1e-5)
    assert result["positive_similarities"].shape == (5,) and result["negative_similarities"].shape == (5,)
    assert 0.0 <= result["accuracy"] <= 1.0 and len(result["fold_accuracies"]) == 10
    # 5 negatives cannot support FAR 1e-3: NaN with a reason instead of a number.
    assert np.isnan(result["tar_at_far"][1e-3]) and "negative pairs" in result["tar_at_far_notes"][1e-3]


# ----------------------------------------------------------------------------- each distinct image once


def repeated_image_set(num_faces=6, num_pairs=30, seed=3):
    """A .bin-like set built from few faces, so every face sits in many pairs (as in LFW)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 256, size=(num_faces, 112, 112, 3), dtype=np.uint8)
    picks = rng.integers(0, num_faces, size=(num_pairs, 2))
    return VerificationSet("repeats", faces[picks.reshape(-1)], picks[:, 0] % 2 == picks[:, 1] % 2), picks


def test_distinct_images_finds_each_face_once_and_maps_every_row_back():
    vset, picks = repeated_image_set()
    first, inverse = distinct_images(vset.images)
    assert first.size == np.unique(picks).size
    np.testing.assert_array_equal(vset.images[first][inverse], vset.images)


def test_evaluate_embeds_each_distinct_image_once_with_the_same_numbers():
    vset, picks = repeated_image_set()
    model = LeftHalfNet().double()
    fast = evaluate(model, vset, batch_size=4)
    calls = len(model.seen_training_flags)
    assert calls == 2 * int(np.ceil(np.unique(picks).size / 4))  # plain + flipped batches of the 6 faces only

    plain, flipped = embed_with_flip(model, vset.images, batch_size=4)  # every row, as before
    every_row = l2_normalize(plain + flipped)
    distinct = embed_verification_set(model, vset, batch_size=4)
    cosine = np.sum(every_row * distinct, axis=1)
    assert cosine.min() >= 1.0 - 1e-6
    accuracies, best = kfold_accuracy(pair_distances(every_row), vset.issame)
    assert fast["accuracy"] == float(np.mean(accuracies))
    np.testing.assert_array_equal(fast["best_thresholds"], best)
    xnorm = float(np.mean(np.linalg.norm(np.concatenate([plain, flipped]), axis=1)))
    assert fast["xnorm"] == pytest.approx(xnorm, rel=1e-9)
