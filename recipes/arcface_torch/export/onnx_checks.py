"""The individual checks run on an insightface-style recognition ONNX model; each returns one Check.

A Check is one report line: a name, PASS / FAIL / SKIP, a one-sentence summary with its numbers
(a FAIL also says how to fix it), and the numbers again as fields for JSON.

    check = check_weights(onnx.load("model.onnx"))
    print(check.name, check.status, check.summary)
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from .onnx_inference import ORT_ERRORS, compare, run_onnx, run_torch
from .onnx_precision import BATCH_MAX_RELATIVE_DIFF, BATCH_MIN_COSINE, FP16, FP32, INT8, precision_of
from .onnx_preprocessing import ARCFACE_MEAN, ARCFACE_STD, Preprocessing, same_preprocessing

PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"  # INFO: measured and reported, not a gate
MIN_INPUT_SIZE = 112
BATCH_SIZES = (1, 8, 32)
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}


@dataclass
class Check:
    name: str
    status: str
    summary: str
    numbers: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# ---------------------------------------------------------------- static checks (the file and the graph)


def _external_data_locations(model: onnx.ModelProto) -> set[str]:
    locations = set()
    tensors = list(model.graph.initializer)
    tensors += [attr.t for node in model.graph.node for attr in node.attribute if attr.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(entry.value for entry in tensor.external_data if entry.key == "location")
    return locations


def check_file(path: Path) -> tuple[Check, onnx.ModelProto | None]:
    """The file exists, parses as an ONNX model, and any external data it names is there."""
    name = "file"
    if not path.exists():
        return Check(
            name, FAIL, f"{path} does not exist; pass the path of an .onnx file or a model package folder"
        ), None
    if path.is_dir():
        return Check(
            name,
            FAIL,
            f"{path} is a folder without manifest.json; pass an .onnx file or an insightface model package folder",
        ), None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError) as error:
        return Check(
            name,
            FAIL,
            f"{path} is not an ONNX model ({_first_line(error)}); pass an .onnx file "
            f"exported from a recognition network",
        ), None
    except OSError as error:
        return Check(name, FAIL, f"cannot read {path} ({_first_line(error)}); check the path and permissions"), None
    if not model.graph.node or model.ir_version == 0:
        return Check(
            name,
            FAIL,
            f"{path} is not an ONNX model (it parses to an empty graph); pass an .onnx file "
            f"exported from a recognition network",
        ), None
    size = path.stat().st_size
    locations = sorted(_external_data_locations(model))
    folder = path.parent.resolve()
    escaping = [loc for loc in locations if Path(loc).is_absolute() or folder not in (folder / loc).resolve().parents]
    if escaping:
        return Check(
            name,
            FAIL,
            f"{path} names external data {escaping[0]!r} outside its own folder, which a model "
            f"must not read; move the data file beside the model and re-save it (or "
            f"re-export it self-contained)",
            {"size_bytes": size},
        ), None
    missing = [loc for loc in locations if not (path.parent / loc).is_file()]
    if missing:
        return Check(
            name,
            FAIL,
            f"{path} stores weights in external file(s) {', '.join(missing)} that are not "
            f"beside it; copy them next to the model or re-export it self-contained",
            {"size_bytes": size},
        ), None
    try:
        if locations:
            onnx.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as error:
        return Check(
            name,
            FAIL,
            f"cannot read the external data of {path} ({_first_line(error)}); re-export the model self-contained",
            {"size_bytes": size},
        ), None
    extra = sum((path.parent / loc).stat().st_size for loc in locations)
    where = (
        "self-contained (no external data)"
        if not locations
        else f"plus {_mib(extra)} of external data in {', '.join(locations)}"
    )
    return Check(name, PASS, f"{_mib(size)}, {where}", {"size_bytes": size, "external_data_bytes": extra}), model


def check_onnx_checker(path: Path, model: onnx.ModelProto) -> Check:
    """onnx.checker.check_model with full_check (type and shape inference)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError) as error:
        return Check(
            "checker",
            FAIL,
            f"onnx.checker rejects the model ({_first_line(error)}); re-export it with a current torch/onnx",
            {"opset": opset},
        )
    return Check(
        "checker",
        PASS,
        f"onnx.checker full_check passes (opset {opset}, IR {model.ir_version})",
        {"opset": opset, "ir_version": model.ir_version},
    )


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def check_input(model: onnx.ModelProto) -> tuple[Check, int | None]:
    """One float input (N, 3, S, S) with S >= 112 and S % 16 == 0; returns S when the model can be run."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        return Check(
            "input",
            FAIL,
            f"{len(inputs)} inputs ({', '.join(v.name for v in inputs)}); a recognition "
            f"model takes exactly one (N, 3, 112, 112) image tensor",
        ), None
    value = inputs[0]
    dims = _dims(value)
    elem = value.type.tensor_type.elem_type
    shape_text = "x".join(str(d) for d in dims)
    numbers = {"input_name": value.name, "input_shape": dims}
    if elem == onnx.TensorProto.FLOAT16:
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} is float16, but insightface and this verifier feed float32; "
            f"convert the fp32 model with `tools/convert_onnx.py --fp16`, which keeps fp32 "
            f"inputs and outputs",
            numbers,
        ), None
    if elem != onnx.TensorProto.FLOAT:
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} is {onnx.TensorProto.DataType.Name(elem)}, not float32; "
            f"export the model with a float32 input",
            numbers,
        ), None
    if len(dims) != 4:
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} has shape {shape_text}, not NCHW (N, 3, H, W); export with a (N, 3, 112, 112) input",
            numbers,
        ), None
    _, channels, height, width = dims
    if channels != 3:
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} has shape {shape_text}: {channels} channels where NCHW "
            f"with 3 (RGB) is needed; export channels-first",
            numbers,
        ), None
    if not (isinstance(height, int) and isinstance(width, int)):
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} has symbolic spatial size {shape_text}; insightface "
            f"needs a fixed square size such as 112x112",
            numbers,
        ), None
    runnable = height if height == width else None
    if height != width or height < MIN_INPUT_SIZE or height % 16:
        return Check(
            "input",
            FAIL,
            f"input {value.name!r} is {shape_text}; insightface treats a model as "
            f"recognition only for a square size >= {MIN_INPUT_SIZE} divisible by 16 "
            f"(e.g. 112x112): export at 3x112x112",
            numbers,
        ), runnable
    return Check(
        "input", PASS, f"{value.name!r} float32 {shape_text} (NCHW, 3 channels, square {height})", numbers
    ), height


def check_output(model: onnx.ModelProto) -> Check:
    """Exactly one output shaped (N, D) where known; or an embedding (N, D) plus the `quality` (N, C) output of
    a quality model (export_onnx --quality)."""
    outputs = list(model.graph.output)
    quality = len(outputs) == 2 and outputs[1].name == "quality"
    if len(outputs) != 1 and not quality:
        return Check(
            "output",
            FAIL,
            f"{len(outputs)} outputs ({', '.join(o.name for o in outputs)}); insightface "
            f"expects exactly one embedding output: export only the (N, D) embedding",
        )
    dims = _dims(outputs[0])
    numbers = {"output_name": outputs[0].name, "output_shape": dims}
    for output in outputs:
        shape = _dims(output)
        if shape and len(shape) != 2:
            return Check(
                "output",
                FAIL,
                f"output {output.name!r} has rank {len(shape)} ({shape}); an embedding "
                f"output is (N, D): flatten it in the model",
                numbers,
            )
    text = f"one output {outputs[0].name!r} shaped {'x'.join(map(str, dims)) or 'unknown'}"
    if quality:
        numbers["quality_shape"] = _dims(outputs[1])
        text = (
            f"embedding {outputs[0].name!r} shaped {'x'.join(map(str, dims)) or 'unknown'} and quality "
            f"{'x'.join(map(str, numbers['quality_shape'])) or 'unknown'} (a quality model)"
        )
    return Check("output", PASS, text, numbers)


def check_weights(model: onnx.ModelProto) -> Check:
    """Float weights (initializers and Constant tensors) are fp32, or fp16 / int8 as a conversion wrote them."""
    tensors = list(model.graph.initializer)
    tensors += [
        attr.t
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.HasField("t")
    ]
    floats = [t for t in tensors if t.data_type in FLOAT_TYPES]
    other = [t for t in floats if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    parameters = int(sum(np.prod(t.dims) if len(t.dims) else 1 for t in tensors))
    precision = precision_of(model)
    numbers = {
        "float_tensors": len(floats),
        "unsupported_tensors": len(other),
        "parameters": parameters,
        "precision": precision,
    }
    if other:
        kinds = sorted({onnx.TensorProto.DataType.Name(t.data_type) for t in other})
        return Check(
            "weights",
            FAIL,
            f"{len(other)} of {len(floats)} float weight tensors are {'/'.join(kinds)} "
            f"(e.g. {other[0].name!r}); export the backbone in fp32 (model.float()) and "
            f"convert it with tools/convert_onnx.py --fp16 or --int8",
            numbers,
        )
    what = {FP32: "all float weights fp32", FP16: "fp16 weights (fp16 model)", INT8: "int8 quantized (QDQ) model"}[
        precision
    ]
    return Check("weights", PASS, f"{what}: {len(tensors)} tensors, {parameters / 1e6:.2f} M values", numbers)


# ---------------------------------------------------------------- runtime checks (onnxruntime on real faces)


def _frozen_batch_fix(model_path: Path | None, frozen: list[str]) -> str:
    found = (
        f"{len(frozen)} Reshape node(s) with the traced batch in their shape constant ({', '.join(frozen[:3])}); "
        if frozen
        else ""
    )
    source = model_path if model_path is not None else "MODEL.onnx"
    fixed = Path(source).with_name(Path(source).stem + "_fixed.onnx") if model_path is not None else "fixed.onnx"
    return (
        f"{found}repair it with `python tools/convert_onnx.py {source} --fix-batch --output {fixed}` "
        f"or re-export it with tools/export_onnx.py"
    )


def check_dynamic_batch(
    session, x: np.ndarray, precision: str = FP32, model_path: Path | None = None, frozen: list[str] | None = None
) -> tuple[Check, np.ndarray | None]:
    """The same images at batch 1, 8 and 32 give the same rows (tolerance per precision); returns the batch-32
    embeddings. `frozen` names the Reshape nodes found to pin the batch, for the repair hint."""
    name = "batch"
    frozen = frozen or []
    try:
        reference = run_onnx(session, x, BATCH_SIZES[-1])
    except ORT_ERRORS as error:
        return Check(
            name,
            FAIL,
            f"the model does not run at batch {BATCH_SIZES[-1]} ({_first_line(error)}); "
            f"its batch axis is frozen: {_frozen_batch_fix(model_path, frozen)}",
            {"frozen_reshapes": frozen},
        ), None
    worst = None
    for size in BATCH_SIZES[:-1]:
        try:
            agreement = compare(run_onnx(session, x, size), reference)
        except ORT_ERRORS as error:
            return Check(
                name,
                FAIL,
                f"the model does not run at batch {size} ({_first_line(error)}); its batch "
                f"axis is frozen: {_frozen_batch_fix(model_path, frozen)}",
                {"frozen_reshapes": frozen},
            ), reference
        if worst is None or agreement.min_cosine < worst.min_cosine or agreement.relative_diff > worst.relative_diff:
            worst = agreement
    numbers = {
        "batch_sizes": list(BATCH_SIZES),
        "max_abs_diff": worst.max_abs_diff,
        "relative_diff": worst.relative_diff,
        "min_cosine": worst.min_cosine,
        "threshold": BATCH_MIN_COSINE[precision],
    }
    text = (
        f"max abs diff {worst.max_abs_diff:.3g} (relative {worst.relative_diff:.2g}), min cosine {worst.min_cosine:.7f}"
    )
    if not worst.within(BATCH_MIN_COSINE[precision], BATCH_MAX_RELATIVE_DIFF[precision]):
        hint = _frozen_batch_fix(model_path, frozen) if frozen else "re-export with tools/export_onnx.py"
        return Check(
            name,
            FAIL,
            f"rows differ between batch sizes {'/'.join(map(str, BATCH_SIZES))}: {text} "
            f"({precision} bound: cosine >= {BATCH_MIN_COSINE[precision]}); the batch axis leaks "
            f"into the computation: {hint}",
            numbers,
        ), reference
    return Check(name, PASS, f"batch {'/'.join(map(str, BATCH_SIZES))} agree row for row: {text}", numbers), reference


def check_finite(embeddings: np.ndarray | None, faces: int) -> Check:
    """No NaN/inf (and no all-zero rows) in the embeddings of real faces."""
    if embeddings is None:
        return Check("finite", SKIP, "no embeddings (the model did not run at batch 32)")
    bad = int(np.sum(~np.isfinite(embeddings).all(axis=1)))
    zero = int(np.sum(np.all(embeddings == 0, axis=1)))
    numbers = {"faces": faces, "non_finite_rows": bad, "zero_rows": zero, "embedding_size": int(embeddings.shape[1])}
    if bad or zero:
        return Check(
            "finite",
            FAIL,
            f"{bad} embeddings with NaN/inf and {zero} all-zero of {faces} real faces; "
            f"check the weights (an fp16 overflow or a broken checkpoint)",
            numbers,
        )
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    numbers["norm_min"], numbers["norm_max"] = float(norms.min()), float(norms.max())
    return Check(
        "finite",
        PASS,
        f"{faces} real faces -> finite {embeddings.shape[1]}-d embeddings "
        f"(norm {norms.min():.3g} .. {norms.max():.3g})",
        numbers,
    )


def check_parity(
    embeddings: np.ndarray | None, backbone, x_training: np.ndarray, min_cosine: float, what: str
) -> Check:
    """Per-face cosine between the ONNX embeddings and the PyTorch backbone's is at least `min_cosine`."""
    if embeddings is None:
        return Check("parity", SKIP, "no ONNX embeddings to compare (the model did not run at batch 32)")
    reference = run_torch(backbone, x_training)
    if reference.shape != embeddings.shape:
        return Check(
            "parity",
            FAIL,
            f"{what} gives {reference.shape[1]}-d embeddings but the ONNX model gives "
            f"{embeddings.shape[1]}-d; pass the checkpoint this model was exported from",
        )
    agreement = compare(embeddings, reference)
    numbers = {
        "faces": len(embeddings),
        "min_cosine": agreement.min_cosine,
        "max_abs_diff": agreement.max_abs_diff,
        "threshold": min_cosine,
    }
    text = f"min cosine {agreement.min_cosine:.7f} over {len(embeddings)} real faces vs {what}"
    if not agreement.within(min_cosine):
        return Check(
            "parity",
            FAIL,
            f"{text} (< {min_cosine}); the ONNX model does not compute what the checkpoint "
            f"does: re-export it from this checkpoint",
            numbers,
        )
    return Check("parity", PASS, f"{text} (max abs diff {agreement.max_abs_diff:.3g})", numbers)


