"""Run every check on one recognition ONNX model (or insightface model package) and collect a report.

    report = verify(Path("r50.onnx"), checkpoint=Path("work_dirs/ms1mv3_r50_unpg"))
    print(report.text()); report.passed; report.as_dict()
    report = verify(Path("r50_int8.onnx"), compare=Path("r50.onnx"), bin_path=Path("lfw.bin"))

Order: file, [package], checker, input, output, weights, batch, finite, parity, [quality], insightface, latency,
[compare, accuracy]; a quality model (two outputs, export_onnx --quality) also gets the quality check after
parity (its columns, batch agreement, PyTorch parity with --checkpoint and the recognisability.pt beside it), and
its insightface check says why get_model cannot load it (insightface takes one-output models). Checks that
cannot run because an earlier one failed are reported as SKIP with the reason. Cosine bounds follow the model's precision (fp32 0.9999, fp16 0.999, int8 0.98, or
`min_cosine`); with `compare`, the report ends with the side-by-side table of onnx_comparison, whose verdict
is the accuracy change when `bin_path` is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..face_image import to_network_input
from ..face_sources import read_faces
from .backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
from .face_samples import builtin_faces, face_batch
from .insightface_package import PackageError, is_package, read_package
from .onnx_batch_repair import BatchRepairError, frozen_batch_reshapes
from .onnx_checks import (
    FAIL,
    INFO,
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
from .onnx_comparison import Comparison, ComparisonError, compare_models, load_reference
from .onnx_inference import ORT_ERRORS, cpu_session
from .onnx_precision import MIN_COSINE, precision_of
from .onnx_preprocessing import ARCFACE_MEAN, ARCFACE_STD, expected_preprocessing
from .onnx_quality import check_insightface_two_outputs, check_quality, has_quality_output
from .options import DEFAULT_MAX_ACCURACY_DROP

FACE_COUNT = 32
TRAINING_INPUT_SIZE = 112


@dataclass
class Report:
    model: Path
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    comparison: Comparison | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not any(check.failed for check in self.checks)

    def as_dict(self) -> dict:
        return {
            "model": str(self.model),
            "passed": self.passed,
            "metadata": self.metadata,
            "checks": [{"name": c.name, "status": c.status, "summary": c.summary, **c.numbers} for c in self.checks],
            "comparison": self.comparison.as_dict() if self.comparison is not None else None,
        }

    def text(self) -> str:
        lines = [f"verify_onnx {self.model}"]
        lines += [f"  {c.name:<12} {c.status}  {c.summary}" for c in self.checks]
        if self.comparison is not None:
            lines += ["", *self.comparison.table().splitlines(), ""]
        failed = [c.name for c in self.checks if c.failed]
        skipped = sum(c.status == SKIP for c in self.checks)
        reported = sum(c.status == INFO for c in self.checks)
        if failed:
            lines.append(f"result: FAIL ({len(failed)} of {len(self.checks)} checks failed: {', '.join(failed)})")
        else:
            also = f", {reported} reported" if reported else ""
            lines.append(
                f"result: PASS ({len(self.checks) - skipped - reported} checks passed, {skipped} skipped{also})"
            )
        return "\n".join(lines)


def _skip(names: list[str], reason: str) -> list[Check]:
    return [Check(name, SKIP, reason) for name in names]


def _faces(images: Path | None, size: int) -> tuple[np.ndarray, str]:
    if images is None:
        faces = builtin_faces(size)
        return face_batch(faces, FACE_COUNT), f"{len(faces)} built-in faces"
    names, found = read_faces(images, size, count=FACE_COUNT)
    return face_batch(list(zip(names, found, strict=True)), FACE_COUNT), f"{len(names)} faces from {images}"


def _parity(
    embeddings,
    faces_bgr,
    size: int,
    checkpoint: Path | None,
    network: str | None,
    embedding_size: int | None,
    metadata: dict[str, str],
    min_cosine: float,
) -> Check:
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
        return Check(
            "parity",
            FAIL,
            f"backbone {network!r} takes 112x112 faces but the model takes {size}x{size}; "
            f"compare against the checkpoint this model was exported from",
        )
    x_training = to_network_input(faces_bgr, ARCFACE_MEAN, ARCFACE_STD)
    return check_parity(embeddings, backbone, x_training, min_cosine, f"PyTorch {network} from {source.model_path}")


def _quality(session, x, metadata, precision, checkpoint, network, embedding_size) -> Check:
    """The quality output's check, against the PyTorch QualityModel of --checkpoint (and its centre) when given."""
    reference, what = None, ""
    if checkpoint is not None:
        from ..face_quality import load_quality_model
        from ..recognisability_file import RecognisabilityError

        try:
            network = network or (
                None if resolve_checkpoint(checkpoint).config.get("network") else metadata.get("network")
            )
            reference = load_quality_model(checkpoint, network, embedding_size)
        except (CheckpointError, RecognisabilityError) as error:
            return Check("quality", FAIL, str(error))
        what = f"PyTorch quality of {checkpoint}"
    return check_quality(session, x, metadata, precision, reference, what)


