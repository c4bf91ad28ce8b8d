"""Similarity overlap and the PNG plots."""

import numpy as np
import pytest

from recipes.arcface_torch.evaluation.plots import (
    plot_loss_curves,
    plot_roc,
    plot_similarity_histograms,
    similarity_overlap,
)
from recipes.arcface_torch.evaluation.tar_far import roc_curve

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
