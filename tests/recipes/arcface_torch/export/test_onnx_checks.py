"""Checks that concern converted models: fp16 inputs, fp16/int8 weights, external data outside the model's folder."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from recipes.arcface_torch.cli import eval_ijb, verify_onnx
from recipes.arcface_torch.export.onnx_checks import check_file, check_input, check_weights
from recipes.arcface_torch.export.onnx_embedder import OnnxEmbedder


def _linear_model(dtype=TensorProto.FLOAT, weight_dtype=np.float32) -> onnx.ModelProto:
    """(N, 3, 112, 112) -> Flatten -> MatMul (3*112*112, 4): a minimal recognition-shaped graph."""
    weight = numpy_helper.from_array(np.full((3 * 112 * 112, 4), 1e-3, weight_dtype), "weight")
    nodes = [
        helper.make_node("Flatten", ["input.1"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["emb"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input.1", dtype, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("emb", dtype, ["N", 4])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_float16_input_names_the_conversion_that_keeps_fp32_io(tmp_path, capsys):
    model = _linear_model(TensorProto.FLOAT16, np.float16)
    check, size = check_input(model)
    assert check.failed and size is None and "tools/convert_onnx.py --fp16" in check.summary
    path = tmp_path / "half_io.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"float16 input; convert the fp32 model with `tools/convert_onnx.py --fp16`"):
        OnnxEmbedder(path)
    code = eval_ijb.main([str(path), "--root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "convert_onnx.py --fp16" in err
    assert "Traceback" not in err


def test_fp16_weights_pass_as_an_fp16_model():
    check = check_weights(_linear_model(weight_dtype=np.float16))
    assert not check.failed and check.numbers["precision"] == "fp16"
    assert check_weights(_linear_model()).numbers["precision"] == "fp32"


def test_external_data_outside_the_models_folder_fails_in_one_line(tmp_path, capsys):
    outside = tmp_path / "secrets"
    outside.mkdir()
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    model = _linear_model()
    onnx.save(model, str(outside / "m.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0)
    moved = onnx.load(str(outside / "m.onnx"), load_external_data=False)
    for tensor in moved.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secrets/weights.bin"
    path = model_dir / "escaping.onnx"
    onnx.save(moved, str(path))
    check, loaded = check_file(path)
    assert check.failed and loaded is None and "outside its own folder" in check.summary
    code = verify_onnx.main([str(path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    file_lines = [line for line in out.splitlines() if line.strip().startswith("file ")]
    assert len(file_lines) == 1 and " FAIL " in file_lines[0] and "../secrets/weights.bin" in file_lines[0]
