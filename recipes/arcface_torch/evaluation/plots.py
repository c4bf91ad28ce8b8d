"""PNG plots for evaluation: ROC curves, positive/negative similarity histograms with their overlap, loss curves.

Uses matplotlib's object API with the Agg canvas (no pyplot, no display, no global backend switch);
every PNG is written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..atomic_file import write_atomically

PathLike = str | os.PathLike


def _save(figure: Figure, path: PathLike) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return write_atomically(path, lambda handle: handle.write(buffer.getvalue()))


def _as_values(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty; the plot needs at least one value")
    if not np.all(np.isfinite(array)):
        position = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{what} holds a NaN or infinite value at position {position}; drop or fix it")
    return array


def _normalized_histograms(pos, neg, bins: int, value_range: tuple[float, float]):
    if bins < 1:
        raise ValueError(f"bins is {bins}; pass a positive number of histogram bins such as 100")
    low, high = float(value_range[0]), float(value_range[1])
    if not high > low:
        raise ValueError(f"value_range {value_range!r} must be (low, high) with low < high, e.g. (-1, 1)")
    pos = np.clip(_as_values(pos, "positive similarities"), low, high)
    neg = np.clip(_as_values(neg, "negative similarities"), low, high)
    edges = np.linspace(low, high, bins + 1)
    pos_hist = np.histogram(pos, bins=edges)[0] / float(pos.size)
    neg_hist = np.histogram(neg, bins=edges)[0] / float(neg.size)
    return edges, pos_hist, neg_hist


def similarity_overlap(pos, neg, bins: int = 100, value_range: tuple[float, float] = (-1.0, 1.0)) -> float:
    """Histogram intersection sum_b min(p_b, q_b) of the two normalised histograms, in [0, 1].

    pos, neg: cosine similarities of same-identity and different-identity pairs (any length >= 1);
    values outside value_range are clipped into the end bins. 1 = identical distributions, 0 = disjoint.
    """
    _, pos_hist, neg_hist = _normalized_histograms(pos, neg, bins, value_range)
    return float(np.clip(np.minimum(pos_hist, neg_hist).sum(), 0.0, 1.0))


def plot_similarity_histograms(
    pos,
    neg,
    path: PathLike,
    title: str = "",
    bins: int = 100,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> float:
    """Save the positive/negative similarity distributions with the overlap shaded; returns the overlap."""
    edges, pos_hist, neg_hist = _normalized_histograms(pos, neg, bins, value_range)
    overlap = float(np.clip(np.minimum(pos_hist, neg_hist).sum(), 0.0, 1.0))
    width = edges[1] - edges[0]
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    pos_density, neg_density = pos_hist / width, neg_hist / width
    axes.stairs(
        neg_density, edges, fill=True, alpha=0.35, color="tab:red", label=f"negative pairs (n={np.asarray(neg).size})"
    )
    axes.stairs(
        pos_density, edges, fill=True, alpha=0.35, color="tab:blue", label=f"positive pairs (n={np.asarray(pos).size})"
    )
    axes.stairs(
        np.minimum(pos_density, neg_density),
        edges,
        fill=True,
        color="black",
        alpha=0.6,
        hatch="//",
        label=f"overlap = {overlap:.4f}",
    )
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("density")
    axes.set_xlim(edges[0], edges[-1])
    axes.set_title(f"{title}  (overlap {overlap:.4f})" if title else f"similarity overlap {overlap:.4f}")
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    _save(figure, path)
    return overlap


def plot_roc(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: PathLike, title: str = "ROC") -> Path:
    """Save TAR (TPR) against FAR (FPR, log scale) for each name -> (fpr, tpr); points with FPR 0 are not drawable."""
    if not curves:
        raise ValueError("plot_roc got no curves; pass {name: (fpr, tpr)}")
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot(1, 1, 1)
    smallest = 1.0
    for name, (fpr, tpr) in curves.items():
        fpr = _as_values(fpr, f"fpr of curve {name!r}")
        tpr = _as_values(tpr, f"tpr of curve {name!r}")
        if fpr.shape != tpr.shape:
            raise ValueError(f"curve {name!r} has {fpr.size} FPR values and {tpr.size} TPR values; pass equal lengths")
        visible = fpr > 0
        if not np.any(visible):
            raise ValueError(f"curve {name!r} has no point with FPR > 0, so nothing can be drawn on a log FAR axis")
        smallest = min(smallest, float(fpr[visible].min()))
        axes.plot(fpr[visible], tpr[visible], linewidth=1.5, marker="." if visible.sum() < 30 else None, label=name)
    axes.set_xscale("log")
    axes.set_xlim(min(10.0 ** math.floor(math.log10(smallest)), 0.1), 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("False Accept Rate (log scale)")
    axes.set_ylabel("True Accept Rate")
    axes.set_title(title)
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_loss_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: PathLike,
    title: str = "training loss",
    log_y: bool = False,
) -> Path:
    """Save loss against step for each name -> (steps, losses)."""
    if not curves:
        raise ValueError("plot_loss_curves got no curves; pass {name: (steps, losses)}")
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    for name, (steps, losses) in curves.items():
        steps = _as_values(steps, f"steps of curve {name!r}")
        losses = _as_values(losses, f"losses of curve {name!r}")
        if steps.shape != losses.shape:
            raise ValueError(f"curve {name!r} has {steps.size} steps and {losses.size} losses; pass equal lengths")
        axes.plot(steps, losses, linewidth=1.2, label=name)
    if log_y:
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return _save(figure, path)


def plot_error_versus_reject(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: PathLike,
    title: str = "error versus reject",
    fmr: float | None = None,
) -> Path:
    """Save FNMR against the fraction of images rejected for each name -> (fractions, fnmr); a name starting
    with "random" is drawn dashed (the yardstick). The legend gives each curve's area (mean FNMR over the range;
    n/a when some FNMR is NaN: too few pairs left to read it, and those points are not drawn)."""
    if not curves:
        raise ValueError("plot_error_versus_reject got no curves; pass {name: (fractions, fnmr)}")
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot(1, 1, 1)
    for name, (fractions, fnmr) in curves.items():
        fractions = _as_values(fractions, f"fractions of curve {name!r}")
        fnmr = np.asarray(fnmr, dtype=np.float64).reshape(-1)
        if fractions.shape != fnmr.shape or fractions.size < 2:
            raise ValueError(f"curve {name!r} needs as many FNMR values as fractions (at least 2 of each)")
        finite = np.isfinite(fnmr)
        if not finite.any():
            raise ValueError(f"curve {name!r} has no finite FNMR value to draw")
        area = float(np.trapezoid(fnmr, fractions) / (fractions[-1] - fractions[0])) if finite.all() else None
        style = {"linestyle": "--", "color": "grey"} if name.startswith("random") else {}
        label = f"{name} (area {100 * area:.2f})" if area is not None else f"{name} (area n/a)"
        axes.plot(100 * fractions[finite], 100 * fnmr[finite], linewidth=1.5, label=label, **style)
    axes.set_xlabel("images rejected, lowest quality first (%)")
    axes.set_ylabel("FNMR (%)" + (f" at FMR {fmr:g}" if fmr else ""))
    axes.set_ylim(bottom=0.0)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside the curves, not on them
    return _save(figure, path)
