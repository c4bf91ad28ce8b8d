"""int8 quantization report and calibration face sources (built-in, folder, RecordIO, .bin)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.cli.synthetic_to_rec import main as synthetic_to_rec
from recipes.arcface_torch.export.calibration_faces import BUILTIN_COUNT, calibration_faces, user_faces
from recipes.arcface_torch.export.onnx_export import export_backbone
from recipes.arcface_torch.export.onnx_inference import cpu_session, row_cosines, run_onnx
from recipes.arcface_torch.export.onnx_int8 import Int8Error, quantize_int8
from recipes.arcface_torch.export.onnx_opset import convert_opset
from recipes.arcface_torch.export.onnx_precision import precision_of
from tests.support.onnx_models import face_calibrated, network_input

SMALL = [
    "--set",
    "synthetic.num_identities=6",
    "--set",
    "synthetic.images_per_identity=4",
    "--set",
    "synthetic.val_identities=6",
    "--set",
    "synthetic.val_pairs=20",
    "--quiet",
]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch.manual_seed(0)
    backbone = face_calibrated(get_model("tiny", num_features=64))
    return export_backbone(backbone, tmp_path_factory.mktemp("tiny") / "tiny.onnx", metadata={}).path


@pytest.fixture(scope="module")
def synthetic_rec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec") / "rec"
    assert synthetic_to_rec([str(folder), *SMALL]) == 0
    return folder


@pytest.mark.slow
def test_int8_reports_quantized_ops_and_stays_close_to_fp32(tiny_onnx):
    import onnx

    model, counts = quantize_int8(tiny_onnx, calibration_faces(), 127.5, 127.5)
    assert precision_of(model) == "int8"
    assert counts["Conv"] >= 1 and counts["Gemm"] == 1
    stem = next(n for n in model.graph.node if n.op_type == "Conv")
    assert stem.input[0] == "input.1", "the stem conv reads the float image directly"
    onnx.checker.check_model(model)
    x = network_input()
    rows = run_onnx(cpu_session(model.SerializeToString()), x, 8)
    # random weights (BatchNorm statistics from faces) quantize worse than trained ones: explicit bound
    assert row_cosines(rows, run_onnx(cpu_session(str(tiny_onnx)), x, 32)).min() >= 0.95


@pytest.mark.slow
def test_int8_below_opset_13_says_which_opset_to_use(tiny_onnx, tmp_path):
    import onnx

    old = tmp_path / "op12.onnx"
    onnx.save(convert_opset(onnx.load(str(tiny_onnx)), 12), str(old))
    with pytest.raises(Int8Error, match="pass --opset 13"):
        quantize_int8(old, calibration_faces(), 127.5, 127.5)


@pytest.mark.slow
def test_calibration_faces_from_a_rec_folder_a_rec_file_a_bin_and_a_folder(synthetic_rec, tmp_path):
    builtin = calibration_faces()
    assert builtin.shape == (BUILTIN_COUNT, 112, 112, 3) and builtin.dtype == np.uint8
    from_rec = calibration_faces(synthetic_rec, count=10)
    assert from_rec.shape == (BUILTIN_COUNT + 10, 112, 112, 3)
    assert np.array_equal(user_faces(synthetic_rec / "train.rec", 10), from_rec[BUILTIN_COUNT:])
    from_bin = user_faces(synthetic_rec / "synthetic.bin", 7)
    assert from_bin.shape == (7, 112, 112, 3) and from_bin.std() > 5  # real pictures, not blank
    folder = tmp_path / "crops"
    folder.mkdir()
    for index, image in enumerate(from_bin[:3]):
        cv2.imwrite(str(folder / f"face{index}.png"), cv2.resize(image, (96, 96)))
    from_folder = user_faces(folder, 100)
    assert from_folder.shape == (3, 112, 112, 3)


def test_a_missing_calibration_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass a folder of aligned faces"):
        user_faces(tmp_path / "nowhere", 10)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder, a .rec nor a .bin"):
        user_faces(tmp_path / "notes.txt", 10)
