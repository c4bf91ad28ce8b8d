"""The second output of a quality model (`export_onnx --quality`): run it, compare it, check it.

A two-output model returns `embedding` (N, D) and `quality` (N, C); the metadata key `quality_scores` names the
C columns in order (ri, ers, norm; face_quality.py). A column is compared with its reference by the largest
absolute difference relative to the column's scale, max |a - b| / max(1, max |b|), which must stay within
QUALITY_MAX_RELATIVE_DIFF of the model's precision.

    check = check_quality(session, x, metadata, precision, reference=quality_model)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from .onnx_checks import FAIL, PASS, SKIP, Check, _first_line
from .onnx_inference import ORT_ERRORS
from .onnx_precision import FP16, FP32, INT8

QUALITY_OUTPUT = "quality"
QUALITY_SCORES_KEY = "quality_scores"
QUALITY_MAX_RELATIVE_DIFF = {FP32: 1e-4, FP16: 1e-2, INT8: 5e-2}
BATCH_SIZES = (1, 8, 32)


def has_quality_output(model: onnx.ModelProto) -> bool:
    outputs = [o.name for o in model.graph.output]
    return len(outputs) == 2 and outputs[1] == QUALITY_OUTPUT


def quality_columns(metadata: dict[str, str]) -> list[str]:
    return [name for name in metadata.get(QUALITY_SCORES_KEY, "").split(",") if name]


def run_quality(session, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The `quality` output for `x`, `batch_size` rows at a time; (N, C) float64."""
    name = session.get_inputs()[0].name
    index = [o.name for o in session.get_outputs()].index(QUALITY_OUTPUT)
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = np.ascontiguousarray(x[start : start + batch_size])
        out = np.asarray(session.run(None, {name: chunk})[index], dtype=np.float64)
        if out.ndim != 2 or out.shape[0] != len(chunk):
            raise RuntimeError(f"a batch of {len(chunk)} images gave quality of shape {tuple(out.shape)}, not (N, C)")
        parts.append(out)
    return np.concatenate(parts)


def relative_difference(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column: max |candidate - reference| / max(1, max |reference|); (C,)."""
    scale = np.maximum(1.0, np.max(np.abs(reference), axis=0))
    return np.max(np.abs(candidate - reference), axis=0) / scale


def torch_quality(quality_model, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The PyTorch QualityModel's quality for `x` (N, 3, 112, 112); (N, C) float64."""
    import torch

    quality_model.eval()
    with torch.no_grad():
        parts = [
            quality_model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])))[1].double().numpy()
            for i in range(0, len(x), batch_size)
        ]
    return np.concatenate(parts)


def check_quality(session, x: np.ndarray, metadata: dict[str, str], precision: str, reference=None, what="") -> Check:
    """The quality output: its columns named in the metadata, finite, the same at batch 1, 8 and 32, and (with
    `reference`, a face_quality.QualityModel) equal to PyTorch's within the precision's bound."""
    columns = quality_columns(metadata)
    bound = QUALITY_MAX_RELATIVE_DIFF[precision]
    try:
        full = run_quality(session, x, BATCH_SIZES[-1])
        worst = max(float(relative_difference(run_quality(session, x, b), full).max()) for b in BATCH_SIZES[:-1])
    except (*ORT_ERRORS, ValueError) as error:
        return Check(
            "quality", FAIL, f"the quality output does not run ({_first_line(error)}); re-export with --quality"
        )
    numbers = {"columns": columns, "batch_relative_diff": worst}
    if len(columns) != full.shape[1]:
        return Check(
            "quality",
            FAIL,
            f"quality has {full.shape[1]} columns but metadata {QUALITY_SCORES_KEY!r} names {len(columns)} "
            f"({','.join(columns) or 'none'}); re-export with tools/export_onnx.py --quality",
            numbers,
        )
    if not np.isfinite(full).all():
        return Check(
            "quality", FAIL, "quality holds NaN/inf on real faces; check the centre file and the weights", numbers
        )
    if worst > bound:
        return Check(
            "quality",
            FAIL,
            f"quality differs between batch sizes 1/8/32 (relative {worst:.2g} > {bound:g}); re-export the model",
            numbers,
        )
    text = f"{full.shape[1]} columns ({', '.join(columns)}), finite, batch 1/8/32 agree (relative {worst:.2g})"
    if reference is None:
        return Check("quality", PASS, f"{text}; PyTorch parity not checked (pass --checkpoint)", numbers)
    expected = torch_quality(reference, x)
    if expected.shape != full.shape or list(reference.scores) != columns:
        return Check(
            "quality",
            FAIL,
            f"{what} gives quality columns {', '.join(reference.scores)} but the model gives {', '.join(columns)}; "
            f"compare against the checkpoint and centre file the model was exported from",
            numbers,
        )
    difference = relative_difference(full, expected)
    numbers["parity_relative_diff"] = dict(zip(columns, difference.tolist(), strict=True))
    detail = ", ".join(f"{c} {d:.2g}" for c, d in zip(columns, difference, strict=True))
    if float(difference.max()) > bound:
        return Check(
            "quality",
            FAIL,
            f"quality differs from {what} (relative {detail}; bound {bound:g}); re-export from this checkpoint",
            numbers,
        )
    return Check("quality", PASS, f"{text}; vs {what}: relative {detail}", numbers)


def check_insightface_two_outputs(model_ref: Path, is_package: bool) -> Check | None:
    """insightface's get_model on a two-output model: None when it loads (run the usual check), else a SKIP
    saying why and what to ship to insightface instead."""
    try:
        from insightface.model_zoo import ArcFaceONNX, get_model
    except ImportError:
        return Check("insightface", FAIL, "the insightface package is not installed; run `pip install insightface`")
    kwargs = {"model_task": "recognition"} if is_package else {}
    try:
        loaded = get_model(str(model_ref), providers=["CPUExecutionProvider"], **kwargs)
    except Exception as error:  # insightface asserts one output; any failure means "cannot load"
        reason = f"{type(error).__name__}: {_first_line(error)}" if str(error).strip() else type(error).__name__
        return Check(
            "insightface",
            SKIP,
            f"insightface.model_zoo.get_model cannot load this two-output model ({reason}: its ArcFaceONNX accepts "
            f"exactly one output); for an insightface pipeline export the same model without --quality (one "
            f"embedding output) and score quality with this file or unpg-face-quality",
            {"loads": False},
        )
    if not isinstance(loaded, ArcFaceONNX):
        return Check(
            "insightface",
            SKIP,
            f"insightface routes this two-output model to {type(loaded).__name__}, not recognition; export without "
            f"--quality for insightface",
            {"loads": False},
        )
    return None
