"""Find and repair Reshape constants that froze the traced batch size into an ONNX graph.

An exporter that traces at batch 1 and only renames the input's batch axis afterwards (upstream
arcface_torch's torch2onnx.py, or any export later constant-folded by a simplifier) can leave
`Reshape(x, [1, 25088])`: the graph claims a dynamic batch but runs only at batch 1. Such a Reshape
has a constant shape whose first entry is a fixed positive number while its data input's first
axis is the batch. The repair sets that entry to 0 ("copy this axis from the input", the Reshape
default allowzero=0), so the batch flows through; it repeats until shape inference shows no frozen
Reshape left, and marks the output's first axis symbolic too.

    repaired, nodes = fix_frozen_batch(onnx.load("upstream.onnx"))     # nodes: names of repaired Reshapes
    frozen_batch_reshapes(model)                                       # detection only
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

BATCH_AXIS = "batch"
MAX_ROUNDS = 64


class BatchRepairError(RuntimeError):
    """The graph cannot be given a dynamic batch by rewriting Reshape constants."""


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]


def _constant_tensor(model: onnx.ModelProto, name: str) -> onnx.TensorProto | None:
    for init in model.graph.initializer:
        if init.name == name:
            return init
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attribute in node.attribute:
                if attribute.name == "value":
                    return attribute.t
    return None


def _batch_symbolic(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the input's and outputs' first axes named BATCH_AXIS and stale value_info dropped."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in [*_graph_inputs(model), *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = BATCH_AXIS
    del model.graph.value_info[:]
    return model


def _first_axes(model: onnx.ModelProto) -> dict[str, onnx.TensorShapeProto.Dimension]:
    """First-axis dimension of every value shape inference can tell."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as error:
        raise BatchRepairError(
            f"onnx shape inference fails on the model ({str(error).splitlines()[0]}); "
            f"re-export it with tools/export_onnx.py"
        ) from error
    axes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            axes[value.name] = dims[0]
    return axes


def _frozen(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    axes = _first_axes(model)
    frozen = []
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        data_axis = axes.get(node.input[0])
        tensor = _constant_tensor(model, node.input[1])
        if data_axis is None or tensor is None or data_axis.HasField("dim_value"):
            continue  # the data's first axis is fixed (not the batch) or the shape is computed at run time
        shape = numpy_helper.to_array(tensor)
        if shape.ndim == 1 and shape.size >= 1 and shape[0] > 0:
            frozen.append(node)
    return frozen


def frozen_batch_reshapes(model: onnx.ModelProto) -> list[str]:
    """Names of the Reshape nodes that pin the batch (those shape inference already reaches)."""
    return [node.name or node.output[0] for node in _frozen(_batch_symbolic(model))]


def _rewrite(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Point `node` at a new shape constant whose first entry is 0 (copy the batch from the data)."""
    shape = numpy_helper.to_array(_constant_tensor(model, node.input[1])).copy()
    shape[0] = 0
    name = f"{node.input[1]}_dynamic_batch"
    if _constant_tensor(model, name) is None:  # one new constant per distinct frozen shape
        model.graph.initializer.append(numpy_helper.from_array(shape, name))
    node.input[1] = name
    kept = [attribute for attribute in node.attribute if attribute.name != "allowzero"]
    del node.attribute[:]
    node.attribute.extend(kept)  # allowzero=0 (the default): 0 copies the input's axis


def fix_frozen_batch(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """(repaired copy, names of the rewritten Reshape nodes); the copy's input/output batch axes are symbolic."""
    repaired = _batch_symbolic(model)
    names: list[str] = []
    for _ in range(MAX_ROUNDS):
        frozen = _frozen(repaired)
        if not frozen:
            break
        for node in frozen:
            _rewrite(repaired, node)
            names.append(node.name or node.output[0])
    else:
        raise BatchRepairError(
            f"more than {MAX_ROUNDS} rounds of Reshape repairs; re-export the model with tools/export_onnx.py"
        )
    used = {name for node in repaired.graph.node for name in node.input}
    kept = [
        init
        for init in repaired.graph.initializer
        if init.name in used or init.name in {value.name for value in repaired.graph.input}
    ]
    del repaired.graph.initializer[:]
    repaired.graph.initializer.extend(kept)  # drop the frozen shape constants nothing reads any more
    return repaired, names
