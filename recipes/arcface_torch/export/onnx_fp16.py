"""Convert an fp32 recognition ONNX model to fp16 compute while its input and output stay float32.

Weights and most ops become float16 (half the file, faster on GPUs with fp16 units); Cast nodes at the
graph's edges keep the input (N, 3, 112, 112) and the output (N, D) float32, so insightface and
tools/verify_onnx.py feed it unchanged. Ops whose result needs fp32 range or accumulation stay fp32:
normalisations (BatchNormalization, ...: variance terms), reductions (ReduceMean, ReduceL2, ...:
long sums) and Softmax/Pow/Sqrt. Uses onnxruntime's float16 converter.

    half = convert_to_fp16(onnx.load("model.onnx"))
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx

FP32_OPS = (
    "BatchNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "GroupNormalization",
    "LpNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "Softmax",
    "LogSoftmax",
    "Pow",
    "Sqrt",
    "Reciprocal",
)


class Fp16Error(RuntimeError):
    """The model could not be converted to fp16."""


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and compute, fp32 graph inputs/outputs, FP32_OPS kept in fp32; metadata kept."""
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as error:
        raise Fp16Error(
            "--fp16 needs onnxruntime's float16 converter (onnxruntime.transformers); run `pip install onnxruntime`"
        ) from error
    logger = logging.getLogger("onnxruntime.transformers.float16")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "weights clipped to fp16 range" is reported by the parity check instead
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            half = convert_float_to_float16(
                model, keep_io_types=True, op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
            )
    except (ValueError, AssertionError, onnx.shape_inference.InferenceError) as error:
        raise Fp16Error(
            f"onnxruntime's float16 converter failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); convert without --fp16"
        ) from error
    finally:
        logger.setLevel(level)
    sort_topologically(half.graph)  # the converter appends the input Casts after the nodes that read them
    del half.graph.value_info[:]  # shape annotations of the fp32 graph, some with stale element types
    return half


def sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder `graph.node` in place so every node comes after the producers of its inputs (stable)."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:  # a cycle or an input from an outer scope: keep the rest as it was
            ordered += pending
            break
        for node in ready:
            available.update(node.output)
        ordered += ready
        ready_ids = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in ready_ids]
    copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in ordered]
    del graph.node[:]
    graph.node.extend(copies)
