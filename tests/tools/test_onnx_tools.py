"""ONNX export and verification: good models pass every check, each kind of broken model fails its check.

Real backbones (mbf, r18) are exported once per module; the broken models are tiny networks built
here, so every failure case is fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.cli import export_onnx, verify_onnx
from recipes.arcface_torch.export.face_samples import builtin_faces, face_batch
from recipes.arcface_torch.export.onnx_export import ExportError, _quiet_exporter, export_backbone
from recipes.arcface_torch.export.onnx_inference import cpu_session, run_onnx
from recipes.arcface_torch.face_image import to_network_input

pytestmark = pytest.mark.slow  # trains, exports or spawns processes


class TinyFaceNet(nn.Module):
    """A small stand-in recognition network: (N, 3, S, S) -> (N, 64)."""

    def __init__(self, size: int = 112, frozen_batch: bool = False):
        super().__init__()
        self.frozen_batch = frozen_batch
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.act = nn.PReLU(8)
        self.fc = nn.Linear(8 * (size // 4) ** 2, 64)

    def forward(self, x):
        y = self.act(self.conv(x))
        y = y.view(1, -1) if self.frozen_batch else torch.flatten(y, 1)  # view(1, -1): upstream-style bug
        return self.fc(y)


class BakedNormalisation(nn.Module):
    """Normalises raw pixels inside the graph, as some third-party exports do."""

    def __init__(self):
        super().__init__()
        self.net = TinyFaceNet()

    def forward(self, x):
        return self.net((x - 127.5) / 127.5)


def _torch_export(module: nn.Module, path: Path, size: int = 112, dynamic: bool = True) -> Path:
    """Export like a third party would: plain torch.onnx, no metadata."""
    torch.manual_seed(0)
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    with _quiet_exporter():
        torch.onnx.export(
            module.eval(),
            (torch.zeros(2 if dynamic else 1, 3, size, size),),
            str(path),
            dynamo=True,
            external_data=False,
            input_names=["input.1"],
            output_names=["out"],
            dynamic_shapes=shapes,
        )
    return path


def _face_calibrated(model: nn.Module) -> nn.Module:
    """Random weights, but BatchNorm statistics from real faces, so embeddings have realistic scale."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the calibration batch
    x = torch.from_numpy(to_network_input(face_batch(builtin_faces(112), 32), 127.5, 127.5))
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def _verify(capsys, *argv) -> tuple[int, str]:
    code = verify_onnx.main([*map(str, argv), "--runs", "1"])
    return code, capsys.readouterr().out


def _line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(name + " "))


