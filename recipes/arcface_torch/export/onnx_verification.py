"""Run every check on one recognition ONNX model (or insightface model package) and collect a report.

    report = verify(Path("r50.onnx"), checkpoint=Path("work_dirs/ms1mv3_r50_unpg"))
    print(report.text()); report.passed; report.as_dict()

Order: file, [package], checker, input, output, weights, batch, finite, parity, insightface, latency.
Checks that cannot run because an earlier one failed are reported as SKIP with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..face_image import to_network_input
from .backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
from .face_samples import builtin_faces, face_batch, folder_faces
from .insightface_package import PackageError, is_package, read_package
from .onnx_checks import (
    FAIL,
    PASS,
    SKIP,
    Check,
    check_dynamic_batch,
    check_file,
    check_finite,
    check_input,
    check_insightface,
    check_latency,
    check_onnx_checker,
    check_output,
    check_parity,
    check_weights,
)
from .onnx_inference import ORT_ERRORS, cpu_session
from .onnx_preprocessing import ARCFACE_MEAN, ARCFACE_STD, expected_preprocessing

PARITY_MIN_COSINE = 0.9999
FACE_COUNT = 32
TRAINING_INPUT_SIZE = 112


@dataclass
class Report:
    model: Path
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not any(check.failed for check in self.checks)

    def as_dict(self) -> dict:
        return {"model": str(self.model), "passed": self.passed, "metadata": self.metadata,
                "checks": [{"name": c.name, "status": c.status, "summary": c.summary, **c.numbers}
                           for c in self.checks]}

    def text(self) -> str:
        lines = [f"verify_onnx {self.model}"]
        lines += [f"  {c.name:<12} {c.status}  {c.summary}" for c in self.checks]
        failed = [c.name for c in self.checks if c.failed]
        skipped = sum(c.status == SKIP for c in self.checks)
        if failed:
            lines.append(f"result: FAIL ({len(failed)} of {len(self.checks)} checks failed: {', '.join(failed)})")
        else:
            lines.append(f"result: PASS ({len(self.checks) - skipped} checks passed, {skipped} skipped)")
        return "\n".join(lines)


def _skip(names: list[str], reason: str) -> list[Check]:
    return [Check(name, SKIP, reason) for name in names]


def _faces(images: Path | None, size: int) -> tuple[np.ndarray, str]:
    faces = folder_faces(images, size) if images is not None else builtin_faces(size)
    where = f"{len(faces)} faces from {images}" if images is not None else f"{len(faces)} built-in faces"
    return face_batch(faces, FACE_COUNT), where


def _parity(embeddings, faces_bgr, size: int, checkpoint: Path | None, network: str | None,
            embedding_size: int | None, metadata: dict[str, str]) -> Check:
    if checkpoint is None:
        return Check("parity", SKIP, "no --checkpoint given")
    try:
        source = resolve_checkpoint(checkpoint)
        network = source.network(network or (None if source.config.get("network") else metadata.get("network")))
        if embedding_size is None and "embedding_size" not in source.config and embeddings is not None:
            embedding_size = int(embeddings.shape[1])
        backbone = build_backbone(network, source.embedding_size(embedding_size), source.state_dict())
    except CheckpointError as error:
        return Check("parity", FAIL, str(error))
    if size != TRAINING_INPUT_SIZE:
        return Check("parity", FAIL, f"backbone {network!r} takes 112x112 faces but the model takes {size}x{size}; "
                                     f"compare against the checkpoint this model was exported from")
    x_training = to_network_input(faces_bgr, ARCFACE_MEAN, ARCFACE_STD)
    return check_parity(embeddings, backbone, x_training, PARITY_MIN_COSINE,
                        f"PyTorch {network} from {source.model_path}")


def verify(model_path: Path, checkpoint: Path | None = None, network: str | None = None,
           embedding_size: int | None = None, images: Path | None = None, runs: int = 5) -> Report:
    """All checks on `model_path` (an .onnx file or a manifest V2 package folder)."""
    model_path = Path(model_path)
    report = Report(model_path)
    checks = report.checks
    package = None
    if is_package(model_path):
        try:
            package = read_package(model_path)
        except PackageError as error:
            checks.append(Check("package", FAIL, str(error)))
            return report
        onnx_path = package.onnx_path
    else:
        onnx_path = model_path
    file_check, model = check_file(onnx_path)
    checks.append(file_check)
    if model is None:
        return report
    report.metadata = {prop.key: prop.value for prop in model.metadata_props}
    expected = expected_preprocessing(model)
    if package is not None:
        declared = "embedded (mean 0 / std 1)" if package.mean is None else f"mean {package.mean:g} / std {package.std:g}"
        checks.append(Check("package", PASS, f"manifest V2, model_id {package.model_id!r}, file {onnx_path.name} "
                                             f"(sha256 verified), preprocessing {declared}",
                            {"model_id": package.model_id, "onnx_file": str(onnx_path)}))
    checks.append(check_onnx_checker(onnx_path, model))
    input_check, size = check_input(model)
    checks += [input_check, check_output(model), check_weights(model)]
    runtime = ["batch", "finite", "parity", "insightface", "latency"]
    if size is None:
        checks += _skip(runtime, "needs one runnable (N, 3, S, S) float input")
        return report
    try:
        session = cpu_session(str(onnx_path))
    except ORT_ERRORS as error:
        checks.append(Check("runtime", FAIL, f"onnxruntime cannot load the model ({str(error).splitlines()[0]}); "
                                             f"re-export it with tools/export_onnx.py"))
        checks += _skip(runtime, "onnxruntime cannot load the model")
        return report
    try:
        faces_bgr, where = _faces(images, size)
    except (ValueError, RuntimeError) as error:
        checks.append(Check("images", FAIL, str(error)))
        checks += _skip(runtime, "no face images")
        return report
    x = to_network_input(faces_bgr, expected.mean, expected.std)
    batch_check, embeddings = check_dynamic_batch(session, x)
    checks.append(batch_check)
    finite = check_finite(embeddings, len(x))
    if finite.status != SKIP:
        finite.summary += f" [{where}, input mean {expected.mean:g} / std {expected.std:g}]"
    checks.append(finite)
    checks.append(_parity(embeddings, faces_bgr, size, checkpoint, network, embedding_size, report.metadata))
    checks.append(check_insightface(model_path if package is not None else onnx_path, package is not None,
                                    expected, faces_bgr, embeddings, PARITY_MIN_COSINE))
    if batch_check.status == FAIL and embeddings is None:
        checks.append(Check("latency", SKIP, "the model does not run at batch 32"))
    else:
        checks.append(check_latency(session, x, runs))
    return report
