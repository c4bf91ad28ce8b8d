"""Imprinted class centres against a naive float64 per-class mean, in one process and on 2 gloo ranks."""

import numpy as np
import pytest
import torch

from plugins.partial_fc import PartialFC
from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.datasets.synthetic_faces import SyntheticFaces
from recipes.arcface_torch.head_imprint import imprint_class_centres
from tests.support.distributed_harness import run_on_ranks

NUM_CLASSES = 9  # the dataset has 7: classes 7 and 8 have no image and keep their random init
EMBEDDING = 16


def faces() -> SyntheticFaces:
    """7 identities x 3 images, 20% wrong labels (uneven classes), random flips on (imprinting must not flip)."""
    return SyntheticFaces(7, 3, seed=3, label_noise=0.2, identity_offset=40)


def backbone() -> torch.nn.Module:
    """TinyFaceNet with BatchNorm statistics calibrated on other faces, so that eval mode (what imprinting uses)
    gives embeddings that differ from image to image and from an image to its mirror."""
    torch.manual_seed(0)
    model = get_model("tiny", num_features=EMBEDDING)
    calibration = SyntheticFaces(8, 2, seed=5, identity_offset=900, flip=False)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.stack([calibration[i][0] for i in range(len(calibration))]))
    return model.eval()


def naive_centres(model: torch.nn.Module, dataset: SyntheticFaces) -> dict[int, torch.Tensor]:
    """One image at a time through the model in eval mode (TinyFaceNet computes in float32), the rest in float64:
    class -> normalised mean of the normalised unflipped embeddings."""
    model.eval()
    per_class: dict[int, list[torch.Tensor]] = {}
    for index in range(len(dataset)):
        identity, sample = divmod(index, dataset.images_per_identity)
        pixels = dataset.render(dataset.identity_offset + identity, sample).astype(np.float64)
        image = torch.from_numpy((pixels - 127.5) / 127.5).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            x = model(image)[0].double()
        per_class.setdefault(int(dataset.labels[index]), []).append(x / x.norm())
    return {label: (m := torch.stack(xs).mean(0)) / m.norm() for label, xs in per_class.items()}


def make_head(sample_rate: float, rank: int = 0) -> PartialFC:
    torch.manual_seed(100 + rank)
    head = PartialFC(lambda logits, labels: logits, EMBEDDING, NUM_CLASSES, sample_rate)
    head.margin_softmax.s = 1.0
    return head


def imprint_on_rank(rank: int, world_size: int, sample_rate: float):
    head = make_head(sample_rate, rank)
    before = head.weight.detach().clone()
    report = imprint_class_centres(head, backbone(), faces(), batch_size=4)
    return head.class_start, before, head.weight.detach().clone(), report


def assert_imprinted(rows: list[tuple[int, torch.Tensor, torch.Tensor]], expected: dict[int, torch.Tensor]) -> None:
    """rows: (class_start, weight before, weight after) per shard, covering every class once."""
    covered = []
    for start, before, after in rows:
        for row in range(after.shape[0]):
            label = start + row
            covered.append(label)
            if label in expected:
                got = after[row].double()
                assert torch.isclose(got.norm(), torch.tensor(1.0, dtype=torch.float64), rtol=1e-6)
                assert float(torch.dot(got, expected[label])) > 1 - 1e-6, label  # float32 convolutions
            else:
                assert torch.equal(after[row], before[row]), label  # no image: the random init, untouched
    assert sorted(covered) == list(range(NUM_CLASSES))


@pytest.mark.parametrize("sample_rate", [1.0, 0.5])
def test_imprinting_equals_a_naive_float64_class_mean(sample_rate):
    dataset = faces()
    expected = naive_centres(backbone(), dataset)
    assert sorted(expected) == list(range(7)) and len({len(dataset.labels[dataset.labels == k]) for k in range(7)}) > 1
    start, before, after, report = imprint_on_rank(0, 1, sample_rate)
    assert_imprinted([(start, before, after)], expected)
    assert (report.images, report.imprinted, report.empty) == (21, 7, 2)
    assert dataset.flip, "the caller's dataset keeps its flips"


@pytest.mark.slow
@pytest.mark.parametrize("sample_rate", [1.0, 0.5])
def test_imprinting_on_two_ranks_equals_one_process(sample_rate):
    dataset = faces()
    expected = naive_centres(backbone(), dataset)
    results = run_on_ranks(imprint_on_rank, 2, sample_rate)
    assert [start for start, *_ in results] == [0, 5]  # 9 classes: shards of 5 and 4
    assert_imprinted([(start, before, after) for start, before, after, _ in results], expected)
    single = imprint_on_rank(0, 1, sample_rate)[2]
    both = torch.cat([after for _, _, after, _ in results])
    imprinted = torch.arange(NUM_CLASSES) < 7
    cosines = (both[imprinted].double() * single[imprinted].double()).sum(1)
    assert float(cosines.min()) > 1 - 1e-6
    for _, _, _, report in results:  # totals over both ranks, on each rank
        assert (report.images, report.imprinted, report.empty) == (21, 7, 2)


def test_a_label_beyond_num_classes_is_one_line():
    head = PartialFC(lambda logits, labels: logits, EMBEDDING, 5)
    with pytest.raises(ValueError, match=r"label 6 is outside \[0, num_classes=5\); set config.num_classes"):
        imprint_class_centres(head, backbone(), faces(), batch_size=32)