def _compare(
    report: Report,
    onnx_path: Path,
    compare: Path,
    faces_bgr: np.ndarray,
    where: str,
    network: str | None,
    embedding_size: int | None,
    bin_path: Path | None,
    min_cosine: float | None,
    max_accuracy_drop: float,
    runs: int,
    progress,
) -> None:
    try:
        reference = load_reference(compare, network, embedding_size, report.metadata)
        report.comparison = compare_models(
            onnx_path,
            reference,
            faces_bgr,
            where,
            bin_path=bin_path,
            min_cosine=min_cosine,
            max_accuracy_drop=max_accuracy_drop,
            runs=runs,
            progress=progress,
        )
    except (ComparisonError, ValueError, OSError, *ORT_ERRORS) as error:
        report.checks.append(Check("compare", FAIL, str(error).strip().splitlines()[0]))
        return
    report.checks += report.comparison.checks()


def verify(
    model_path: Path,
    checkpoint: Path | None = None,
    network: str | None = None,
    embedding_size: int | None = None,
    images: Path | None = None,
    runs: int = 5,
    compare: Path | None = None,
    bin_path: Path | None = None,
    min_cosine: float | None = None,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    """All checks on `model_path` (an .onnx file or a manifest V2 package folder); with `compare` (an .onnx
    or model.pt the model was converted from) also the side-by-side comparison, on `bin_path` when given."""
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
        declared = (
            "embedded (mean 0 / std 1)" if package.mean is None else f"mean {package.mean:g} / std {package.std:g}"
        )
        checks.append(
            Check(
                "package",
                PASS,
                f"manifest V2, model_id {package.model_id!r}, file {onnx_path.name} "
                f"(sha256 verified), preprocessing {declared}",
                {"model_id": package.model_id, "onnx_file": str(onnx_path)},
            )
        )
    precision = precision_of(model)
    bound = min_cosine if min_cosine is not None else MIN_COSINE[precision]
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
        checks.append(
            Check(
                "runtime",
                FAIL,
                f"onnxruntime cannot load the model ({str(error).splitlines()[0]}); "
                f"re-export it with tools/export_onnx.py",
            )
        )
        checks += _skip(runtime, "onnxruntime cannot load the model")
        return report
    try:
        faces_bgr, where = _faces(images, size)
    except (ValueError, RuntimeError) as error:
        checks.append(Check("images", FAIL, str(error)))
        checks += _skip(runtime, "no face images")
        return report
    x = to_network_input(faces_bgr, expected.mean, expected.std)
    progress(f"running the model on {len(x)} faces at batch sizes 1, 8 and 32")
    batch_check, embeddings = check_dynamic_batch(session, x, precision, onnx_path)
    if batch_check.failed:
        try:
            frozen = frozen_batch_reshapes(model)
        except BatchRepairError:
            frozen = []
        if frozen:
            batch_check, embeddings = check_dynamic_batch(session, x, precision, onnx_path, frozen)
    checks.append(batch_check)
    finite = check_finite(embeddings, len(x))
    if finite.status != SKIP:
        finite.summary += f" [{where}, input mean {expected.mean:g} / std {expected.std:g}]"
    checks.append(finite)
    checks.append(_parity(embeddings, faces_bgr, size, checkpoint, network, embedding_size, report.metadata, bound))
    model_ref = model_path if package is not None else onnx_path
    two_outputs = has_quality_output(model)
    if two_outputs:
        checks.append(_quality(session, x, report.metadata, precision, checkpoint, network, embedding_size))
    insightface = check_insightface_two_outputs(model_ref, package is not None) if two_outputs else None
    checks.append(
        insightface or check_insightface(model_ref, package is not None, expected, faces_bgr, embeddings, bound)
    )
    if batch_check.status == FAIL and embeddings is None:
        checks.append(Check("latency", SKIP, "the model does not run at batch 32"))
    else:
        checks.append(check_latency(session, x, runs))
    if compare is not None:
        _compare(
            report,
            onnx_path,
            Path(compare),
            faces_bgr,
            where,
            network,
            embedding_size,
            Path(bin_path) if bin_path is not None else None,
            min_cosine,
            max_accuracy_drop,
            runs,
            progress,
        )
    return report