def _explain_preprocessing(inferred: tuple[float, float], expected: Preprocessing, package: bool) -> str:
    said = f"insightface uses mean {inferred[0]:g} / std {inferred[1]:g}"
    needs = f"the model expects mean {expected.mean:g} / std {expected.std:g} ({expected.source})"
    if package:
        return f"{said} from the package manifest but {needs}; fix tasks.recognition.preprocessing in manifest.json"
    if expected.baked is not None and same_preprocessing(inferred, (ARCFACE_MEAN, ARCFACE_STD)):
        return (
            f"{said} but the graph already normalises its input ({', '.join(expected.baked.nodes)}: mean "
            f"{expected.baked.mean:g}, std {expected.baked.std:g}), so faces get normalised twice -- insightface "
            f"guesses from node names and only treats a model as self-normalising when one of its first 8 nodes "
            f"is named Sub*/_minus* and one Mul*/_mul*; remove the normalisation from the graph (normalise "
            f"outside, as training does) or ship the model in a manifest V2 package that declares it"
        )
    return (
        f"{said} but {needs}: insightface guesses from node names (Sub*/_minus* and Mul*/_mul* among the "
        f"first 8 nodes mean a self-normalising graph); rename those nodes or ship the model in a manifest V2 "
        f"package that declares its preprocessing"
    )


