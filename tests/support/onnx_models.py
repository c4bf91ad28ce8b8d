"""Small real backbones and upstream-style exports shared by the ONNX conversion tests.

Session-scoped fixtures (tests/conftest.py registers this module as a plugin, so any test can ask for them):
    fp32_models  {"mbf": (folder, model.onnx), "r18": ...}: face-calibrated random weights, model.pt +
                 config.json in `folder`, exported once at opset 18 by our exporter.
Helpers:
    face_calibrated(model)          BatchNorm statistics from real faces, so embeddings have a realistic scale
    upstream_style_export(model, p) what upstream's torch2onnx.py does: TorchScript trace at batch 1, opset 11,
                                    then only the input's batch axis renamed
    UpstreamFlatten                 upstream MobileFaceNet's flatten, x.view(x.size(0), -1)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.export.face_samples import builtin_faces, face_batch
from recipes.arcface_torch.export.onnx_export import _quiet_exporter, export_backbone
from recipes.arcface_torch.face_image import to_network_input


def faces_bgr(count: int = 32) -> np.ndarray:
    return face_batch(builtin_faces(112), count)


def network_input(count: int = 32) -> np.ndarray:
    return to_network_input(faces_bgr(count), 127.5, 127.5)


def face_calibrated(model: nn.Module) -> nn.Module:
    """Random weights, but BatchNorm statistics from real faces (cumulative average over one batch)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.from_numpy(network_input()))
    return model.eval()


class UpstreamFlatten(nn.Module):
    """Upstream MobileFaceNet's Flatten: a traced x.size(0) becomes the constant batch of the trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), -1)


def upstream_style_export(model: nn.Module, path: Path) -> Path:
    """Export like upstream torch2onnx.py: trace at batch 1, opset 11, input "data", then rename its batch axis."""
    with _quiet_exporter(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, 3, 112, 112),),
            str(path),
            dynamo=False,
            opset_version=11,
            input_names=["data"],
            keep_initializers_as_inputs=False,
            verbose=False,
        )
    exported = onnx.load(str(path))
    exported.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"
    onnx.save(exported, str(path))
    return path


@pytest.fixture(scope="session")
def fp32_models(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    models = {}
    for seed, network in enumerate(("mbf", "r18")):
        folder = tmp_path_factory.mktemp(f"fp32_{network}")
        torch.manual_seed(seed)
        backbone = face_calibrated(get_model(network, fp16=False, num_features=512))
        torch.save(backbone.state_dict(), folder / "model.pt")
        (folder / "config.json").write_text(json.dumps({"network": network, "embedding_size": 512}))
        report = export_backbone(backbone, folder / "model.onnx", metadata={"network": network, "embedding_size": 512})
        models[network] = (folder, report.path)
    return models
