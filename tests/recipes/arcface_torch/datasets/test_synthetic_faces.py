"""Tests for the synthetic face identities: determinism, tensors, label noise, verification pairs, errors."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recipes.arcface_torch.datasets.synthetic_face_renderer import SyntheticFaceRenderer
from recipes.arcface_torch.datasets.synthetic_faces import (
    SyntheticFaces,
    synthetic_verification_pairs,
    synthetic_verification_set,
)
from recipes.arcface_torch.evaluation.verification_set import VerificationSet


def test_render_is_deterministic_per_seed_identity_and_sample():
    a, b, other = SyntheticFaceRenderer(3), SyntheticFaceRenderer(3), SyntheticFaceRenderer(4)
    img = a.render(7, 2)
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8
    assert img.tobytes() == b.render(7, 2).tobytes()
    assert img.tobytes() != other.render(7, 2).tobytes()
    assert img.tobytes() != a.render(7, 3).tobytes()
    assert img.tobytes() != a.render(8, 2).tobytes()
    assert img.std() > 10  # a drawn picture, not a flat fill


def test_items_are_normalised_float_images_with_int64_labels():
    ds = SyntheticFaces(5, 3, seed=1)
    assert len(ds) == 15 and ds.num_classes == 5
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 112, 112) and image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert label.dtype == torch.int64 and label.ndim == 0
        assert 0 <= int(label) < 5 and int(label) == i // 3
    np.testing.assert_array_equal(ds.true_labels, np.repeat(np.arange(5), 3))


def test_item_is_render_of_offset_identity_normalised_like_insightface():
    ds = SyntheticFaces(4, 2, seed=2, identity_offset=100, flip=False)
    image, label = ds[5]  # class 2, sample 1
    expected = (ds.render(102, 1).astype(np.float32).transpose(2, 0, 1) - 127.5) / 127.5
    np.testing.assert_allclose(image.numpy(), expected, atol=1e-6)
    assert int(label) == 2


def test_flip_is_deterministic_mirrors_and_hits_about_half():
    a, b = SyntheticFaces(20, 10, seed=5), SyntheticFaces(20, 10, seed=5)
    plain = SyntheticFaces(20, 10, seed=5, flip=False)
    flipped = 0
    for i in range(0, 200, 7):
        x, _ = a[i]
        assert torch.equal(x, b[i][0])
        p = plain[i][0]
        assert torch.equal(x, p) or torch.equal(x, p.flip(2))
        flipped += int(not torch.equal(x, p))
    assert 5 <= flipped <= 24  # 29 items, flip probability one half


def test_dataloader_workers_give_the_same_batches():
    ds = SyntheticFaces(4, 2, seed=9)
    direct = torch.stack([ds[i][0] for i in range(len(ds))])
    loaded = torch.cat([x for x, _ in DataLoader(ds, batch_size=3, num_workers=2)])
    assert torch.equal(direct, loaded)


def test_label_noise_fraction_and_wrong_labels():
    ds = SyntheticFaces(50, 20, seed=0, label_noise=0.2)
    assert ds.noisy_mask.dtype == bool and ds.noisy_mask.shape == (1000,)
    assert ds.noisy_mask.sum() == 200
    assert np.all(ds.labels[ds.noisy_mask] != ds.true_labels[ds.noisy_mask])
    assert np.all(ds.labels[~ds.noisy_mask] == ds.true_labels[~ds.noisy_mask])
    assert ds.labels.min() >= 0 and ds.labels.max() < 50
    assert len(np.unique(ds.labels[ds.noisy_mask])) > 30  # spread over many other classes
    i = int(np.flatnonzero(ds.noisy_mask)[0])
    assert int(ds[i][1]) == ds.labels[i] != ds.true_labels[i]
    again = SyntheticFaces(50, 20, seed=0, label_noise=0.2)
    np.testing.assert_array_equal(again.labels, ds.labels)
    assert not SyntheticFaces(50, 20, seed=0).noisy_mask.any()


def test_identities_are_farther_apart_than_samples_of_one_identity():
    renderer = SyntheticFaceRenderer(0)
    x = np.stack([[renderer.render(500 + k, s).astype(np.float32).ravel() for s in range(4)] for k in range(16)])
    intra = [np.linalg.norm(x[k, a] - x[k, b]) for k in range(16) for a in range(4) for b in range(a + 1, 4)]
    inter = [np.linalg.norm(x[k, 0] - x[j, 1]) for k in range(16) for j in range(16) if j != k]
    assert np.mean(intra) < np.mean(inter)


def test_verification_pairs_are_balanced_disjoint_and_deterministic():
    identities, samples, issame = synthetic_verification_pairs(40, 101, seed=1, identity_offset=1_000_000)
    assert identities.shape == samples.shape == (101, 2) and issame.shape == (101,)
    assert issame.sum() == 50
    assert np.all((identities[:, 0] == identities[:, 1]) == issame)
    assert np.all(samples[issame, 0] != samples[issame, 1])
    assert identities.min() >= 1_000_000 and identities.max() < 1_000_040
    assert 0 < issame[:50].sum() < 50  # positives and negatives are mixed, not in blocks
    again = synthetic_verification_pairs(40, 101, seed=1, identity_offset=1_000_000)
    for x, y in zip(again, (identities, samples, issame), strict=False):
        np.testing.assert_array_equal(x, y)


def test_verification_set_rows_are_the_planned_pairs():
    vs = synthetic_verification_set(10, 6, seed=4, name="tiny")
    assert isinstance(vs, VerificationSet) and vs.name == "tiny" and vs.num_pairs == 6
    assert vs.images.shape == (12, 112, 112, 3) and vs.images.dtype == np.uint8
    identities, samples, issame = synthetic_verification_pairs(10, 6, seed=4)
    np.testing.assert_array_equal(vs.issame, issame)
    renderer = SyntheticFaceRenderer(4)
    assert np.array_equal(vs.images[3], renderer.render(identities[1, 1], samples[1, 1]))
    train = SyntheticFaces(10, 2, seed=4)
    assert set(identities.ravel()).isdisjoint(range(train.identity_offset, train.identity_offset + 10))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_identities=1, images_per_identity=2), "num_identities must be an integer >= 2, got 1"),
        (dict(num_identities=3, images_per_identity=0), "images_per_identity must be an integer >= 1, got 0"),
        (dict(num_identities=3, images_per_identity=2, label_noise=1.0), r"label_noise must be .* \[0, 1\), got 1.0"),
        (dict(num_identities=3, images_per_identity=2, label_noise=-0.1), "label_noise .* got -0.1"),
        (dict(num_identities=3, images_per_identity=2, seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(num_identities=3, images_per_identity=2, identity_offset=2.5), "identity_offset must be an integer"),
        (dict(num_identities=3, images_per_identity=2, flip="yes"), "flip must be True or False, got 'yes'"),
    ],
)
def test_bad_dataset_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFaces(**kwargs)


def test_bad_index_and_pair_arguments_are_named():
    with pytest.raises(IndexError, match="index 6 is out of range for a dataset of 6 samples"):
        SyntheticFaces(3, 2)[6]
    with pytest.raises(ValueError, match="num_pairs must be an integer >= 2, got 1"):
        synthetic_verification_pairs(10, 1)
    with pytest.raises(ValueError, match="num_identities must be an integer >= 2, got 1"):
        synthetic_verification_set(1, 10)
    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -3"):
        SyntheticFaceRenderer(-3)
    with pytest.raises(ValueError, match="sample must be a non-negative integer, got -1"):
        SyntheticFaceRenderer(0).render(1, -1)


def test_classic_preset_is_the_default_renderer_and_hard_preset_changes_each_sample():
    classic, explicit, hard = (
        SyntheticFaceRenderer(3),
        SyntheticFaceRenderer(3, "classic"),
        SyntheticFaceRenderer(3, "hard"),
    )
    for identity, sample in ((7, 2), (11, 0)):
        assert classic.render(identity, sample).tobytes() == explicit.render(identity, sample).tobytes()
        assert classic.render(identity, sample).tobytes() != hard.render(identity, sample).tobytes()
    again = SyntheticFaceRenderer(3, "hard")
    assert hard.render(7, 2).tobytes() == again.render(7, 2).tobytes()


def test_hard_preset_keeps_identities_apart_and_max_yaw_zero_keeps_faces_frontal():
    renderer = SyntheticFaceRenderer(0, "hard", max_yaw=40.0)
    x = np.stack([[renderer.render(500 + k, s).astype(np.float32).ravel() for s in range(4)] for k in range(16)])
    intra = [np.linalg.norm(x[k, a] - x[k, b]) for k in range(16) for a in range(4) for b in range(a + 1, 4)]
    inter = [np.linalg.norm(x[k, 0] - x[j, 1]) for k in range(16) for j in range(16) if j != k]
    assert np.mean(intra) < np.mean(inter)
    turned, frontal = SyntheticFaceRenderer(0, "hard", 60.0), SyntheticFaceRenderer(0, "hard", 0.0)
    assert turned.render(5, 1).tobytes() != frontal.render(5, 1).tobytes()


def test_synthetic_faces_pass_the_preset_to_the_renderer():
    hard = SyntheticFaces(4, 2, seed=2, flip=False, preset="hard", max_yaw=30.0)
    image, _ = hard[3]
    expected = SyntheticFaceRenderer(2, "hard", 30.0).render(1, 1)
    np.testing.assert_array_equal(((image.numpy().transpose(1, 2, 0) * 127.5) + 127.5).round(), expected)


@pytest.mark.parametrize(
    "kwargs, match", [({"preset": "harder"}, "preset 'harder' is unknown"), ({"max_yaw": 95.0}, "max_yaw=95.0")]
)
def test_bad_preset_or_yaw_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFaceRenderer(0, **kwargs)


def test_flips_are_redrawn_every_epoch_and_follow_the_seed():
    ds = SyntheticFaces(10, 4, seed=1, flip=True, flip_seed=7)
    plain = SyntheticFaces(10, 4, seed=1, flip=False)

    def flips(dataset, epoch):
        dataset.set_epoch(epoch)
        return [not torch.equal(dataset[i][0], plain[i][0]) for i in range(len(dataset))]

    epoch0, epoch1 = flips(ds, 0), flips(ds, 1)
    assert epoch0 != epoch1 and 8 <= sum(epoch1) <= 32
    assert flips(ds, 0) == epoch0  # a pure function of (seed, epoch, index): resuming mid-epoch sees the same flips
    assert flips(SyntheticFaces(10, 4, seed=1, flip=True, flip_seed=8), 0) != epoch0
