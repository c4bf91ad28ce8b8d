"""Face-quality scores out of a trained recognition model, and the two-output module the ONNX export traces.

Three scores per face, higher = more recognisable, from the embedding x of the (unflipped) face:

    ri    xi^ = w . x/|x| + b       the RI regressor trained with the "ri" loss (Chai et al., CVPR 2023)
    ers   1 - cos(x, c)             the distance to the unrecognisable-identity centre c (Deng et al.'s ERS)
    norm  |x|                        the embedding norm (MagFace's quality)

ri needs a model trained with the "ri" loss; ers needs a centre (saved by that training, or built for any model
with `unpg-face-quality MODEL --build-centre FACES`); norm needs nothing. The centre and the regressor come from
recognisability.pt beside model.pt (recognisability_file.py).

    model = load_quality_model(Path("work_dirs/run"))         # backbone + recognisability.pt
    embeddings, scores = score_faces(model, faces_rgb)        # (N, D), {"ri": (N,), "ers": (N,), "norm": (N,)}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError
from .export.backbone_checkpoint import build_backbone, resolve_checkpoint
from .recognisability_file import Recognisability, RecognisabilityError, load_recognisability, recognisability_path
from .unrecognisable_faces import faces_to_input

SCORES = ("ri", "ers", "norm")
HALF_TYPES = (torch.float16, torch.bfloat16)


class QualityModel(nn.Module):
    """backbone + scores: forward(x (N, 3, 112, 112)) -> (embedding (N, D), quality (N, len(scores))).

    `scores` lists the columns of quality in order, a subset of SCORES in that order."""

    def __init__(self, backbone: nn.Module, record: Recognisability | None, scores: tuple[str, ...] | None = None):
        super().__init__()
        available = tuple(
            name
            for name, present in (
                ("ri", record is not None and record.has_regressor),
                ("ers", record is not None),
                ("norm", True),
            )
            if present
        )
        scores = available if scores is None else tuple(scores)
        missing = [name for name in scores if name not in available]
        if missing or not scores or len(set(scores)) != len(scores):
            raise RecognisabilityError(
                _missing_scores(missing, available)
                if missing
                else f"scores {scores!r} must name each of {', '.join(SCORES)} at most once"
            )
        self.backbone = backbone
        self.scores = tuple(name for name in SCORES if name in scores)
        self.record = record
        if record is not None:
            self.register_buffer("centre", record.centre.float().clone())
        if "ri" in self.scores:
            self.register_buffer("regressor_weight", record.regressor_weight.float().clone())
            self.register_buffer("regressor_bias", torch.tensor(float(record.regressor_bias)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.backbone(x).float()
        return embedding, self.quality_of(embedding)

    def quality_of(self, embedding: torch.Tensor) -> torch.Tensor:
        """(N, D) embeddings -> (N, len(scores)) quality columns."""
        norm = embedding.norm(dim=1)
        unit = embedding / norm.clamp_min(1e-12)[:, None]
        columns = []
        if "ri" in self.scores:
            columns.append(unit @ self.regressor_weight + self.regressor_bias)
        if "ers" in self.scores:
            columns.append(1.0 - unit @ self.centre)
        if "norm" in self.scores:
            columns.append(norm)
        return torch.stack(columns, dim=1)


def _missing_scores(missing: list[str], available: tuple[str, ...]) -> str:
    if "ri" in missing and "ers" in available:
        return (
            "score 'ri' needs a model trained with the 'ri' loss (its regressor is not in the recognisability file); "
            f"ask only for {', '.join(available)}"
        )
    return (
        f"score(s) {', '.join(missing)} need the unrecognisable-identity centre, which this model has not; build "
        f"one with --build-centre FACES or ask only for {', '.join(available)}"
    )


def check_fp32(state: dict[str, torch.Tensor], where: Path) -> None:
    """Refuse half-precision weights: the scores (a norm, a cosine to a centre) are defined on the fp32 model."""
    half = sorted({str(t.dtype).replace("torch.", "") for t in state.values() if t.dtype in HALF_TYPES})
    if half:
        raise CheckpointError(
            f"{where} holds {'/'.join(half)} weights; face-quality scores are computed on the fp32 model: pass the "
            f"model.pt training wrote (it keeps fp32 weights even with fp16=True)"
        )


def load_quality_model(
    source: Path,
    network: str | None = None,
    embedding_size: int | None = None,
    centre: Path | None = None,
    scores: tuple[str, ...] | None = None,
) -> QualityModel:
    """The fp32 eval-mode QualityModel of a model.pt or training folder; `centre` defaults to the
    recognisability.pt beside model.pt. Without a centre file only 'norm' can be asked for."""
    checkpoint = resolve_checkpoint(source)
    state = checkpoint.state_dict()
    check_fp32(state, checkpoint.model_path)
    backbone = build_backbone(checkpoint.network(network), checkpoint.embedding_size(embedding_size), state)
    path = Path(centre) if centre is not None else recognisability_path(checkpoint.model_path)
    record = None
    if path.is_file() or centre is not None or scores is None or set(scores) - {"norm"}:
        record = load_recognisability(path, checkpoint.embedding_size(embedding_size))
    return QualityModel(backbone, record, scores).eval()


@torch.no_grad()
def score_faces(
    model: QualityModel, faces: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """uint8 (N, 112, 112, 3) RGB faces -> (embeddings float64 (N, D), {score: float64 (N,)})."""
    device = next(model.backbone.parameters()).device
    embeddings, quality = [], []
    for start in range(0, len(faces), batch_size):
        embedding, scores = model(faces_to_input(faces[start : start + batch_size]).to(device))
        embeddings.append(embedding.double().cpu().numpy())
        quality.append(scores.double().cpu().numpy())
    if not embeddings:
        raise ValueError("no faces to score; pass at least one face image")
    table = np.concatenate(quality)
    return np.concatenate(embeddings), {name: table[:, i] for i, name in enumerate(model.scores)}


@torch.no_grad()
def scores_of_embeddings(model: QualityModel, embeddings: np.ndarray) -> dict[str, np.ndarray]:
    """{score: float64 (N,)} of embeddings (N, D) the model's backbone already computed."""
    table = model.quality_of(torch.from_numpy(np.asarray(embeddings, dtype=np.float32))).double().numpy()
    return {name: table[:, i] for i, name in enumerate(model.scores)}
