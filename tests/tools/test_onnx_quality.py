"""export_onnx --quality writes the two-output model (embedding, quality) that agrees with PyTorch; verify_onnx
checks both outputs and says why insightface's get_model cannot load it; bad inputs are one line."""

import json

import numpy as np
import onnx
import pytest
import torch

from recipes.arcface_torch.cli import export_onnx, verify_onnx
from recipes.arcface_torch.export.onnx_inference import cpu_session
from recipes.arcface_torch.face_quality import load_quality_model
from tests.support.onnx_models import network_input
from tests.support.quality_models import write_model_folder

pytestmark = pytest.mark.slow  # exports and runs ONNX models


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = write_model_folder(tmp_path_factory.mktemp("quality") / "run")
    output = folder / "quality.onnx"
    assert export_onnx.main([str(folder), "--quality", "-o", str(output), "--quiet"]) == 0
    return folder, output


def test_two_outputs_agree_with_pytorch(exported):
    folder, output = exported
    model = onnx.load(str(output))
    assert [o.name for o in model.graph.output] == ["embedding", "quality"]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["quality_scores"] == "ri,ers,norm"
    x = network_input(8)
    embedding, quality = cpu_session(str(output)).run(None, {"input.1": x})
    reference = load_quality_model(folder)
    with torch.no_grad():
        ref_embedding, ref_quality = reference(torch.from_numpy(x))
    np.testing.assert_allclose(
        embedding, ref_embedding.numpy(), rtol=1e-4, atol=1e-4 * float(ref_embedding.abs().max())
    )
    scale = np.maximum(1.0, np.abs(ref_quality.numpy()).max(axis=0))
    assert np.all(np.abs(quality - ref_quality.numpy()).max(axis=0) <= 1e-4 * scale)


def test_verify_checks_both_outputs_and_explains_insightface(exported, capsys):
    folder, output = exported
    code = verify_onnx.main([str(output), "--checkpoint", str(folder), "--json", "--runs", "1"])
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert code == 0 and report["passed"], [c for c in report["checks"] if c["status"] == "FAIL"]
    assert checks["output"]["status"] == "PASS" and "quality" in checks["output"]["summary"]
    assert checks["quality"]["status"] == "PASS" and "vs PyTorch quality" in checks["quality"]["summary"]
    assert max(checks["quality"]["parity_relative_diff"].values()) <= 1e-4
    assert checks["insightface"]["status"] == "SKIP"
    assert "exactly one output" in checks["insightface"]["summary"]
    assert "export the same model without --quality" in checks["insightface"]["summary"]


def test_verify_fails_the_quality_of_another_centre(exported, tmp_path, capsys):
    folder, output = exported
    other = write_model_folder(tmp_path / "other", seed=0)  # same backbone weights
    write_model_folder(tmp_path / "centre_source", seed=5)
    (other / "recognisability.pt").write_bytes((tmp_path / "centre_source" / "recognisability.pt").read_bytes())
    code = verify_onnx.main([str(output), "--checkpoint", str(other), "--json", "--runs", "1"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert code == 1 and checks["quality"]["status"] == "FAIL" and checks["parity"]["status"] == "PASS"
    assert "re-export from this checkpoint" in checks["quality"]["summary"]


def test_export_bad_inputs_are_one_line(tmp_path, capsys):
    plain = write_model_folder(tmp_path / "plain", centre=False)
    assert export_onnx.main([str(plain), "--quality", "-o", str(tmp_path / "a.onnx"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no unrecognisable-identity centre saved at" in err
    half = write_model_folder(tmp_path / "half")
    state = torch.load(half / "model.pt", weights_only=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, half / "model.pt")
    assert export_onnx.main([str(half), "--quality", "-o", str(tmp_path / "b.onnx"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds float16 weights" in err
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()
