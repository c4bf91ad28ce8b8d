"""fp16 conversion: fp16 weights, fp32 input/output, normalisations and reductions computed in fp32."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto
from torch import nn

from recipes.arcface_torch.export.onnx_export import _quiet_exporter
from recipes.arcface_torch.export.onnx_fp16 import FP32_OPS, convert_to_fp16
from recipes.arcface_torch.export.onnx_inference import cpu_session, row_cosines, run_onnx
from recipes.arcface_torch.export.onnx_precision import precision_of


class PooledNet(nn.Module):
    """conv -> PReLU -> mean over space (a reduction) -> linear -> BatchNorm1d (a normalisation)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 8, stride=8)
        self.act = nn.PReLU(16)
        self.fc = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)

    def forward(self, x):
        return self.bn(self.fc(self.act(self.conv(x)).mean(dim=(2, 3))))


def _export(tmp_path) -> onnx.ModelProto:
    torch.manual_seed(0)
    net = PooledNet().eval()
    net.bn.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "pooled.onnx"
    with _quiet_exporter():
        torch.onnx.export(
            net,
            (torch.zeros(2, 3, 112, 112),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}},
        )
    return onnx.load(str(path))


def test_fp16_keeps_fp32_io_and_fp32_normalisation_and_reductions(tmp_path):
    model = _export(tmp_path)
    half = convert_to_fp16(model)
    onnx.checker.check_model(half, full_check=True)
    assert precision_of(model) == "fp32" and precision_of(half) == "fp16"
    assert half.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inferred = onnx.shape_inference.infer_shapes(half)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    types.update({t.name: t.data_type for t in half.graph.initializer})
    kept = [node for node in half.graph.node if node.op_type in FP32_OPS]
    assert {node.op_type for node in kept} >= {"ReduceMean", "BatchNormalization"}
    for node in kept:
        assert types[node.input[0]] == TensorProto.FLOAT, node.op_type
    computed = [node for node in half.graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
    assert computed and all(types[node.input[1]] == TensorProto.FLOAT16 for node in computed)
    x = np.random.default_rng(0).standard_normal((6, 3, 112, 112)).astype(np.float32)
    reference = run_onnx(cpu_session(model.SerializeToString()), x, 6)
    rows = run_onnx(cpu_session(half.SerializeToString()), x, 3)
    assert rows.dtype == np.float32
    assert row_cosines(rows, reference).min() >= 0.999
