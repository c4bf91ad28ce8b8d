"""Static int8 quantization of a recognition ONNX model, calibrated on real aligned faces.

onnxruntime.quantization in QDQ format: weights int8 per output channel (symmetric), activations
uint8 with ranges from the calibration faces (MinMax over the face batches). The stem (the Conv
that reads the image) stays float: quantizing raw pixels and the stem's few, widely scaled filters
costs the most accuracy for the least compute (the usual first-layer exception). The graph is first
pre-processed (shape inference, onnxruntime's graph optimisation) as onnxruntime recommends.
Input and output stay float32.

    model, quantized = quantize_int8(Path("model.onnx"), faces_bgr, mean=127.5, std=127.5)
    quantized   # {"Conv": 49, "Gemm": 1, ...}: ops that now run on int8 inputs
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from ..face_image import to_network_input

CALIBRATION_BATCH = 16
MIN_OPSET = 13  # per-channel DequantizeLinear needs its `axis` attribute (opset 13)


class Int8Error(RuntimeError):
    """The model could not be quantized to int8."""


def quantized_ops(model: onnx.ModelProto) -> Counter:
    """Op types that consume at least one DequantizeLinear output (QDQ) or are QLinear*/Integer ops."""
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    counts: Counter = Counter()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if (
            node.op_type.startswith("QLinear")
            or node.op_type.endswith("Integer")
            or any(name in dequantized for name in node.input)
        ):
            counts[node.op_type] += 1
    return counts


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs every node at INFO/WARNING
    stack.callback(root.setLevel, level)
    return stack


def quantize_int8(
    model_path: Path, faces_bgr: np.ndarray, mean: float, std: float, per_channel: bool = True
) -> tuple[onnx.ModelProto, Counter]:
    """(int8 QDQ model, quantized op counts) for the fp32 model at `model_path`, calibrated on `faces_bgr`."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise Int8Error("--int8 needs onnxruntime's quantization tooling; run `pip install onnxruntime`") from error
    model = onnx.load(str(model_path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise Int8Error(
            f"--int8 needs opset {MIN_OPSET} or newer (per-channel weights), the model is at opset "
            f"{opset}; move it up first (convert_onnx does so by itself unless --opset asks for an older one: pass "
            f"--opset {MIN_OPSET} or newer)"
        )
    input_name = next(
        value.name for value in model.graph.input if value.name not in {init.name for init in model.graph.initializer}
    )
    x = to_network_input(faces_bgr, mean, std)

    class FaceReader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([x[i : i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch)}

    stem = [node.name for node in model.graph.node if node.op_type == "Conv" and node.input[0] == input_name]
    work = Path(tempfile.mkdtemp(prefix="int8_"))
    try:
        prepared, output = work / "prepared.onnx", work / "int8.onnx"
        with _quiet():
            try:
                quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
            except Exception:  # pre-processing only helps; quantize the model as it is when it fails
                shutil.copyfile(model_path, prepared)
            prepared_model = onnx.load(str(prepared))
            stem_names = {
                node.name
                for node in prepared_model.graph.node
                if node.op_type == "Conv" and node.input[0] == input_name
            } or set(stem)
            try:
                quantize_static(
                    str(prepared),
                    str(output),
                    FaceReader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=sorted(stem_names),
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
                )
            except Exception as error:  # the quantizer raises many types; all mean "could not quantize"
                text = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raise Int8Error(
                    f"onnxruntime could not quantize the model ({type(error).__name__}: {text}); "
                    f"convert without --int8 or report this with your onnxruntime version"
                ) from error
        result = onnx.load(str(output))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    counts = quantized_ops(result)
    if not counts:
        raise Int8Error(
            "onnxruntime quantized no op of the model (no Conv/Gemm/MatMul found); "
            "this model cannot be converted with --int8"
        )
    return result, counts
