"""Opset conversion: down where every op means the same at the target, up through onnx; refusals name the op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from recipes.arcface_torch.export.onnx_inference import cpu_session
from recipes.arcface_torch.export.onnx_opset import OpsetError, convert_opset, opset_of


def _model(nodes, initializers, opset: int, out_shape) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _flatten_scale(allowzero_shape=(-1, 6)) -> onnx.ModelProto:
    """Add, Mul, Reshape(allowzero=1), Identity, Relu at opset 18: ops onnx's converter cannot step down."""
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["a"]),
        helper.make_node("Mul", ["a", "scale"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["r"], allowzero=1),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("Relu", ["i"], ["out"]),
    ]
    initializers = [
        numpy_helper.from_array(np.float32([0.5, -1.0, 2.0]), "bias"),
        numpy_helper.from_array(np.float32(1.5), "scale"),
        numpy_helper.from_array(np.array(allowzero_shape, np.int64), "shape"),
    ]
    return _model(nodes, initializers, 18, ["N", 6])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return cpu_session(model.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("target", [17, 13, 11])
def test_down_and_back_up_round_trip_computes_the_same(target):
    model = _flatten_scale()
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    expected = _run(model, x)
    down = convert_opset(model, target)
    assert opset_of(down) == target
    onnx.checker.check_model(down, full_check=True)
    np.testing.assert_array_equal(_run(down, x), expected)
    up = convert_opset(down, 18)
    assert opset_of(up) == 18
    onnx.checker.check_model(up, full_check=True)
    np.testing.assert_array_equal(_run(up, x), expected)


def test_reshape_that_copies_zero_sized_axes_cannot_step_down():
    with pytest.raises(OpsetError, match=r"op Reshape .* changed between opset 13 and 14"):
        convert_opset(_flatten_scale(allowzero_shape=(0, 6)), 13)


def test_an_op_whose_attribute_became_an_input_goes_through_onnx_adapters():
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["out"], name="pool", keepdims=0)]
    model = _model(nodes, [numpy_helper.from_array(np.array([2], np.int64), "axes")], 18, ["N", 2])
    x = np.random.default_rng(1).standard_normal((3, 2, 3)).astype(np.float32)
    down = convert_opset(model, 13)
    assert opset_of(down) == 13
    np.testing.assert_allclose(_run(down, x), _run(model, x), rtol=1e-6)


def test_softmax_over_the_last_axis_steps_down_and_over_an_inner_axis_is_refused():
    # Before opset 13 Softmax normalises over every axis from `axis` on: equal only for the last axis.
    x = np.random.default_rng(2).standard_normal((3, 2, 3)).astype(np.float32)
    last = _model([helper.make_node("Softmax", ["x"], ["out"], axis=-1)], [], 13, ["N", 2, 3])
    np.testing.assert_allclose(_run(convert_opset(last, 11), x), _run(last, x), rtol=1e-6)
    inner = _model([helper.make_node("Softmax", ["x"], ["out"], name="probabilities", axis=1)], [], 13, ["N", 2, 3])
    with pytest.raises(OpsetError, match=r"op Softmax \(node probabilities\) normalises over axis 1 alone"):
        convert_opset(inner, 11)


def test_an_op_newer_than_the_target_is_named():
    nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["out"], name="norm", axis=-1)]
    initializers = [
        numpy_helper.from_array(np.ones(3, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(3, np.float32), "beta"),
    ]
    with pytest.raises(OpsetError, match=r"op LayerNormalization \(node norm\) does not exist at opset 13"):
        convert_opset(_model(nodes, initializers, 17, ["N", 2, 3]), 13)


def test_opsets_out_of_range_say_which_to_pass():
    with pytest.raises(OpsetError, match="pass --opset 11 or newer"):
        convert_opset(_flatten_scale(), 9)
    with pytest.raises(OpsetError, match="newer than this onnx"):
        convert_opset(_flatten_scale(), onnx.defs.onnx_opset_version() + 1)
