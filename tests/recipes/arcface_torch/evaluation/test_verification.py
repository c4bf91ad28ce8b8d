"""Verification protocol, .bin files, TAR@FAR, plots and the training callback."""

import logging
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from recipes.arcface_torch.evaluation.bin_file import encode_image, load_bin, save_bin
from recipes.arcface_torch.evaluation.callback import VerificationCallback
from recipes.arcface_torch.evaluation.plots import (
    plot_loss_curves,
    plot_roc,
    plot_similarity_histograms,
    similarity_overlap,
)
from recipes.arcface_torch.evaluation.tar_far import roc_curve, tar_at_far, tar_at_far_details
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


# ----------------------------------------------------------------------------- .bin files


def encoded_faces(count, seed=0, size=112):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    return images, [encode_image(image, ".png") for image in images]


def test_save_bin_load_bin_round_trip(tmp_path):
    images, encoded = encoded_faces(4)
    path = save_bin(tmp_path / "toy.bin", encoded, [True, False])
    vset = load_bin(path)
    assert vset.name == "toy"
    np.testing.assert_array_equal(vset.images, images)  # PNG is lossless; RGB order kept
    np.testing.assert_array_equal(vset.issame, [True, False])
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_load_bin_resizes_and_reads_python2_style_strings(tmp_path):
    images, encoded = encoded_faces(2, size=56)
    # A Python 2 pickle stores image bytes as `str`; protocol 2 SHORT_BINSTRING is how py2 wrote them.
    body = b"\x80\x02(]q\x00("
    for data in encoded:
        body += b"T" + len(data).to_bytes(4, "little") + data
    body += b"e]q\x01\x88at."  # (list of str, [True]) as a tuple built with MARK ... TUPLE
    path = tmp_path / "py2.bin"
    path.write_bytes(body)
    vset = load_bin(path, image_size=(112, 112))
    assert vset.images.shape == (2, 112, 112, 3) and vset.issame.tolist() == [True]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(marker)], [True])))
    with pytest.raises(ValueError, match="evil.bin.*refusing to load global"):
        load_bin(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"images": []}, "top-level object is dict"),
        ((["not bytes", b"x"],), "top-level object is tuple"),
        (([b"a", b"b"], [2]), "issame entry 0 is 2"),
        (([b"a", 3], [True]), "image 1 is int"),
        (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
        (([], []), "issame list is empty"),
    ],
)
def test_load_bin_refuses_wrong_structures(tmp_path, payload, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match=message):
        load_bin(path)


def test_load_bin_names_undecodable_image(tmp_path):
    _, encoded = encoded_faces(1)
    path = save_bin(tmp_path / "broken.bin", [encoded[0], b"not an image"], [False])
    with pytest.raises(ValueError, match=r"broken.bin image 1: could not decode"):
        load_bin(path)


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


# ----------------------------------------------------------------------------- plots


def test_similarity_overlap_bounds():
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.5, 0.5, 500)
    assert similarity_overlap(values, values) == pytest.approx(1.0)
    assert similarity_overlap(rng.uniform(0.6, 0.9, 300), rng.uniform(-0.9, 0.2, 300)) == pytest.approx(0.0)
    partial = similarity_overlap(rng.normal(0.5, 0.1, 2000), rng.normal(0.3, 0.1, 2000))
    assert 0.0 < partial < 1.0


def test_plots_write_png_files(tmp_path):
    rng = np.random.default_rng(1)
    overlap = plot_similarity_histograms(
        rng.normal(0.6, 0.1, 200), rng.normal(0.1, 0.1, 400), tmp_path / "hist.png", title="toy"
    )
    assert 0.0 <= overlap <= 1.0
    labels = np.r_[np.ones(250), np.zeros(250)]
    fpr, tpr, _ = roc_curve(rng.normal(size=500) + labels, labels)
    plot_roc({"a": (fpr, tpr), "b": (fpr, np.sqrt(tpr))}, tmp_path / "roc.png")
    plot_loss_curves(
        {"arcface": ([0, 1, 2], [9.0, 7.0, 6.0]), "unpg": ([0, 1, 2], [9.5, 6.5, 5.0])}, tmp_path / "loss.png"
    )
    for name in ("hist.png", "roc.png", "loss.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
    with pytest.raises(ValueError, match="positive similarities is empty"):
        similarity_overlap([], [0.1])


# ----------------------------------------------------------------------------- callback


class RecordingWriter:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, scalar_value, global_step):
        self.scalars.append((tag, scalar_value, global_step))


def test_callback_logs_upstream_lines_on_schedule(tmp_path, caplog):
    vset = random_set(num_pairs=10, name="lfw")
    writer = RecordingWriter()
    callback = VerificationCallback([vset], frequent=2000, output_dir=tmp_path, summary_writer=writer, batch_size=8)
    model = LeftHalfNet()
    assert callback(1999, model) == {} and callback(0, model) == {}
    with caplog.at_level(logging.INFO, logger="arcface_torch"):
        results = callback(2000, model)
    assert "[lfw][2000]XNorm: " in caplog.text
    lfw = results["lfw"]
    assert f"[lfw][2000]Accuracy-Flip: {lfw['accuracy']:1.5f}+-{lfw['accuracy_std']:1.5f}" in caplog.text
    assert "[lfw][2000]Accuracy-Highest: " in caplog.text
    assert (tmp_path / "similarity_lfw_step0002000.png").read_bytes().startswith(b"\x89PNG")
    assert ("lfw", results["lfw"]["accuracy"], 2000) in writer.scalars
    assert callback(2001, model, force=True)["lfw"]["accuracy_highest"] >= results["lfw"]["accuracy"]
    other_rank = VerificationCallback([vset], frequent=1, output_dir=tmp_path, rank=1)
    assert other_rank(5, model, force=True) == {}


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
