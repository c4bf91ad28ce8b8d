"""convert_model: steps combine in order, the result is re-verified, and the optional simplifier is optional."""

from __future__ import annotations

import sys

import onnx
import pytest
import torch

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.export.onnx_conversion import ConversionError, ConversionOptions, convert_model
from recipes.arcface_torch.export.onnx_export import export_backbone
from tests.support.onnx_models import face_calibrated

pytestmark = pytest.mark.slow  # exports and verifies a backbone


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    backbone = face_calibrated(get_model("tiny", num_features=64))
    return export_backbone(backbone, tmp_path_factory.mktemp("tiny") / "tiny.onnx", metadata={"network": "tiny"}).path


def test_opset_simplify_and_fp16_combine_and_the_result_is_verified(tiny_onnx, tmp_path):
    pytest.importorskip("onnxslim")
    output = tmp_path / "tiny_op17_fp16.onnx"
    report = convert_model(tiny_onnx, output, ConversionOptions(opset=17, simplify=True, fp16=True, runs=1))
    assert report.written and not report.forced and report.verification.passed, report.verification.text()
    assert report.steps == ["opset 18 -> 17", "simplified with onnxslim", "fp16 weights and compute, fp32 input/output"]
    model = onnx.load(str(output))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "fp16" and meta["opset"] == "17" and meta["network"] == "tiny"
    assert meta["converted"] == "--opset 17 --simplify --fp16"
    checks = {c.name: c for c in report.verification.checks}
    assert checks["compare"].numbers["threshold"] == 0.999 and checks["compare"].numbers["min_cosine"] >= 0.999
    assert not list(tmp_path.glob(".*.tmp")), "the staging folder is removed"


def test_without_onnxslim_simplify_is_a_clear_error_and_nothing_is_written(tiny_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import onnxslim now raises ImportError
    output = tmp_path / "simplified.onnx"
    with pytest.raises(ConversionError, match=r"--simplify needs the onnxslim package; run `pip install onnxslim`"):
        convert_model(tiny_onnx, output, ConversionOptions(simplify=True))
    assert list(tmp_path.iterdir()) == []


def test_int8_of_an_older_opset_model_moves_it_up_first(tiny_onnx, tmp_path):
    from recipes.arcface_torch.export.onnx_opset import convert_opset, opset_of

    old = tmp_path / "tiny_op12.onnx"
    onnx.save(convert_opset(onnx.load(str(tiny_onnx)), 12), str(old))
    output = tmp_path / "tiny_int8.onnx"
    report = convert_model(old, output, ConversionOptions(int8=True, min_cosine=0.9, runs=1))
    assert report.written, report.verification.text()
    assert report.steps[0] == "opset 12 -> 13 (int8's per-channel weights need opset 13)"
    assert opset_of(onnx.load(str(output))) == 13