@pytest.fixture(scope="module")
def mbf_run(tmp_path_factory, tiny_model):
    """A training output folder (model.pt + config.json) for mbf, exported once over an older export that kept
    its weights in external-data files, with a model package."""
    folder = tmp_path_factory.mktemp("synthetic_mbf_unpg")
    onnx_path = folder / "mbf.onnx"
    onnx.save(
        onnx.load(str(tiny_model)),
        str(onnx_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="mbf_weights.bin",
        size_threshold=0,
    )
    (folder / "mbf.onnx.data").write_bytes(b"stale external data from an older export")
    (folder / "shared_weights.bin").write_bytes(b"not ours to delete")
    torch.manual_seed(0)
    torch.save(_face_calibrated(get_model("mbf")).state_dict(), folder / "model.pt")
    config = {
        "network": "mbf",
        "embedding_size": 512,
        "loss": "unpg",
        "margin_list": [1.0, 0.5, 0.0],
        "config_name": "synthetic_mbf_unpg",
    }
    (folder / "config.json").write_text(json.dumps(config))
    code = export_onnx.main([str(folder), "-o", str(onnx_path), "--force", "--package", str(folder / "package")])
    assert code == 0
    return folder, onnx_path


@pytest.fixture(scope="module")
def r18_model(tmp_path_factory):
    """r18 from a bare model.pt with --network given explicitly (no config.json)."""
    folder = tmp_path_factory.mktemp("r18")
    torch.manual_seed(1)
    torch.save(_face_calibrated(get_model("r18")).state_dict(), folder / "model.pt")
    onnx_path = folder / "r18.onnx"
    assert export_onnx.main([str(folder / "model.pt"), "--network", "r18", "-o", str(onnx_path)]) == 0
    return folder, onnx_path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return _torch_export(TinyFaceNet(), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


# ------------------------------------------------------------------ exporting


def test_export_writes_one_self_contained_model_with_metadata(mbf_run):
    folder, onnx_path = mbf_run
    assert not (folder / "mbf.onnx.data").exists(), "the stale external-data file must be removed"
    assert not (folder / "mbf_weights.bin").exists(), "the old model's external data must be removed"
    assert (folder / "shared_weights.bin").exists()
    assert not list(folder.glob(".*.tmp")), "no temp files may be left behind"
    model = onnx.load(str(onnx_path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert [i.name for i in model.graph.input] == ["input.1"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 112, 112]
    assert len(model.graph.output) == 1
    assert model.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 512
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer if t.data_type in (1, 10, 11))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["network"] == "mbf" and meta["embedding_size"] == "512" and meta["loss"] == "unpg"
    assert meta["config_name"] == "synthetic_mbf_unpg"
    assert float(meta["input_mean"]) == 127.5 and float(meta["input_std"]) == 127.5
    assert next(o.version for o in model.opset_import if o.domain == "") == 18


def test_exported_batch_axis_really_is_dynamic(mbf_run):
    _, onnx_path = mbf_run
    x = to_network_input(face_batch(builtin_faces(112), 16), 127.5, 127.5)
    session = cpu_session(str(onnx_path))
    reference = run_onnx(session, x, 16)
    for size in (1, 5):
        rows = run_onnx(session, x, size)
        assert rows.shape == (16, 512)
        assert np.all(np.isfinite(rows))
        np.testing.assert_allclose(rows, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_export_refuses_to_overwrite_without_force(mbf_run, capsys):
    folder, onnx_path = mbf_run
    before = onnx_path.read_bytes()
    code = export_onnx.main([str(folder), "-o", str(onnx_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert onnx_path.read_bytes() == before


def test_export_rejects_a_checkpoint_that_does_not_fit_the_network(r18_model, tmp_path, capsys):
    folder, _ = r18_model
    code = export_onnx.main([str(folder / "model.pt"), "--network", "mbf", "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 1
    assert "missing keys: conv_sep" in err and "unexpected keys: bn1" in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_fails_loudly_on_a_batch_freezing_model(tmp_path):
    with pytest.raises(ExportError, match="dynamic batch"):
        export_backbone(TinyFaceNet(frozen_batch=True), tmp_path / "frozen.onnx", metadata={})
    assert list(tmp_path.iterdir()) == []


def test_simplified_export_at_opset_17_keeps_the_dynamic_batch(tmp_path):
    pytest.importorskip("onnxslim")
    torch.manual_seed(0)
    report = export_backbone(
        TinyFaceNet(), tmp_path / "tiny.onnx", metadata={"network": "tiny"}, opset=17, simplify=True
    )
    assert report.simplified and report.parity.min_cosine >= 0.9999
    model = onnx.load(str(report.path))
    assert next(o.version for o in model.opset_import if o.domain == "") == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    session = cpu_session(str(report.path))
    x = np.random.default_rng(0).standard_normal((6, 3, 112, 112)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(session, x, 1), run_onnx(session, x, 6), rtol=1e-5, atol=1e-5)


def test_export_needs_an_existing_source(tmp_path, capsys):
    assert export_onnx.main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------ verifying good models


def test_verify_r18_json_report(r18_model, capsys):
    folder, onnx_path = r18_model
    code, out = _verify(capsys, onnx_path, "--checkpoint", folder / "model.pt", "--json")
    report = json.loads(out)
    assert code == 0 and report["passed"] is True, out
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["parity"]["min_cosine"] >= 0.9999
    assert checks["batch"]["max_abs_diff"] <= 1e-4 * max(1.0, checks["finite"]["norm_max"])
    assert checks["latency"]["batch1_ms"] > 0 and checks["latency"]["batch32_ms"] > 0
    assert report["metadata"]["network"] == "r18"


def test_insightface_loads_export_and_package_and_the_package_verifies(mbf_run, capsys):
    from insightface.model_zoo import ArcFaceONNX
    from insightface.model_zoo import get_model as insightface_model

    folder, onnx_path = mbf_run
    model = insightface_model(str(onnx_path), providers=["CPUExecutionProvider"])
    assert isinstance(model, ArcFaceONNX) and (model.input_mean, model.input_std) == (127.5, 127.5)
    package = insightface_model(str(folder / "package"), model_task="recognition", providers=["CPUExecutionProvider"])
    assert isinstance(package, ArcFaceONNX) and (package.input_mean, package.input_std) == (127.5, 127.5)
    manifest = json.loads((folder / "package" / "manifest.json").read_text())
    assert manifest["manifest_version"] == 2 and manifest["model_id"] == "synthetic_mbf_unpg"
    code, out = _verify(capsys, folder / "package", "--checkpoint", folder)
    assert code == 0, out
    for name in (
        "file",
        "package",
        "checker",
        "input",
        "output",
        "weights",
        "batch",
        "finite",
        "parity",
        "insightface",
        "latency",
    ):
        assert " PASS " in _line(out, name), out
    assert "sha256 verified" in _line(out, "package")
    assert "vs PyTorch mbf" in _line(out, "parity")
    assert "mean 127.5 / std 127.5" in _line(out, "insightface")
    assert out.strip().endswith("0 skipped)")


def test_verify_passes_for_a_third_party_style_model_without_metadata(tiny_model, capsys):
    code, out = _verify(capsys, tiny_model)
    assert code == 0, out
    assert "arcface convention" in _line(out, "insightface")


# ------------------------------------------------------------------ verifying broken models


def test_frozen_batch_fails(tmp_path, capsys):
    # The upstream fault: trace at batch 1, then only rename the batch axis.
    path = _torch_export(TinyFaceNet(frozen_batch=True), tmp_path / "frozen.onnx", dynamic=False)
    model = onnx.load(str(path))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(path))
    code, out = _verify(capsys, path)
    assert code == 1
    assert " FAIL " in _line(out, "batch") and "frozen" in _line(out, "batch")
    assert "--fix-batch" in _line(out, "batch") and "1 Reshape node(s)" in _line(out, "batch")


def test_normalisation_baked_into_graph_fails_insightface_check(tmp_path, capsys):
    path = _torch_export(BakedNormalisation(), tmp_path / "baked.onnx")
    code, out = _verify(capsys, path)
    line = _line(out, "insightface")
    assert code == 1
    assert " FAIL " in line and "normalised twice" in line and "node_sub (Sub)" in line
    assert " PASS " in _line(out, "batch")


def test_two_outputs_fail(tiny_model, tmp_path, capsys):
    model = onnx.load(str(tiny_model))
    doubled = helper.make_node("Add", ["out", "out"], ["out_twice"], name="twice")
    model.graph.node.append(doubled)
    model.graph.output.append(helper.make_tensor_value_info("out_twice", onnx.TensorProto.FLOAT, ["batch", 64]))
    path = tmp_path / "two_outputs.onnx"
    onnx.save(model, str(path))
    code, out = _verify(capsys, path)
    assert code == 1
    assert " FAIL " in _line(out, "output") and "2 outputs" in _line(out, "output")
    assert " FAIL " in _line(out, "insightface")


def test_fp16_weights_verify_as_an_fp16_model(tiny_model, tmp_path, capsys):
    model = onnx.load(str(tiny_model))
    casts = []
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float16), tensor.name + "_fp16")
            casts.append(helper.make_node("Cast", [half.name], [tensor.name], to=onnx.TensorProto.FLOAT))
            tensor.CopyFrom(half)
    nodes = casts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    path = tmp_path / "fp16.onnx"
    onnx.save(model, str(path))
    code, out = _verify(capsys, path)
    assert code == 0, out  # fp16 weights with fp32 input/output: what convert_onnx --fp16 writes
    assert " PASS " in _line(out, "weights") and "fp16 weights" in _line(out, "weights")
    assert " PASS " in _line(out, "batch")


def test_wrong_input_size_fails(tmp_path, capsys):
    path = _torch_export(TinyFaceNet(size=64), tmp_path / "small.onnx", size=64)
    code, out = _verify(capsys, path)
    assert code == 1
    assert " FAIL " in _line(out, "input") and "64x64" in _line(out, "input")
    assert " FAIL " in _line(out, "insightface")


def test_checkpoint_with_wrong_keys_fails_parity(tiny_model, r18_model, capsys):
    r18_folder, _ = r18_model
    code, out = _verify(capsys, tiny_model, "--checkpoint", r18_folder / "model.pt", "--network", "mbf")
    line = _line(out, "parity")
    assert code == 1
    assert " FAIL " in line and "missing keys" in line and "unexpected keys" in line


def test_missing_file_fails(tmp_path, capsys):
    code, out = _verify(capsys, tmp_path / "absent.onnx")
    assert code == 1 and "does not exist" in _line(out, "file") and " FAIL " in _line(out, "file")


def test_non_onnx_file_fails(tmp_path, capsys):
    path = tmp_path / "notes.onnx"
    path.write_text("these are not the weights you are looking for\n")
    code, out = _verify(capsys, path)
    assert code == 1 and "not an ONNX model" in _line(out, "file")
