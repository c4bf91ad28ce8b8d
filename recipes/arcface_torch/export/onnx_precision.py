"""Which numeric precision an ONNX recognition model computes in, and how close it must stay to fp32.

    precision_of(onnx.load("model_int8.onnx"))   # "int8"
    MIN_COSINE["fp16"]                           # 0.999: per-face cosine to the fp32 original

fp32: every float weight is float32. fp16: float weights stored as float16 (converted by
tools/convert_onnx.py --fp16, fp32 inputs/outputs kept). int8: QuantizeLinear / DequantizeLinear
nodes or QLinear* / ConvInteger ops (tools/convert_onnx.py --int8).
"""

from __future__ import annotations

import onnx

FP32, FP16, INT8 = "fp32", "fp16", "int8"
# Per-face cosine a converted model must keep to the fp32 original on real faces, when no labelled set (--bin) is
# there to decide (with one, the accuracy change decides and this is reported). fp16 rounds the weights only; int8
# requantises every activation, and trained models whose int8 conversions keep their accuracy have shown worst
# per-face cosines down to ~0.985 (docs/onnx.md has the measured numbers), so its bound is 0.98.
MIN_COSINE = {FP32: 0.9999, FP16: 0.999, INT8: 0.98}
# Row agreement between batch sizes: fp32 kernels are batch-invariant to rounding; lower precisions may
# pick other kernels (or quantise differently) per batch size.
BATCH_MIN_COSINE = {FP32: 0.99999, FP16: 0.9999, INT8: 0.999}
BATCH_MAX_RELATIVE_DIFF = {FP32: 1e-4, FP16: 1e-2, INT8: 5e-2}
_QUANTIZED_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeLinear",
}


def _float_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    tensors += [
        attr.t
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.HasField("t")
    ]
    return [t for t in tensors if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]


def precision_of(model: onnx.ModelProto) -> str:
    """ "int8" when the graph holds quantisation ops, "fp16" when most float weights are float16, else "fp32"."""
    if any(node.op_type in _QUANTIZED_OPS for node in model.graph.node):
        return INT8
    floats = _float_tensors(model)
    values = {t.data_type: 0 for t in floats}
    for tensor in floats:
        count = 1
        for dim in tensor.dims:
            count *= dim
        values[tensor.data_type] += count
    half = values.get(onnx.TensorProto.FLOAT16, 0)
    return FP16 if half > values.get(onnx.TensorProto.FLOAT, 0) else FP32
