"""recognisability.pt: the unrecognisable-identity centre (and the RI regressor) saved beside model.pt.

model.pt stays a plain backbone state_dict (upstream arcface_torch and insightface tools read it); what the face
quality scores need besides the backbone lives in this second file, written atomically by train.py when the run
trains with the "ri" loss, or by `unpg-face-quality MODEL --build-centre FACES` for any model:

    {"format": "unpg-recognisability/1", "centre": float32 (D,) unit vector, "ui_level": float or None,
     "regressor_weight": float32 (D,) or None, "regressor_bias": float or None, "source": str}

    rec = load_recognisability(recognisability_path(Path("work_dirs/run/model.pt")))
    rec.centre, rec.has_regressor
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic_file import write_atomically

FILE_NAME = "recognisability.pt"
FORMAT = "unpg-recognisability/1"


class RecognisabilityError(ValueError):
    """A recognisability file is missing, unreadable or does not fit the model."""


@dataclass
class Recognisability:
    """centre (D,) float32 unit vector; ui_level mu_UI (None when built without class centres); the RI
    regressor xi^ = w . x/|x| + b (None unless trained with the "ri" loss); where the centre came from."""

    centre: torch.Tensor
    ui_level: float | None = None
    regressor_weight: torch.Tensor | None = None
    regressor_bias: float | None = None
    source: str = ""

    @property
    def embedding_size(self) -> int:
        return int(self.centre.numel())

    @property
    def has_regressor(self) -> bool:
        return self.regressor_weight is not None

    def as_dict(self) -> dict:
        return {
            "format": FORMAT,
            "centre": self.centre.detach().float().cpu().clone(),
            "ui_level": self.ui_level,
            "regressor_weight": None
            if self.regressor_weight is None
            else self.regressor_weight.detach().float().cpu().clone(),
            "regressor_bias": self.regressor_bias,
            "source": self.source,
        }


def recognisability_path(model_path: str | Path) -> Path:
    """The recognisability file beside `model_path` (model.pt) or inside a training output folder."""
    model_path = Path(model_path)
    return (model_path if model_path.is_dir() else model_path.parent) / FILE_NAME


def from_head(head) -> Recognisability | None:
    """The centre and regressor of the head's "ri" loss once it has a centre; None without one."""
    for loss in getattr(head, "losses", []):
        if getattr(loss, "needs_unrecognisable_centre", False) and bool(loss.has_centre):
            return Recognisability(
                centre=loss.centre.detach().float().cpu().clone(),
                ui_level=float(loss.ui_level),
                regressor_weight=loss.regressor.weight.detach().float().cpu().reshape(-1).clone(),
                regressor_bias=float(loss.regressor.bias.detach().reshape(())),
                source=f"ri loss, centre of epoch {int(loss.epoch)}",
            )
    return None


def save_recognisability(record: Recognisability, path: str | Path) -> Path:
    """Write `record` to `path` through a temp file and a rename (a crash leaves the previous file)."""
    return write_atomically(path, lambda handle: torch.save(record.as_dict(), handle))


def _fix(path: Path) -> str:
    return (
        f"train the model with config.loss including 'ri' past ri.start_epoch, or build a centre with "
        f"`unpg-face-quality {path.parent} --build-centre FACES`"
    )


def load_recognisability(path: str | Path, embedding_size: int | None = None) -> Recognisability:
    """Read and check a recognisability file (weights only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise RecognisabilityError(f"no unrecognisable-identity centre saved at {path}; {_fix(path)}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for corrupt or unsafe files
        raise RecognisabilityError(
            f"{path} is not a readable recognisability file ({type(error).__name__}); {_fix(path)}"
        ) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecognisabilityError(f"{path} is not a {FORMAT} file; {_fix(path)}")
    centre = data.get("centre")
    if not torch.is_tensor(centre) or centre.dim() != 1 or not centre.is_floating_point():
        raise RecognisabilityError(f"{path} holds no (D,) centre vector; {_fix(path)}")
    if centre.dtype != torch.float32:
        raise RecognisabilityError(
            f"{path} holds a {str(centre.dtype).replace('torch.', '')} centre; the quality scores are defined in "
            f"float32: rebuild it with `unpg-face-quality {path.parent} --build-centre FACES --force`"
        )
    if not bool(torch.isfinite(centre).all()) or abs(float(centre.norm()) - 1.0) > 1e-3:
        raise RecognisabilityError(f"{path}: the centre is not a finite unit vector; {_fix(path)}")
    if embedding_size is not None and centre.numel() != int(embedding_size):
        raise RecognisabilityError(
            f"{path} holds a {centre.numel()}-d centre but the model gives {embedding_size}-d embeddings; use the "
            f"file saved with this model or rebuild it with --build-centre"
        )
    weight, bias = data.get("regressor_weight"), data.get("regressor_bias")
    if weight is not None and (not torch.is_tensor(weight) or weight.shape != centre.shape or bias is None):
        raise RecognisabilityError(f"{path}: the RI regressor does not fit the {centre.numel()}-d centre; {_fix(path)}")
    level = data.get("ui_level")
    for name, value in (("ui_level", level), ("regressor_bias", bias)):
        if value is not None and (not isinstance(value, float) or not math.isfinite(value)):
            raise RecognisabilityError(f"{path}: {name}={value!r} is not a finite number; {_fix(path)}")
    return Recognisability(
        centre=centre,
        ui_level=level,
        regressor_weight=None if weight is None else weight.float(),
        regressor_bias=bias,
        source=str(data.get("source", "")),
    )
