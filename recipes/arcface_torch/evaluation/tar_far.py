"""ROC curve and TAR@FAR from a list of pair scores (higher score = more likely the same identity).

The readout follows insightface's IJB evaluation: build the ROC (one point per distinct score, points
lying on a straight segment between their neighbours dropped, as `sklearn.metrics.roc_curve` does by
default), then for each target FAR take the ROC point whose FPR is nearest to it; among equally near
points the one with the larger FPR (then larger TPR) wins, which is what upstream's
`min(zip(abs(fpr - far), range(n)))` over the flipped curve selects.

Where the data cannot support a target (no positive or no negative pairs, or fewer than 1/FAR negative
pairs, so that no threshold can reach that FAR) the TAR is NaN and a note says why, instead of a number
read off the wrong end of the curve or a crash.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np

LOGGER = logging.getLogger("arcface_torch")

IJB_FARS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _check_scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"scores has {scores.shape[0]} entries but labels has {labels.shape[0]}; pass one label per score"
        )
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"score at position {int(bad[0])} is {scores[bad[0]]}; every score must be a finite number")
    if labels.dtype != bool:
        not_binary = np.flatnonzero((labels != 0) & (labels != 1))
        if not_binary.size:
            raise ValueError(
                f"label at position {int(not_binary[0])} is {labels[not_binary[0]]!r}; labels must be 0/1 or bool"
            )
    return scores, labels.astype(bool)


def roc_curve(scores, labels, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of `scores` (N,) against binary `labels` (N,), ordered by increasing FPR.

    Returns (fpr, tpr, thresholds), each (K,): the point k accepts pairs with score >= thresholds[k];
    the first point is (0, 0) at threshold +inf. With `drop_intermediate`, points in the middle of a
    straight run are removed (same curve, fewer points). Needs at least one positive and one negative.
    """
    scores, labels = _check_scores_labels(scores, labels)
    num_pos = int(labels.sum())
    num_neg = int(labels.shape[0] - num_pos)
    if num_pos == 0 or num_neg == 0:
        raise ValueError(
            f"the ROC needs both positive and negative pairs, got {num_pos} positive and {num_neg} negative; "
            f"check the labels"
        )
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    # Last index of each run of equal scores: the ROC moves only between distinct scores.
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.shape[0] - 1]
    tps = np.cumsum(sorted_labels)[ends].astype(np.float64)
    fps = (ends + 1 - tps).astype(np.float64)
    thresholds = sorted_scores[ends]
    if drop_intermediate and tps.shape[0] > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2) != 0, np.diff(tps, 2) != 0), True]
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds]
    return fps / fps[-1], tps / tps[-1], thresholds


def tar_at_far_details(scores, labels, fars: Iterable[float] = IJB_FARS) -> dict[float, dict]:
    """For each target FAR: {"tar", "fpr" (the FPR actually read), "threshold", "note"}.

    `note` is "" when the readout is valid; otherwise it says why `tar` is NaN.
    """
    scores, labels = _check_scores_labels(scores, labels)
    fars = [float(far) for far in fars]
    for far in fars:
        if not (0.0 < far <= 1.0):
            raise ValueError(f"target FAR {far} is outside (0, 1]; pass FARs such as 1e-4")
    num_pos = int(labels.sum())
    num_neg = int(labels.shape[0] - num_pos)
    results: dict[float, dict] = {}
    if num_pos == 0 or num_neg == 0:
        note = f"needs positive and negative pairs, got {num_pos} positive and {num_neg} negative"
        for far in fars:
            results[far] = {"tar": math.nan, "fpr": math.nan, "threshold": math.nan, "note": note}
        return results
    fpr, tpr, thresholds = roc_curve(scores, labels)
    # Reversed so that argmin's first hit is the largest index (larger FPR, then larger TPR) among ties.
    fpr_rev, tpr_rev, thr_rev = fpr[::-1], tpr[::-1], thresholds[::-1]
    for far in fars:
        if far * num_neg < 1.0:
            results[far] = {
                "tar": math.nan,
                "fpr": math.nan,
                "threshold": math.nan,
                "note": f"FAR {far:g} needs at least {math.ceil(1.0 / far)} negative pairs, got {num_neg}",
            }
            continue
        index = int(np.argmin(np.abs(fpr_rev - far)))
        results[far] = {
            "tar": float(tpr_rev[index]),
            "fpr": float(fpr_rev[index]),
            "threshold": float(thr_rev[index]),
            "note": "",
        }
    return results


def tar_at_far(scores, labels, fars: Iterable[float] = IJB_FARS) -> dict[float, float]:
    """{target FAR: TAR} with the nearest-FPR readout; NaN (and a logged warning) where unsupported."""
    details = tar_at_far_details(scores, labels, fars)
    for far, item in details.items():
        if item["note"]:
            LOGGER.warning("TAR@FAR=%g is NaN: %s", far, item["note"])
    return {far: item["tar"] for far, item in details.items()}