def check_insightface(
    model_ref: Path,
    is_package: bool,
    expected: Preprocessing,
    faces_bgr: np.ndarray,
    direct: np.ndarray | None,
    min_cosine: float,
) -> Check:
    """insightface's model_zoo.get_model loads it as recognition with the right mean/std, and its embeddings match."""
    name = "insightface"
    if expected.conflict:
        return Check(name, FAIL, f"{expected.conflict}; make the metadata match the graph")
    try:
        from insightface.model_zoo import ArcFaceONNX, get_model
    except ImportError:
        return Check(name, FAIL, "the insightface package is not installed; run `pip install insightface`")
    if not is_package and model_ref.suffix != ".onnx":
        return Check(
            name,
            FAIL,
            f"insightface only loads model files whose name ends in .onnx, not {model_ref.name!r}; rename the file",
        )
    kwargs = {"model_task": "recognition"} if is_package else {}
    try:
        model = get_model(str(model_ref), providers=["CPUExecutionProvider"], **kwargs)
    except Exception as error:  # insightface raises assertion, value and runtime errors of many kinds
        return Check(
            name,
            FAIL,
            f"insightface.model_zoo.get_model cannot load it ({type(error).__name__}: "
            f"{_first_line(error)}); fix the model so it has one 3xSxS input and one output",
        )
    if not isinstance(model, ArcFaceONNX):
        routed = "nothing" if model is None else type(model).__name__
        return Check(
            name,
            FAIL,
            f"insightface.model_zoo.get_model routes it to {routed}, not a recognition model "
            f"(it needs one output and a square input >= 112 divisible by 16); export at "
            f"3x112x112 with one output",
        )
    inferred = (float(model.input_mean), float(model.input_std))
    numbers = {
        "inferred_mean": inferred[0],
        "inferred_std": inferred[1],
        "expected_mean": expected.mean,
        "expected_std": expected.std,
        "expected_source": expected.source,
    }
    if not same_preprocessing(inferred, (expected.mean, expected.std)):
        return Check(name, FAIL, _explain_preprocessing(inferred, expected, is_package), numbers)
    if direct is None:
        return Check(
            name,
            PASS,
            f"loads as ArcFaceONNX with mean {inferred[0]:g} / std {inferred[1]:g} "
            f"(= {expected.source}); embeddings not compared (model did not run)",
            numbers,
        )
    try:
        via_insightface = np.asarray(model.get_feat(list(faces_bgr)), dtype=np.float32)
        agreement = compare(via_insightface, direct)
    except (*ORT_ERRORS, AssertionError) as error:
        return Check(
            name,
            FAIL,
            f"insightface's get_feat fails on aligned faces ({_first_line(error)}); "
            f"re-export the model with tools/export_onnx.py",
            numbers,
        )
    numbers["min_cosine"] = agreement.min_cosine
    text = (
        f"loads as ArcFaceONNX with mean {inferred[0]:g} / std {inferred[1]:g} (= {expected.source}); "
        f"get_feat vs direct run: min cosine {agreement.min_cosine:.7f}"
    )
    if not agreement.within(min_cosine):
        return Check(
            name, FAIL, f"{text} (< {min_cosine}); insightface's preprocessing does not match the model's", numbers
        )
    return Check(name, PASS, text, numbers)


def _median_ms(session, x: np.ndarray, runs: int, warm_up: bool) -> float:
    name = session.get_inputs()[0].name
    if warm_up:
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def check_latency(session, x: np.ndarray, runs: int) -> Check:
    """Median onnxruntime CPU latency at batch 1 and 32 (reported, not judged); `session` has run batch 32 before."""
    try:
        single = _median_ms(session, x[:1], runs, warm_up=True)
        full = _median_ms(session, x[:32], max(1, (runs + 1) // 2), warm_up=False)
    except ORT_ERRORS as error:
        return Check("latency", FAIL, f"onnxruntime failed while timing ({_first_line(error)}); see the batch check")
    numbers = {"batch1_ms": single, "batch32_ms": full, "batch32_ms_per_image": full / len(x[:32]), "runs": runs}
    return Check(
        "latency",
        PASS,
        f"onnxruntime CPU median: batch 1 {single:.1f} ms, batch {len(x[:32])} "
        f"{full:.1f} ms ({full / len(x[:32]):.2f} ms/face)",
        numbers,
    )
