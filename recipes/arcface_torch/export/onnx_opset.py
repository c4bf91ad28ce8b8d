"""Move an ONNX model to another opset (default domain), up or down, or say which op prevents it.

Up: onnx's version converter. Down: onnx's converter first; where it lacks an adapter (it has none
to step Add/Mul/Identity/BatchNormalization/... below their newest versions), each node is checked
against the op's schema at the target opset. A node whose op did not change between the two
versions, or changed only by accepting more tensor types or by an attribute it does not use (the
ops in COMPATIBLE_STEPS), is kept as it is. Any other change (an attribute became an input, the
semantics changed) stops the conversion with OpsetError naming the op and the versions.

    model = convert_opset(onnx.load("model.onnx"), 13)
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import defs, numpy_helper, version_converter

from .options import MIN_OPSET

# Ops whose versions after opset 11 differ only in the tensor types they accept (bfloat16, integer,
# optional/sequence types) or by an attribute with a neutral default (listed: must be absent or equal
# to the default), so a float node written for the newer version means the same at the older one.
COMPATIBLE_STEPS: dict[str, dict[str, object]] = {
    "Add": {},
    "Sub": {},
    "Mul": {},
    "Div": {},
    "Identity": {},
    "Relu": {},
    "PRelu": {},
    "LeakyRelu": {},
    "Sigmoid": {},
    "Tanh": {},
    "Exp": {},
    "Neg": {},
    "Abs": {},
    "Sqrt": {},
    "Pow": {},
    "Gemm": {},
    "MatMul": {},
    "Flatten": {},
    "Concat": {},
    "Gather": {},
    "Transpose": {},
    "Conv": {},
    "GlobalAveragePool": {},
    "Equal": {},
    "Where": {},
    "Constant": {},
    "Max": {},
    "Min": {},
    "Reshape": {"allowzero": 0},
    "Shape": {"start": 0},  # `end` absent is checked below
    "Cast": {"saturate": 1},
    "BatchNormalization": {"training_mode": 0},
    "MaxPool": {},
    "AveragePool": {},
}
_NO_ATTRIBUTE_ALLOWED = {"Shape": ("end",)}


class OpsetError(RuntimeError):
    """The model cannot be expressed at the requested opset (names the op that prevents it)."""


def opset_of(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), -1)


def _since(op_type: str, opset: int) -> int | None:
    try:
        return defs.get_schema(op_type, opset, "").since_version
    except defs.SchemaError:
        return None


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _drop_neutral_allowzero(node: onnx.NodeProto, constants: dict) -> None:
    """Reshape(allowzero=1) means the same as allowzero=0 when its shape constant holds no 0: drop it."""
    if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
        return
    if (constants[node.input[1]] == 0).any():
        return
    kept = [attribute for attribute in node.attribute if attribute.name != "allowzero"]
    del node.attribute[:]
    node.attribute.extend(kept)


def _node_fits(node: onnx.NodeProto, opset: int) -> bool:
    schema = defs.get_schema(node.op_type, opset, "")
    if len(node.input) > len(schema.inputs) and not any(
        p.option == defs.OpSchema.FormalParameterOption.Variadic for p in schema.inputs
    ):
        return False
    if len(node.output) > len(schema.outputs) and not any(
        p.option == defs.OpSchema.FormalParameterOption.Variadic for p in schema.outputs
    ):
        return False
    neutral = COMPATIBLE_STEPS[node.op_type]
    for attribute in node.attribute:
        if attribute.name in _NO_ATTRIBUTE_ALLOWED.get(node.op_type, ()):
            return False
        if attribute.name in neutral:
            if onnx.helper.get_attribute_value(attribute) != neutral[attribute.name]:
                return False
            continue
        if attribute.name not in schema.attributes:
            return False
    return True


def _step_down(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """Keep every node as it is when its op means the same at `target`; else OpsetError naming the node."""
    source = opset_of(model)
    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    constants = _constant_values(converted.graph)
    for graph_node in _all_nodes(converted.graph):
        if graph_node.domain not in ("", "ai.onnx"):
            continue
        new, old = _since(graph_node.op_type, source), _since(graph_node.op_type, target)
        if old is None:
            raise OpsetError(
                f"op {graph_node.op_type} (node {graph_node.name or '<unnamed>'}) does not exist at opset {target}"
            )
        if new == old:
            continue
        _drop_neutral_allowzero(graph_node, constants)
        if graph_node.op_type not in COMPATIBLE_STEPS or not _node_fits(graph_node, target):
            raise OpsetError(
                f"op {graph_node.op_type} (node {graph_node.name or '<unnamed>'}) changed between "
                f"opset {old} and {new} in a way that cannot be converted back"
            )
    for entry in converted.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = target
    converted.ir_version = min(converted.ir_version, _ir_version_for(converted))
    return converted


def _ir_version_for(model: onnx.ModelProto) -> int:
    """The lowest IR version that holds `model`'s opsets (and local functions), so older runtimes load it."""
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    return max(needed, 8) if len(model.functions) else needed


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


_SOFTMAX_OPS = ("Softmax", "LogSoftmax", "Hardmax")


def _refuse_softmax_over_inner_axis(model: onnx.ModelProto, target: int) -> None:
    """Softmax before opset 13 normalises over all axes from `axis` on, since 13 over `axis` alone: the two agree
    only for the last axis, and onnx's converter relabels the node without checking that."""
    if target >= 13:
        return
    for node in _all_nodes(model.graph):
        if node.op_type in _SOFTMAX_OPS and _since(node.op_type, opset_of(model)) == 13:
            axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
            if axis != -1:
                raise OpsetError(
                    f"op {node.op_type} (node {node.name or '<unnamed>'}) normalises over axis {axis} "
                    f"alone at opset 13 but over all axes from {axis} on before it, so it cannot move "
                    f"to opset {target}"
                )


def _adapter_op(error: Exception) -> str | None:
    match = re.search(r"for (\w+)", str(error))
    return match.group(1) if match else None


def convert_opset(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
    """`model` at default-domain opset `target` (>= MIN_OPSET); OpsetError names the op that prevents it."""
    source = opset_of(model)
    if target < MIN_OPSET:
        raise OpsetError(
            f"opset {target} is older than {MIN_OPSET}, the lowest this project writes; pass --opset "
            f"{MIN_OPSET} or newer"
        )
    if target > defs.onnx_opset_version():
        raise OpsetError(
            f"opset {target} is newer than this onnx ({onnx.__version__}) knows "
            f"({defs.onnx_opset_version()}); pass --opset {defs.onnx_opset_version()} or older"
        )
    if target == source:
        return model
    if target < source:
        _refuse_softmax_over_inner_axis(model, target)
    try:
        converted = version_converter.convert_version(model, target)
        if opset_of(converted) == target:
            converted.ir_version = max(converted.ir_version, _ir_version_for(converted))
            return converted
        failure: Exception | None = None
    except (RuntimeError, ValueError, onnx.checker.ValidationError) as error:
        failure = error
    if target > source:
        op = _adapter_op(failure) if failure else None
        raise OpsetError(f"onnx's version converter cannot bring op {op or '?'} up from opset {source} to {target}")
    return _step_down(model, target)
