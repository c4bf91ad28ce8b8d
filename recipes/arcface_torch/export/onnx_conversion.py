"""Convert a recognition model for deployment (batch repair, opset, simplify, fp16 or int8) and re-verify it.

The source is an .onnx file or a PyTorch checkpoint (model.pt or a training folder; it is exported
first, at the requested opset, by onnx_export). The steps run in this order, each optional:

    fix_batch   Reshape constants that froze the traced batch become dynamic (onnx_batch_repair)
    opset       the default-domain opset moves up or down to N >= 11 (onnx_opset)
    simplify    onnxslim
    fp16 | int8 fp16 compute with fp32 I/O (onnx_fp16), or static int8 calibrated on faces (onnx_int8)

The result is written to a staging file and verified like tools/verify_onnx.py does, compared with
the source (per-face cosine bound by precision, and accuracy on `bin_path` when given). Only a model
that passes every check is published at `output` (atomically); with `force` it is written anyway and
the report says so.

    report = convert_model(Path("model.onnx"), Path("model_int8.onnx"), ConversionOptions(int8=True))
    report.written, report.verification.passed, report.quantized_ops
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ..atomic_file import staging_folder, write_bytes_atomically
from .backbone_checkpoint import CheckpointError, build_backbone, resolve_checkpoint
from .calibration_faces import calibration_faces
from .onnx_batch_repair import BatchRepairError, fix_frozen_batch
from .onnx_checks import check_file
from .onnx_export import ExportError, check_output_path, export_backbone, set_metadata, simplify_model
from .onnx_fp16 import Fp16Error, convert_to_fp16
from .onnx_int8 import MIN_OPSET as INT8_MIN_OPSET
from .onnx_int8 import Int8Error, quantize_int8
from .onnx_opset import OpsetError, convert_opset, opset_of
from .onnx_precision import FP16, FP32, INT8
from .onnx_preprocessing import expected_preprocessing
from .onnx_verification import Report, verify
from .options import DEFAULT_MAX_ACCURACY_DROP, DEFAULT_OPSET


class ConversionError(RuntimeError):
    """The conversion could not run; nothing was written."""


@dataclass
class ConversionOptions:
    fix_batch: bool = False
    opset: int | None = None
    simplify: bool = False
    fp16: bool = False
    int8: bool = False
    calibration: Path | None = None  # folder of faces, RecordIO folder / .rec, or .bin
    calibration_count: int = 128  # faces taken from `calibration` (plus the 32 built-in ones)
    per_channel: bool = True
    min_cosine: float | None = None  # default: by precision
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP
    bin_path: Path | None = None
    force: bool = False
    runs: int = 3  # timed runs per latency measurement


@dataclass
class ConversionReport:
    source: Path
    output: Path
    steps: list[str] = field(default_factory=list)  # one line per conversion step done
    quantized_ops: Counter | None = None
    verification: Report | None = None
    written: bool = False
    forced: bool = False  # written although a check failed


def _step_list(options: ConversionOptions) -> str:
    flags = [
        ("--fix-batch", options.fix_batch),
        (f"--opset {options.opset}", options.opset is not None),
        ("--simplify", options.simplify),
        ("--fp16", options.fp16),
        ("--int8", options.int8),
    ]
    return " ".join(flag for flag, on in flags if on) or "(no conversion)"


def _load_onnx(path: Path) -> onnx.ModelProto:
    check, model = check_file(path)
    if model is None:
        raise ConversionError(check.summary)
    try:
        return onnx.load(str(path))  # with its external data, checked above to lie beside it
    except (OSError, ValueError, DecodeError) as error:
        raise ConversionError(f"cannot read {path} ({error}); pass a readable .onnx file") from error


def _export_checkpoint(
    source: Path,
    staging: Path,
    opset: int,
    network: str | None,
    embedding_size: int | None,
    progress: Callable[[str], None],
) -> tuple[Path, onnx.ModelProto]:
    """The checkpoint exported (fp32, dynamic batch, parity-checked) into `staging`; (model.pt path, model)."""
    checkpoint = resolve_checkpoint(source)
    name = checkpoint.network(network)
    size = checkpoint.embedding_size(embedding_size)
    backbone = build_backbone(name, size, checkpoint.state_dict())
    config = checkpoint.config
    metadata = {
        "network": name,
        "embedding_size": size,
        "loss": config.get("loss"),
        "config_name": config.get("config_name"),
    }
    report = export_backbone(
        backbone, staging / "exported.onnx", metadata=metadata, opset=opset, force=True, progress=progress
    )
    return checkpoint.model_path, onnx.load(str(report.path))


def _opset_hint(error: OpsetError, opset: int, source: Path) -> str:
    return (
        f"cannot convert {source.name} to opset {opset}: {error}; export at opset {opset} from the "
        f"checkpoint instead: `python tools/convert_onnx.py MODEL.pt --opset {opset} --output OUT.onnx` "
        f"(or tools/export_onnx.py MODEL.pt --opset {opset})"
    )


def convert_model(
    source: Path,
    output: Path,
    options: ConversionOptions,
    *,
    network: str | None = None,
    embedding_size: int | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> ConversionReport:
    """Convert `source` (see module docstring); ConversionError (nothing written) when a step cannot run."""
    source, output = Path(source), Path(output)
    if options.fp16 and options.int8:
        raise ConversionError(
            "--fp16 and --int8 exclude each other; pass one of them (int8 already stores weights in 8 bits)"
        )
    if source.resolve() == output.resolve():
        raise ConversionError(f"output {output} is the source model; write the conversion to another file")
    try:
        check_output_path(output, options.force)
    except ExportError as error:
        raise ConversionError(str(error)) from error
    report = ConversionReport(source, output)
    staging = staging_folder(output)
    try:
        if source.is_file() and source.suffix.lower() == ".onnx":
            reference, model = source, _load_onnx(source)
        else:
            try:
                progress(f"exporting {source} at opset {options.opset or DEFAULT_OPSET}")
                reference, model = _export_checkpoint(
                    source, staging, options.opset or DEFAULT_OPSET, network, embedding_size, progress
                )
            except (CheckpointError, ExportError) as error:
                raise ConversionError(str(error)) from error
            report.steps.append(f"exported {reference} at opset {opset_of(model)} (parity with PyTorch checked)")
        metadata = {prop.key: prop.value for prop in model.metadata_props}
        if options.fix_batch:
            progress("looking for Reshape constants that froze the batch")
            try:
                model, repaired = fix_frozen_batch(model)
            except BatchRepairError as error:
                raise ConversionError(str(error)) from error
            report.steps.append(
                f"fix-batch: made {len(repaired)} Reshape(s) batch-dynamic ({', '.join(repaired)})"
                if repaired
                else "fix-batch: no Reshape pinned the batch (nothing to repair)"
            )
        target = options.opset
        why = ""
        if target is None and options.int8 and opset_of(model) < INT8_MIN_OPSET:
            target, why = INT8_MIN_OPSET, f" (int8's per-channel weights need opset {INT8_MIN_OPSET})"
        if target is not None and opset_of(model) != target:
            before = opset_of(model)
            progress(f"converting from opset {before} to {target}{why}")
            try:
                model = convert_opset(model, target)
            except OpsetError as error:
                raise ConversionError(_opset_hint(error, target, source)) from error
            report.steps.append(f"opset {before} -> {target}{why}")
        if options.simplify:
            progress("simplifying with onnxslim")
            try:
                model = simplify_model(model)
            except ExportError as error:
                raise ConversionError(str(error)) from error
            report.steps.append("simplified with onnxslim")
        precision = FP32
        if options.fp16:
            progress("converting to fp16 (fp32 input/output, normalisations and reductions kept fp32)")
            try:
                model = convert_to_fp16(model)
            except Fp16Error as error:
                raise ConversionError(str(error)) from error
            precision = FP16
            report.steps.append("fp16 weights and compute, fp32 input/output")
        if options.int8:
            fp32_path = staging / "fp32.onnx"
            onnx.save(model, str(fp32_path))
            expected = expected_preprocessing(model)
            try:
                faces = calibration_faces(options.calibration, options.calibration_count)
            except (ValueError, OSError, RuntimeError) as error:
                raise ConversionError(f"cannot read calibration faces: {error}") from error
            progress(f"quantizing to int8, calibrated on {len(faces)} faces")
            try:
                model, counts = quantize_int8(fp32_path, faces, expected.mean, expected.std, options.per_channel)
            except Int8Error as error:
                raise ConversionError(str(error)) from error
            precision = INT8
            report.quantized_ops = counts
            where = f"built-in faces + {options.calibration}" if options.calibration else "built-in faces"
            report.steps.append(
                f"int8 static quantization ({'per-channel' if options.per_channel else 'per-tensor'} "
                f"weights) calibrated on {len(faces)} faces ({where}); quantized ops: "
                + ", ".join(f"{op} x{n}" for op, n in sorted(counts.items()))
            )
        set_metadata(
            model, {**metadata, "precision": precision, "opset": opset_of(model), "converted": _step_list(options)}
        )
        candidate = staging / output.name
        data = model.SerializeToString()
        candidate.write_bytes(data)
        progress("verifying the converted model against the source")
        report.verification = verify(
            candidate,
            compare=reference,
            bin_path=options.bin_path,
            min_cosine=options.min_cosine,
            max_accuracy_drop=options.max_accuracy_drop,
            runs=options.runs,
            network=network,
            embedding_size=embedding_size,
            progress=progress,
        )
        report.verification.model = output  # report the published name, not the staging file
        if report.verification.passed or options.force:
            report.forced = not report.verification.passed
            write_bytes_atomically(output, data)
            report.written = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
