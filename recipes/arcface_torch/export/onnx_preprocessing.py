"""What input normalisation an ONNX recognition model really expects from its caller.

Two sources of truth: the model's metadata (`input_mean`, `input_std`, written by our exporter) and
the graph itself. A graph that starts with Sub/Add/Mul/Div by constants normalises raw pixels
itself ("baked in"), so its caller must pass pixels unchanged (mean 0, std 1). Insightface instead
guesses from node names: it assumes mean 0 / std 1 only when one of the first 8 nodes is named
`Sub...`/`_minus...` and one `Mul...`/`_mul...` (MXNet-era names), else 127.5 / 127.5.

    expected = expected_preprocessing(onnx.load("model.onnx"))
    expected.mean, expected.std, expected.source, expected.baked
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

ARCFACE_MEAN = 127.5
ARCFACE_STD = 127.5
_AFFINE_OPS = {"Sub", "Add", "Mul", "Div"}
_PASS_THROUGH_OPS = {"Identity", "Cast"}


@dataclass
class BakedNormalisation:
    """An affine input normalisation y = (x - mean) / std found at the start of a graph."""

    mean: float
    std: float
    nodes: list[str]  # "name (OpType)" of each node in the chain


@dataclass
class Preprocessing:
    """The (mean, std) a caller must apply to RGB pixels, and where that answer came from."""

    mean: float
    std: float
    source: str
    baked: BakedNormalisation | None = None
    conflict: str | None = None  # set when metadata and graph disagree


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
                elif attribute.name in ("value_float", "value_floats"):
                    values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(attribute), np.float32)
    return values


def _scalar(value: np.ndarray) -> float | None:
    """One number for a scalar or a constant that is equal in every element (e.g. per channel)."""
    flat = np.asarray(value, dtype=np.float64).ravel()
    if flat.size == 0 or not np.allclose(flat, flat[0]):
        return None
    return float(flat[0])


def find_baked_normalisation(model: onnx.ModelProto) -> BakedNormalisation | None:
    """The chain of elementwise ops by constants that the first graph input flows through, if any."""
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in initializer_names]
    if not inputs:
        return None
    constants = _constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    current, scale, offset, chain = inputs[0], 1.0, 0.0, []
    for _ in range(8):
        users = consumers.get(current, [])
        if len(users) != 1:
            break
        node = users[0]
        if node.op_type in _PASS_THROUGH_OPS:
            chain.append(node)
            current = node.output[0]
            continue
        if node.op_type not in _AFFINE_OPS or len(node.input) != 2:
            break
        first = node.input[0] == current
        other = node.input[1] if first else node.input[0]
        value = _scalar(constants[other]) if other in constants else None
        if value is None:
            break
        if node.op_type == "Add":
            offset += value
        elif node.op_type == "Sub":
            scale, offset = (scale, offset - value) if first else (-scale, value - offset)
        elif node.op_type == "Mul":
            scale, offset = scale * value, offset * value
        elif first and value != 0.0:  # Div by a constant
            scale, offset = scale / value, offset / value
        else:
            break
        chain.append(node)
        current = node.output[0]
    if not any(node.op_type in _AFFINE_OPS for node in chain) or scale == 0.0:
        return None
    # y = scale * x + offset  ==  (x - mean) / std
    return BakedNormalisation(
        mean=-offset / scale, std=1.0 / scale, nodes=[f"{node.name or '<unnamed>'} ({node.op_type})" for node in chain]
    )


def declared_preprocessing(model: onnx.ModelProto) -> tuple[float, float] | None:
    """(input_mean, input_std) from the model's metadata_props, when both are there and numeric."""
    props = {prop.key: prop.value for prop in model.metadata_props}
    try:
        return float(props["input_mean"]), float(props["input_std"])
    except (KeyError, ValueError):
        return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-3 * max(1.0, abs(b))


def same_preprocessing(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return _close(a[0], b[0]) and _close(a[1], b[1])


def expected_preprocessing(model: onnx.ModelProto) -> Preprocessing:
    """The caller-side (mean, std) the model needs: metadata, else the graph, else the arcface 127.5/127.5."""
    baked = find_baked_normalisation(model)
    declared = declared_preprocessing(model)
    if declared is not None:
        conflict = None
        if baked is not None and not same_preprocessing(declared, (0.0, 1.0)):
            conflict = (
                f"metadata says input_mean={declared[0]:g} input_std={declared[1]:g}, but the graph already "
                f"normalises its input (mean {baked.mean:g}, std {baked.std:g} in {', '.join(baked.nodes)})"
            )
        return Preprocessing(declared[0], declared[1], "model metadata", baked, conflict)
    if baked is not None:
        return Preprocessing(0.0, 1.0, "normalisation in the graph", baked)
    return Preprocessing(ARCFACE_MEAN, ARCFACE_STD, "arcface convention (no metadata, nothing in the graph)")
