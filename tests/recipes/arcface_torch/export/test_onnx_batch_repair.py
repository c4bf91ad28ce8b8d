"""Frozen-batch Reshape detection and repair, on small networks exported the way upstream does."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from recipes.arcface_torch.export.onnx_batch_repair import fix_frozen_batch, frozen_batch_reshapes
from recipes.arcface_torch.export.onnx_inference import ORT_ERRORS, cpu_session, row_cosines, run_onnx
from tests.support.onnx_models import UpstreamFlatten, upstream_style_export


def _net(flatten: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 8, stride=8), nn.BatchNorm2d(4), nn.PReLU(4), flatten, nn.Linear(4 * 14 * 14, 16)
    ).eval()


def test_an_upstream_style_export_is_found_frozen_and_repaired(tmp_path):
    net = _net(UpstreamFlatten())
    model = onnx.load(str(upstream_style_export(net, tmp_path / "frozen.onnx")))
    x = np.random.default_rng(0).standard_normal((5, 3, 112, 112)).astype(np.float32)
    frozen_session = cpu_session(model.SerializeToString())
    try:
        run_onnx(frozen_session, x, 5)
        raise AssertionError("the upstream-style export ran at batch 5; it should be frozen at batch 1")
    except ORT_ERRORS:
        pass
    names = frozen_batch_reshapes(model)
    assert len(names) == 1

    repaired, rewritten = fix_frozen_batch(model)
    assert rewritten == names
    assert frozen_batch_reshapes(repaired) == []
    onnx.checker.check_model(repaired, full_check=True)
    for value in (repaired.graph.input[0], repaired.graph.output[0]):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    session = cpu_session(repaired.SerializeToString())
    for size in (1, 2, 5):
        rows = run_onnx(session, x, size)
        assert row_cosines(rows, expected).min() >= 0.99999
        np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_model_with_a_dynamic_batch_is_left_as_it_is(tmp_path):
    model = onnx.load(str(upstream_style_export(_net(nn.Flatten(1)), tmp_path / "flatten.onnx")))
    assert frozen_batch_reshapes(model) == []
    repaired, rewritten = fix_frozen_batch(model)
    assert rewritten == []
    assert [n.op_type for n in repaired.graph.node] == [n.op_type for n in model.graph.node]


def test_a_reshape_of_a_fixed_axis_is_not_touched():
    # (N, 6) -> Reshape to (N, 2, 3) via [0, 2, 3] and a constant-only branch: (6,) -> (2, 3)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "shape_dyn"], ["y"], name="batch_reshape"),
            helper.make_node("Reshape", ["table", "shape_fixed"], ["t"], name="table_reshape"),
            helper.make_node("Add", ["y", "t"], ["out"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2, 3])],
        [
            numpy_helper.from_array(np.array([0, 2, 3], np.int64), "shape_dyn"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "shape_fixed"),
            numpy_helper.from_array(np.arange(6, dtype=np.float32), "table"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert frozen_batch_reshapes(model) == []
