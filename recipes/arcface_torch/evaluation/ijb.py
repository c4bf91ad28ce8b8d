"""IJB-B / IJB-C 1:1 template verification in insightface's folder layout (as arcface_torch's eval_ijb.py).

Folder `root` with `prefix` "ijbb" or "ijbc":
    loose_crop/<image name>                      face crops
    meta/<prefix>_name_5pts_score.txt            image name, x1 y1 ... x5 y5 (5 landmarks), faceness score
    meta/<prefix>_face_tid_mid.txt               image name, template id, media id (same order as above)
    meta/<prefix>_template_pair_label.txt        template id 1, template id 2, label (1 same, 0 different)

Pipeline: align each crop to 112x112 with the similarity transform onto insightface's arcface_dst
landmarks; embed with flip (f(x) + f(flip x)); L2-normalise each image feature; optionally weight it by
its faceness score; average the images of one media, sum the medias of one template, L2-normalise;
score each template pair by cosine; report TAR at FAR 1e-6 .. 1e-1 with the nearest-FPR readout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..atomic_file import write_atomically
from ..face_image import align_face
from .plots import plot_roc
from .tar_far import IJB_FARS, roc_curve, tar_at_far_details
from .verification import images_to_input, l2_normalize, model_device_dtype, unwrap_model

PathLike = str | os.PathLike


@dataclass
class IJBProtocol:
    """The lists of one IJB folder: N images, M template pairs."""

    root: Path
    prefix: str
    image_paths: list[Path]  # (N,) under loose_crop/
    landmarks: np.ndarray  # float64 (N, 5, 2)
    faceness: np.ndarray  # float64 (N,)
    templates: np.ndarray  # int64 (N,)
    medias: np.ndarray  # int64 (N,)
    pair_templates: np.ndarray  # int64 (M, 2)
    pair_labels: np.ndarray  # int64 (M,) 0/1

    @property
    def num_images(self) -> int:
        return len(self.image_paths)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"IJB list file {path} does not exist; pass the IJB root folder holding meta/ and loose_crop/"
        )
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def _read_landmark_list(path: Path, crop_dir: Path, check_images: bool):
    names, landmarks, faceness, paths = [], [], [], []
    for line_number, line in enumerate(_read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 12:
            raise ValueError(
                f"{path} line {line_number}: expected 12 fields (name, 10 landmark numbers, faceness score), "
                f"got {len(tokens)}"
            )
        try:
            values = [float(token) for token in tokens[1:]]
        except ValueError as error:
            raise ValueError(f"{path} line {line_number}: landmarks and score must be numbers ({error})") from error
        image_path = crop_dir / tokens[0]
        if check_images and not image_path.is_file():
            raise FileNotFoundError(
                f"{path} line {line_number}: image {image_path} is missing; restore it or remove the line"
            )
        names.append(tokens[0])
        landmarks.append(values[:10])
        faceness.append(values[10])
        paths.append(image_path)
    if not names:
        raise ValueError(f"{path} lists no images; it needs one line per face crop")
    return names, np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2), np.asarray(faceness), paths


def _read_int_table(path: Path, what: str) -> tuple[list[str], np.ndarray]:
    """Lines of `name int int` (what='media') or `int int int` (what='pairs')."""
    rows, names = [], []
    for line_number, line in enumerate(_read_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 3:
            raise ValueError(f"{path} line {line_number}: expected 3 fields, got {len(tokens)}")
        numeric = tokens[1:] if what == "media" else tokens
        try:
            rows.append([int(token) for token in numeric])
        except ValueError as error:
            raise ValueError(f"{path} line {line_number}: ids and labels must be integers ({error})") from error
        names.append(tokens[0])
    if not rows:
        raise ValueError(f"{path} is empty; it needs one line per {'image' if what == 'media' else 'template pair'}")
    return names, np.asarray(rows, dtype=np.int64)


def load_ijb_protocol(root: PathLike, prefix: str = "ijbc", check_images: bool = True) -> IJBProtocol:
    """Read and cross-check the three meta lists of an IJB folder (see the module docstring)."""
    root = Path(root)
    prefix = prefix.lower()
    meta = root / "meta"
    landmark_path = meta / f"{prefix}_name_5pts_score.txt"
    media_path = meta / f"{prefix}_face_tid_mid.txt"
    pair_path = meta / f"{prefix}_template_pair_label.txt"
    names, landmarks, faceness, paths = _read_landmark_list(landmark_path, root / "loose_crop", check_images)
    media_names, media_rows = _read_int_table(media_path, "media")
    if len(media_names) != len(names):
        raise ValueError(
            f"{media_path} lists {len(media_names)} images but {landmark_path} lists {len(names)}; "
            f"the two lists must describe the same images in the same order"
        )
    for index, (left, right) in enumerate(zip(names, media_names, strict=False)):
        if left != right:
            raise ValueError(
                f"{media_path} line {index + 1}: image {right!r} differs from {left!r} on the same line of "
                f"{landmark_path}; the two lists must be in the same order"
            )
    _, pairs = _read_int_table(pair_path, "pairs")
    labels = pairs[:, 2]
    bad_label = np.flatnonzero((labels != 0) & (labels != 1))
    if bad_label.size:
        raise ValueError(f"{pair_path} line {int(bad_label[0]) + 1}: label {labels[bad_label[0]]} must be 0 or 1")
    known = np.unique(media_rows[:, 0])
    for column in (0, 1):
        missing = np.flatnonzero(~np.isin(pairs[:, column], known))
        if missing.size:
            raise ValueError(
                f"{pair_path} line {int(missing[0]) + 1}: template {pairs[missing[0], column]} has no image in "
                f"{media_path}; fix the template id or add its images"
            )
    return IJBProtocol(
        root,
        prefix,
        paths,
        landmarks,
        faceness,
        media_rows[:, 0].copy(),
        media_rows[:, 1].copy(),
        pairs[:, :2].copy(),
        labels.copy(),
    )


def _load_aligned_rgb(path: Path, landmarks: np.ndarray) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}; replace the file with a readable JPEG or PNG")
    return cv2.cvtColor(align_face(image, landmarks), cv2.COLOR_BGR2RGB)


@torch.no_grad()
def embed_ijb_images(
    model: nn.Module,
    protocol: IJBProtocol,
    batch_size: int = 128,
    flip: bool = True,
    num_workers: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """Raw image features float64 (N, D): f(x) + f(flip x) with flip, else f(x); aligned faces, eval mode."""
    if batch_size <= 0 or num_workers <= 0:
        raise ValueError(f"batch_size {batch_size} and num_workers {num_workers} must both be positive")
    model = unwrap_model(model)
    device, dtype = model_device_dtype(model)
    was_training = model.training
    model.eval()
    starts = range(0, protocol.num_images, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"{protocol.prefix} images", unit="batch")
    features: list[np.ndarray] = []
    try:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            for start in starts:
                stop = min(start + batch_size, protocol.num_images)
                faces = np.stack(
                    list(pool.map(_load_aligned_rgb, protocol.image_paths[start:stop], protocol.landmarks[start:stop]))
                )
                batch = images_to_input(faces, device, dtype)
                output = model(batch).to(dtype=torch.float64)
                if flip:
                    output = output + model(torch.flip(batch, dims=[3])).to(dtype=torch.float64)
                features.append(output.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(features, axis=0)


def template_features(
    image_features: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per template: mean over the images of each media, sum over medias, L2-normalise.

    Returns (template ids (T,) ascending, features (T, D))."""
    order = np.lexsort((medias, templates))
    feats, sorted_templates, sorted_medias = image_features[order], templates[order], medias[order]
    new_group = np.r_[True, (np.diff(sorted_templates) != 0) | (np.diff(sorted_medias) != 0)]
    group_starts = np.flatnonzero(new_group)
    counts = np.diff(np.r_[group_starts, feats.shape[0]])
    media_means = np.add.reduceat(feats, group_starts, axis=0) / counts[:, None]
    media_templates = sorted_templates[group_starts]
    template_starts = np.flatnonzero(np.r_[True, np.diff(media_templates) != 0])
    sums = np.add.reduceat(media_means, template_starts, axis=0)
    return media_templates[template_starts], l2_normalize(sums)


