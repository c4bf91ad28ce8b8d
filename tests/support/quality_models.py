"""A small quality model on disk (model.pt, config.json, recognisability.pt) for the face-quality tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from recipes.arcface_torch.backbones import get_model
from recipes.arcface_torch.datasets.synthetic_face_renderer import SyntheticFaceRenderer
from recipes.arcface_torch.recognisability_file import FILE_NAME, Recognisability, save_recognisability

DIM = 32


def tiny_backbone(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_model("tiny", num_features=DIM).eval()


def write_model_folder(folder: Path, regressor: bool = True, centre: bool = True, seed: int = 0) -> Path:
    """model.pt of a random tiny backbone, its config.json and (optionally) a recognisability.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_backbone(seed).state_dict(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"network": "tiny", "embedding_size": DIM, "loss": "ri"}))
    if centre:
        g = torch.Generator().manual_seed(seed + 1)
        record = Recognisability(
            centre=F.normalize(torch.randn(DIM, generator=g), dim=0),
            ui_level=0.1,
            regressor_weight=torch.randn(DIM, generator=g) if regressor else None,
            regressor_bias=0.3 if regressor else None,
            source="test",
        )
        save_recognisability(record, folder / FILE_NAME)
    return folder


def synthetic_faces(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 112, 112, 3) RGB rendered faces of count different identities."""
    renderer = SyntheticFaceRenderer(seed)
    return np.stack([renderer.render(5000 + i, 0) for i in range(count)])
