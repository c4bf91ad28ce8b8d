"""Error-versus-reject curves: how much a face-quality score lowers the verification error when the faces it
ranks worst are set aside (the judgement of ISO/IEC 29794-1 and NIST FATE Quality).

For a pair set (scores s_k, k < P, of images 2k and 2k+1, and whether each pair is one identity) and a quality
q_i per image (higher = better):
  1. for each rejected fraction r the floor(r * 2P) images with the lowest quality are rejected (ties broken by
     image order) and every pair holding one of them is dropped;
  2. on the pairs left: FNMR(r) at the target FMR, i.e. 1 - TAR@FAR of tar_far.py's ROC readout on those pairs
     (the threshold found again on the pairs left: rejecting an unrecognisable face removes the false matches it
     makes as well as the false non-matches), and the 10-fold accuracy of verification.py;
  3. with threshold="fixed" instead (ISO/IEC 29794-1's form) the threshold is set once, at the FMR on all pairs,
     and FNMR(r) is the share of the same-identity pairs left that fall below it: only false non-matches count.
The area under FNMR(r) over [0, max_reject], divided by max_reject (the mean FNMR over the range), sums a curve
up: lower is better. Random rejection (a quality drawn at random, averaged over several draws) is the yardstick a
useful score must beat.

    curve = error_versus_reject(pair_scores, issame, quality, fmr=1e-2)
    curve.fractions, curve.fnmr, curve.accuracy, curve.area
    baseline = random_rejection(pair_scores, issame, fmr=1e-2)
    iso = error_versus_reject(pair_scores, issame, quality, fmr=1e-2, threshold="fixed")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tar_far import tar_at_far_details
from .verification import kfold_accuracy

DEFAULT_FRACTIONS = np.round(np.arange(0.0, 0.4001, 0.02), 4)  # 0, 2%, ..., 40% of the images rejected
MIN_PAIRS_FOR_ACCURACY = 10


@dataclass
class ErrorVersusReject:
    """One curve: fractions (R,) of images rejected, fnmr (R,) at the FMR, accuracy (R,) (NaN where fewer than 10
    pairs are left), pairs_left (R,), thresholds (R,) the FNMR was read at, the FMR, the area."""

    fractions: np.ndarray
    fnmr: np.ndarray
    accuracy: np.ndarray
    pairs_left: np.ndarray
    thresholds: np.ndarray
    fmr: float

    @property
    def area(self) -> float:
        """Mean FNMR over [0, max fraction] (trapezoid rule)."""
        span = float(self.fractions[-1] - self.fractions[0])
        return float(np.trapezoid(self.fnmr, self.fractions) / span) if span > 0 else float(self.fnmr[0])

    def as_dict(self) -> dict:
        return {
            "fractions": self.fractions.tolist(),
            "fnmr": self.fnmr.tolist(),
            "accuracy": self.accuracy.tolist(),
            "pairs_left": self.pairs_left.tolist(),
            "thresholds": self.thresholds.tolist(),
            "fmr": self.fmr,
            "area": self.area,
        }


def _check(pair_scores, issame, fractions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(pair_scores, dtype=np.float64).reshape(-1)
    same = np.asarray(issame, dtype=bool).reshape(-1)
    fractions = np.asarray(fractions, dtype=np.float64).reshape(-1)
    if scores.shape != same.shape or scores.size == 0:
        raise ValueError(f"{scores.size} pair scores for {same.size} issame labels; pass one label per pair")
    if not same.any() or same.all():
        raise ValueError("error-versus-reject needs same-identity and different-identity pairs; check the pair set")
    if fractions.size < 2 or np.any(np.diff(fractions) <= 0) or fractions[0] < 0 or fractions[-1] >= 1:
        raise ValueError(f"fractions {fractions.tolist()} must rise strictly within [0, 1), e.g. 0, 0.02, ..., 0.4")
    return scores, same, fractions


def fixed_threshold(pair_scores: np.ndarray, issame: np.ndarray, fmr: float) -> float:
    """The score threshold of the target FMR on all pairs (ValueError when the set has too few impostor pairs)."""
    detail = tar_at_far_details(pair_scores, issame, [fmr])[float(fmr)]
    if detail["note"]:
        raise ValueError(f"cannot fix the threshold at FMR {fmr:g}: {detail['note']}; use a larger FMR or more pairs")
    return float(detail["threshold"])


def _threshold_at(scores: np.ndarray, same: np.ndarray, fmr: float) -> float:
    """The threshold of `fmr` on these pairs, NaN when they cannot support it (too few impostors, or no genuine)."""
    if not same.any() or same.all():
        return float("nan")
    detail = tar_at_far_details(scores, same, [fmr])[float(fmr)]
    return float("nan") if detail["note"] else float(detail["threshold"])


def error_versus_reject(
    pair_scores, issame, quality, fmr: float = 1e-2, fractions=DEFAULT_FRACTIONS, threshold: str | float = "refit"
) -> ErrorVersusReject:
    """The curve of image qualities `quality` (2P,) for pairs (P,) with `pair_scores` and `issame` (see module):
    threshold "refit" (found again on the pairs left), "fixed" (at the FMR on all pairs), or a number."""
    scores, same, fractions = _check(pair_scores, issame, fractions)
    quality = np.asarray(quality, dtype=np.float64).reshape(-1)
    if quality.size != 2 * scores.size:
        raise ValueError(f"{quality.size} image qualities for {scores.size} pairs; pass one quality per image (2P)")
    if not np.all(np.isfinite(quality)):
        position = int(np.flatnonzero(~np.isfinite(quality))[0])
        raise ValueError(f"quality of image {position} is not finite; fix the score")
    if threshold not in ("refit", "fixed") and not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold={threshold!r} must be 'refit', 'fixed' or a number")
    fixed = fixed_threshold(scores, same, fmr) if threshold == "fixed" else None
    if isinstance(threshold, (int, float)):
        fixed = float(threshold)
    if fixed is None:
        fixed_threshold(scores, same, fmr)  # the full set must support the FMR (an error says what to change)
    order = np.argsort(quality, kind="stable")  # worst first, ties in image order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    pair_rank = np.minimum(rank[0::2], rank[1::2])  # a pair goes with its worse image
    distances = 2.0 - 2.0 * scores  # squared L2 distance of unit embeddings, as verification.py uses
    fnmr, accuracy, left, thresholds = [], [], [], []
    for fraction in fractions:
        keep = pair_rank >= int(np.floor(fraction * quality.size))
        cut = fixed if fixed is not None else _threshold_at(scores[keep], same[keep], fmr)
        genuine = keep & same
        fnmr.append(float(np.mean(scores[genuine] < cut)) if genuine.any() and np.isfinite(cut) else np.nan)
        if keep.sum() >= MIN_PAIRS_FOR_ACCURACY:
            accuracy.append(float(np.mean(kfold_accuracy(distances[keep], same[keep])[0])))
        else:
            accuracy.append(np.nan)
        left.append(int(keep.sum()))
        thresholds.append(cut)
    return ErrorVersusReject(
        fractions, np.asarray(fnmr), np.asarray(accuracy), np.asarray(left), np.asarray(thresholds), float(fmr)
    )


def random_rejection(
    pair_scores,
    issame,
    fmr: float = 1e-2,
    fractions=DEFAULT_FRACTIONS,
    draws: int = 20,
    seed: int = 0,
    threshold: str | float = "refit",
) -> ErrorVersusReject:
    """The mean curve of `draws` random image qualities: the error a score that knows nothing leaves."""
    scores, same, fractions = _check(pair_scores, issame, fractions)
    rng = np.random.default_rng((int(seed), 41))
    curves = [
        error_versus_reject(scores, same, rng.random(2 * scores.size), fmr, fractions, threshold) for _ in range(draws)
    ]
    return ErrorVersusReject(
        fractions,
        np.mean([c.fnmr for c in curves], axis=0),
        np.mean([c.accuracy for c in curves], axis=0),
        np.round(np.mean([c.pairs_left for c in curves], axis=0)).astype(np.int64),
        np.mean([c.thresholds for c in curves], axis=0),
        float(fmr),
    )