def template_pair_scores(
    template_ids: np.ndarray, features: np.ndarray, pair_templates: np.ndarray, chunk: int = 100000
) -> np.ndarray:
    """Cosine score (M,) of each template pair (M, 2) given normalised template features (T, D)."""
    rows = np.searchsorted(template_ids, pair_templates)
    rows = np.clip(rows, 0, template_ids.shape[0] - 1)
    unknown = np.flatnonzero(np.any(template_ids[rows] != pair_templates, axis=1))
    if unknown.size:
        raise ValueError(f"template pair {int(unknown[0])} names a template without features; check the pair list")
    scores = np.empty(pair_templates.shape[0])
    for start in range(0, pair_templates.shape[0], chunk):
        left = features[rows[start : start + chunk, 0]]
        right = features[rows[start : start + chunk, 1]]
        scores[start : start + chunk] = np.sum(left * right, axis=1)
    return scores


def evaluate_ijb(
    model: nn.Module,
    root: PathLike,
    prefix: str = "ijbc",
    batch_size: int = 128,
    flip: bool = True,
    use_faceness: bool = True,
    normalize_images: bool = True,
    output_dir: PathLike | None = None,
    name: str = "model",
    fars: Iterable[float] = IJB_FARS,
    num_workers: int = 2,
    progress: bool = False,
) -> dict[str, object]:
    """Full IJB 1:1 evaluation; with output_dir, writes <name>_<prefix>_roc.png and <name>_<prefix>_scores.npy.

    Returns {"prefix", "num_images", "num_templates", "num_pairs", "tar_at_far" {far: tar},
    "tar_at_far_notes" {far: reason or ""}, "fpr", "tpr", "scores" (M,), "labels" (M,), "files" [paths]}.
    """
    protocol = load_ijb_protocol(root, prefix)
    features = embed_ijb_images(model, protocol, batch_size, flip, num_workers, progress)
    if normalize_images:
        features = l2_normalize(features)
    if use_faceness:
        features = features * protocol.faceness[:, None]
    template_ids, template_feats = template_features(features, protocol.templates, protocol.medias)
    scores = template_pair_scores(template_ids, template_feats, protocol.pair_templates)
    labels = protocol.pair_labels
    details = tar_at_far_details(scores, labels, fars)
    num_pos = int(labels.sum())
    if 0 < num_pos < labels.shape[0]:
        fpr, tpr, _ = roc_curve(scores, labels)
    else:
        fpr, tpr = np.zeros(0), np.zeros(0)
    files: list[str] = []
    if output_dir is not None:
        output_dir = Path(output_dir)
        stem = f"{name}_{protocol.prefix}"
        scores_path = output_dir / f"{stem}_scores.npy"
        write_atomically(scores_path, lambda handle: np.save(handle, scores))
        files.append(str(scores_path))
        if np.any(fpr > 0):
            roc_path = plot_roc(
                {name: (fpr, tpr)}, output_dir / f"{stem}_roc.png", title=f"{protocol.prefix.upper()} 1:1 verification"
            )
            files.append(str(roc_path))
    return {
        "prefix": protocol.prefix,
        "num_images": protocol.num_images,
        "num_templates": int(template_ids.shape[0]),
        "num_pairs": int(labels.shape[0]),
        "tar_at_far": {far: item["tar"] for far, item in details.items()},
        "tar_at_far_notes": {far: item["note"] for far, item in details.items()},
        "fpr": fpr,
        "tpr": tpr,
        "scores": scores,
        "labels": labels,
        "files": files,
    }


def format_tar_table(results: Sequence[tuple[str, dict[float, float]]]) -> str:
    """Plain-text table: one row per (name, {far: tar}), TAR in percent like insightface's table."""
    fars = sorted({far for _, tars in results for far in tars})
    header = ["Methods"] + [f"{far:.0e}" for far in fars]
    rows = [
        [name] + [("nan" if np.isnan(tars.get(far, np.nan)) else f"{100 * tars[far]:.2f}") for far in fars]
        for name, tars in results
    ]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=False)) for row in [header] + rows
    )
