"""Export a face-recognition backbone to one self-contained ONNX file, checked against PyTorch.

Exporter: torch's torch.export-based exporter (`torch.onnx.export(..., dynamo=True)`, needs
onnxscript). It traces with a symbolic batch dimension, so an op that pins the batch size (a
`view(1, -1)`, a shape read as a Python int) makes the export fail loudly instead of yielding a graph
that only runs at batch 1 while its input claims a dynamic batch -- the fault of exporters that
trace at batch 1 and rename the axis afterwards. It writes opset 18 and newer. For opsets 11-17
(older runtimes; upstream's torch2onnx.py default is 11) the TorchScript exporter (`dynamo=False`,
deprecated since torch 2.9 but still able to write them) traces at batch 2 with the batch axis
declared dynamic; the parity check below, at batch sizes 32, 1 and 3, catches any reshape it froze.

The file is written atomically (temp file in the same folder + os.replace) with every weight inside
it (no external-data file; a stale one beside the target is removed), fp32 weights, input
`input.1` (N, 3, 112, 112) float32 RGB normalised as (pixel - 127.5) / 127.5, output `embedding`
(N, D), and metadata (network, embedding_size, input_mean, input_std, loss, config_name, ...). With
`quality_scores` (export_onnx --quality) the module is a face_quality.QualityModel and the model has a second
output `quality` (N, C), its columns named in the metadata key `quality_scores`.
Before the file is published, onnxruntime's embeddings of 32 real faces (in one batch of 32, and
the first ones again at batch 1 and 3) must match PyTorch's (cosine >= 0.9999 per face) --
otherwise nothing is written.

    report = export_backbone(backbone, Path("r50.onnx"), metadata={"network": "r50", ...})
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf.message import DecodeError

from ..atomic_file import staging_folder, write_bytes_atomically
from ..face_image import to_network_input
from .face_samples import builtin_faces, face_batch
from .onnx_inference import ORT_ERRORS, Agreement, compare, cpu_session, run_onnx, run_torch
from .onnx_preprocessing import ARCFACE_MEAN, ARCFACE_STD
from .onnx_quality import (
    QUALITY_MAX_RELATIVE_DIFF,
    QUALITY_OUTPUT,
    QUALITY_SCORES_KEY,
    relative_difference,
    run_quality,
    torch_quality,
)
from .options import DEFAULT_OPSET, DYNAMO_MIN_OPSET, MIN_OPSET

INPUT_NAME = "input.1"
OUTPUT_NAME = "embedding"
INPUT_SIZE = 112
PARITY_MIN_COSINE = 0.9999


class ExportError(RuntimeError):
    """The export could not produce a model that is correct; nothing was written."""


@dataclass
class ExportReport:
    """What was written and how closely it matches PyTorch."""

    path: Path
    size_bytes: int
    opset: int
    parity: Agreement  # onnxruntime vs PyTorch over the check faces, all batch sizes
    batch_sizes: tuple[int, ...]
    faces: int
    simplified: bool
    removed_stale: list[Path]


def check_output_path(output: Path, force: bool) -> None:
    """Refuse a target that is not .onnx, is a folder, or exists without `force`."""
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"output {output} does not end in .onnx; name the file e.g. {output.with_suffix('.onnx')}")
    if output.is_dir():
        raise ExportError(f"output {output} is a folder; pass a file path such as {output / 'model.onnx'}")
    if output.exists() and not force:
        raise ExportError(f"output {output} already exists; pass --force to overwrite it")


def _external_data_files(model_path: Path) -> list[Path]:
    """Side files an existing ONNX model at `model_path` points to (same folder only)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (OSError, ValueError, DecodeError):
        return []  # not a readable ONNX model: it references nothing
    files = set()
    tensors = list(model.graph.initializer)
    tensors += [attr.t for node in model.graph.node for attr in node.attribute if attr.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    candidate = (model_path.parent / entry.value).resolve()
                    if candidate.parent == model_path.parent.resolve():
                        files.add(candidate)
    return sorted(files)


def stale_side_files(output: Path) -> list[Path]:
    """External-data files that would be left stale beside `output` once it is replaced.

    These are `<name>.data` / `<stem>.data` and the side files the old model at `output` names that
    start with its stem; other files are left alone (another model may share them).
    """
    referenced = _external_data_files(output) if output.is_file() else []
    candidates = {path for path in referenced if path.name.startswith(output.stem)}
    for name in (output.name + ".data", output.stem + ".data"):
        if (output.parent / name).is_file():
            candidates.add((output.parent / name).resolve())
    return sorted(candidates)


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress prints, deprecation warnings and logging chatter."""
    names = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch._guards", "torch.fx", "onnxscript")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)  # export failures are reported by the caller, in one sentence
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def _trace_to_onnx(backbone: torch.nn.Module, path: Path, opset: int, output_names=(OUTPUT_NAME,)) -> None:
    example = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE)  # batch 2: torch.export specialises sizes 0 and 1
    batch = torch.export.Dim("batch", min=1, max=65536)
    output_names = list(output_names)
    try:
        with _quiet_exporter():
            if opset < DYNAMO_MIN_OPSET:
                torch.onnx.export(
                    backbone,
                    (example,),
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
                    do_constant_folding=True,
                    verbose=False,
                )
            else:
                torch.onnx.export(
                    backbone,
                    (example,),
                    str(path),
                    dynamo=True,
                    external_data=False,
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    dynamic_shapes=({0: batch},),
                    opset_version=opset,
                    optimize=True,
                    verbose=False,
                )
    except ImportError as error:
        raise ExportError(
            f"torch.onnx's exporter needs a package that is missing ({error}); run `pip install onnxscript`"
        ) from error
    except Exception as error:  # the exporter raises many types; all mean "could not export"
        cause = _root_cause(error)
        text = " ".join(str(e) for e in _cause_chain(error))
        if any(word in text for word in _SHAPE_FAILURE_WORDS):
            raise ExportError(
                f"torch.onnx could not export the backbone with a dynamic batch axis "
                f"({type(cause).__name__}: {_first_line(cause)}); the model pins the batch size: "
                f"make its reshapes batch-agnostic, e.g. torch.flatten(x, 1) instead of "
                f"x.view(1, -1)"
            ) from error
        raise ExportError(
            f"torch.onnx could not export the backbone ({type(cause).__name__}: "
            f"{_first_line(cause)}); report this with your torch version"
        ) from error


_SHAPE_FAILURE_WORDS = ("Constraints violated", "inconsistent", "specializ", "guard", "batch")


def _cause_chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 20:
        chain.append(chain[-1].__cause__)
    return chain


def _root_cause(error: BaseException) -> BaseException:
    return _cause_chain(error)[-1]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _opset_of(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), -1)


def _check_structure(model: onnx.ModelProto, what: str, outputs: int = 1) -> None:
    inputs = [value for value in model.graph.input if value.name not in {init.name for init in model.graph.initializer}]
    dims = inputs[0].type.tensor_type.shape.dim if len(inputs) == 1 else []
    if (
        len(dims) != 4
        or dims[0].HasField("dim_value")
        or [d.dim_value for d in dims[1:]] != [3, INPUT_SIZE, INPUT_SIZE]
    ):
        raise ExportError(
            f"{what} does not have one (batch, 3, {INPUT_SIZE}, {INPUT_SIZE}) input with a "
            f"symbolic batch axis; report this with your torch and onnx versions"
        )
    shapes = [o.type.tensor_type.shape.dim for o in model.graph.output] if len(model.graph.output) == outputs else []
    if not shapes or any(len(dims) != 2 or dims[0].HasField("dim_value") for dims in shapes):
        wanted = "one (batch, D) output" if outputs == 1 else "(batch, D) and (batch, C) outputs"
        raise ExportError(
            f"{what} does not have {wanted} with a symbolic batch axis; "
            f"check that the backbone returns a single (N, D) tensor"
        )
    for tensor in model.graph.initializer:
        if tensor.data_type in (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE):
            raise ExportError(
                f"{what} holds weight {tensor.name!r} as "
                f"{onnx.TensorProto.DataType.Name(tensor.data_type)}; export an fp32 backbone "
                f"(build it with fp16=False and call .float())"
            )


def simplify_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph simplified by onnxslim (optional dependency; ExportError says how to install it)."""
    try:
        import onnxslim
    except ImportError as error:
        raise ExportError(
            "--simplify needs the onnxslim package; run `pip install onnxslim` or export without --simplify"
        ) from error
    try:
        with _quiet_exporter():
            return onnxslim.slim(model)
    except Exception as error:  # onnxslim raises many types; all mean "could not simplify"
        raise ExportError(
            f"onnxslim could not simplify the model ({type(error).__name__}: {error}); export without --simplify"
        ) from error


def set_metadata(model: onnx.ModelProto, metadata: dict[str, object]) -> None:
    """Replace `model`'s metadata_props with `metadata` (values stored as strings; None is skipped)."""
    del model.metadata_props[:]
    for key, value in sorted(metadata.items()):
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = str(key), str(value)


def parity_faces(count: int = 32) -> np.ndarray:
    """(count, 112, 112, 3) BGR uint8 real aligned faces used for the export parity check."""
    return face_batch(builtin_faces(INPUT_SIZE), count)


def check_parity(
    model_bytes: bytes, backbone: torch.nn.Module, faces_bgr: np.ndarray, batch_sizes=(32, 1, 3)
) -> Agreement:
    """Worst agreement with PyTorch on `faces_bgr`: all faces at the first batch size, a few at the others."""
    x = to_network_input(faces_bgr, ARCFACE_MEAN, ARCFACE_STD)
    reference = run_torch(backbone, x)
    try:
        session = cpu_session(model_bytes)
        results = [compare(run_onnx(session, x, batch_sizes[0]), reference)]
        for size in batch_sizes[1:]:  # a different batch size must give the same rows
            results.append(compare(run_onnx(session, x[:size], size), reference[:size]))
    except ORT_ERRORS as error:
        raise ExportError(
            f"onnxruntime cannot run the exported model ({error}); "
            f"report this with your torch, onnx and onnxruntime versions"
        ) from error
    return Agreement(
        min(r.min_cosine for r in results), max(r.max_abs_diff for r in results), max(r.relative_diff for r in results)
    )


def check_quality_parity(model_bytes: bytes, quality_model: torch.nn.Module, faces_bgr: np.ndarray) -> float:
    """Largest relative difference of the `quality` output to PyTorch's over the faces at batch 32 and 1;
    ExportError past the fp32 bound."""
    x = to_network_input(faces_bgr, ARCFACE_MEAN, ARCFACE_STD)
    reference = torch_quality(quality_model, x)
    try:
        session = cpu_session(model_bytes)
        worst = max(float(relative_difference(run_quality(session, x, size), reference).max()) for size in (32, 1))
    except ORT_ERRORS as error:
        raise ExportError(
            f"onnxruntime cannot run the quality output ({error}); report this with your torch version"
        ) from error
    if not worst <= QUALITY_MAX_RELATIVE_DIFF["fp32"]:
        raise ExportError(
            f"onnxruntime and PyTorch disagree on the quality output (relative difference {worst:.3g} > "
            f"{QUALITY_MAX_RELATIVE_DIFF['fp32']:g}); nothing was written, report this with your torch version"
        )
    return worst


def _no_progress(message: str) -> None:
    return None


def export_backbone(
    backbone: torch.nn.Module,
    output: Path,
    *,
    metadata: dict[str, object],
    opset: int = DEFAULT_OPSET,
    simplify: bool = False,
    force: bool = False,
    min_cosine: float = PARITY_MIN_COSINE,
    progress: Callable[[str], None] = _no_progress,
    quality_scores: tuple[str, ...] = (),
) -> ExportReport:
    """Export `backbone` to `output` (see module docstring); raises ExportError and writes nothing on failure.

    `progress` receives one line per stage (tracing, checking, parity), for long exports. With `quality_scores`
    `backbone` is a face_quality.QualityModel with those columns and the model gets the `quality` output.
    """
    output = Path(output)
    check_output_path(output, force)
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset {opset!r} is too old; pass --opset {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    backbone = backbone.float().eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(output)
    try:
        traced = staging / "traced.onnx"
        exporter = "TorchScript" if opset < DYNAMO_MIN_OPSET else "torch.export (dynamo)"
        progress(f"tracing the backbone with the {exporter} exporter at opset {opset}")
        output_names = (OUTPUT_NAME, QUALITY_OUTPUT) if quality_scores else (OUTPUT_NAME,)
        _trace_to_onnx(backbone, traced, opset, output_names)
        model = onnx.load(str(traced))  # pulls in any external data: the result is self-contained
        onnx.external_data_helper.convert_model_from_external_data(model)
        if _opset_of(model) != opset:
            raise ExportError(
                f"the exporter could not convert the model to opset {opset} (it stayed at "
                f"{_opset_of(model)}); pass --opset {_opset_of(model)}"
            )
        _check_structure(model, "the exported model", len(output_names))
        if simplify:
            progress("simplifying the graph with onnxslim")
            model = simplify_model(model)
            _check_structure(model, "the simplified model", len(output_names))
        set_metadata(
            model,
            {
                **metadata,
                "input_mean": ARCFACE_MEAN,
                "input_std": ARCFACE_STD,
                "input_size": INPUT_SIZE,
                "opset": opset,
                "exporter": f"torch.onnx {exporter} (torch {torch.__version__})",
                QUALITY_SCORES_KEY: ",".join(quality_scores) if quality_scores else None,
            },
        )
        progress("checking the graph with onnx.checker (full check)")
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
            raise ExportError(
                f"the exported model fails onnx.checker ({str(error).splitlines()[0]}); "
                f"report this with your torch and onnx versions"
            ) from error
        data = model.SerializeToString()
        faces = parity_faces()
        batch_sizes = (32, 1, 3)
        progress(f"checking parity with PyTorch on {len(faces)} real faces at batch sizes 32, 1 and 3")
        parity = check_parity(data, backbone.backbone if quality_scores else backbone, faces, batch_sizes)
        if not parity.within(min_cosine):
            raise ExportError(
                f"onnxruntime and PyTorch disagree on real faces (min cosine {parity.min_cosine:.6f} "
                f"< {min_cosine}); nothing was written, report this with your torch version"
            )
        if quality_scores:
            progress("checking the quality output against PyTorch")
            check_quality_parity(data, backbone, faces)
        stale = [path for path in stale_side_files(output) if path != output.resolve()]
        write_bytes_atomically(output, data)
        for path in stale:
            path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(output, output.stat().st_size, opset, parity, batch_sizes, len(faces), simplify, stale)
